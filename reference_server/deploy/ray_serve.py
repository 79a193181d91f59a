"""The reference server on Ray Serve: the same app on many replicas, on one machine or many.

Two Serve applications, deployed together (`maas serve --ray`, or `serve run` of
`reference_server/deploy/serve.yaml` against a running cluster):

- `maas`: the ingress. Each replica is the app `create_app` builds (Ray Serve's ASGI ingress,
  late-bound so the models load in the replica, not in the driver), with `threads` torch threads
  and as many Ray CPUs; `replicas` of them, or an `autoscaling` range. Each names itself after its
  Ray replica id (`x-maas-replica`, the `replica` label of its metrics) and follows the store for
  fine-tuned models, but runs no jobs.
- `maas-supervisor`: one replica running the fine-tuning supervisor, and nothing else (no base
  models, no HTTP), so a job created through any replica runs exactly once.

All of them share the store (`MAAS_DATABASE_URL`, PostgreSQL on a multi-node cluster) and the
data directory (`MAAS_DATA_DIR`, a volume every node mounts).

Queues stay bounded and keep the server's answers: a replica takes up to `max_ongoing_requests`
at once, enough for its engines' own bounds to answer first (429 `overloaded`, 503 with
Retry-After while loading or draining); past that Ray holds at most `max_queued_requests` in its
router and answers the rest 429 with Retry-After. Ray drains a stopping replica (rolling restart,
scale-down, shutdown) for up to `shutdown_grace` seconds before the app's own shutdown ends what
is left, a stream with its `server_shutdown` event.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import AsyncExitStack
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from reference_server.app import build_state, create_app, running
from reference_server.settings import Settings
from reference_server.state import state_of_app

logger = logging.getLogger("reference_server")

INGRESS_APP = "maas"
SUPERVISOR_APP = "maas-supervisor"
# What Ray's router answers when every replica is full and its own queue is too.
ROUTER_REJECTION = {"status_code": 429, "retry_after_s": 1}


class Autoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(16, gt=0)


class ClusterArgs(BaseModel):
    """The arguments of both applications (the `args:` of each in the Serve config)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(2, ge=1, description="Ingress replicas (ignored when autoscaling is set).")
    threads: int = Field(1, ge=1, description="torch threads, and Ray CPUs, per ingress replica.")
    autoscaling: Autoscaling | None = None
    max_ongoing_requests: int = Field(512, ge=1, description="Requests one replica takes at once.")
    max_queued_requests: int = Field(64, ge=0, description="Requests Ray's router holds when all are full.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings fields, over MAAS_* env.")


def _replica_name() -> str:
    return str(serve.get_replica_context().replica_id.unique_id)


class _Ingress:
    def __init__(self, overrides: dict[str, Any]) -> None:
        self.settings = Settings(**{**overrides, "fine_tuning_supervisor": False, "replica": _replica_name()})
        self.built: Any = None  # the app; not `app`, which Ray's wrapper defines

    def __serve_build_asgi_app__(self) -> Any:
        self.built = create_app(self.settings)
        return self.built

    def check_health(self) -> None:
        """Ray restarts a replica whose models failed to load (`/ready` would say so forever)."""
        error = state_of_app(self.built).models.error if self.built is not None else None
        if error is not None:
            raise RuntimeError(f"model loading failed: {error}")


class _Supervisor:
    async def __init__(self, overrides: dict[str, Any]) -> None:  # type: ignore[misc]  # Ray awaits it
        settings = Settings(**{**overrides, "fine_tuning_supervisor": True, "default_models": False,
                               "models": [], "replica": f"supervisor-{_replica_name()}"})
        self.state = build_state(settings)
        self._running = AsyncExitStack()
        await self._running.enter_async_context(running(self.state))

    async def __del__(self) -> None:
        await self._running.aclose()


Ingress = serve.deployment(name="MaaSIngress")(serve.ingress()(_Ingress))
Supervisor = serve.deployment(name="FineTuningSupervisor", num_replicas=1, max_ongoing_requests=4)(_Supervisor)


def _parse(args: dict[str, Any] | ClusterArgs) -> ClusterArgs:
    return args if isinstance(args, ClusterArgs) else ClusterArgs.model_validate(args)


def _grace(cluster: ClusterArgs) -> float:
    return float(cluster.settings.get("shutdown_grace", Settings.model_fields["shutdown_grace"].default))


def ingress(args: dict[str, Any] | ClusterArgs) -> Application:
    """The `maas` application (a Serve app builder: `import_path: reference_server.deploy.ray_serve:ingress`)."""
    cluster = _parse(args)
    scaling: dict[str, Any] = ({"autoscaling_config": cluster.autoscaling.model_dump()} if cluster.autoscaling
                               else {"num_replicas": cluster.replicas})
    deployment = Ingress.options(
        ray_actor_options={"num_cpus": cluster.threads},
        max_ongoing_requests=cluster.max_ongoing_requests,
        max_queued_requests=cluster.max_queued_requests,
        backpressure_config=ROUTER_REJECTION,
        graceful_shutdown_timeout_s=_grace(cluster),
        **scaling,
    )
    return deployment.bind({**cluster.settings, "threads": cluster.threads})


def supervisor(args: dict[str, Any] | ClusterArgs) -> Application:
    """The `maas-supervisor` application (`import_path: reference_server.deploy.ray_serve:supervisor`)."""
    cluster = _parse(args)
    threads = int(cluster.settings.get("training_threads", Settings.model_fields["training_threads"].default))
    deployment = Supervisor.options(ray_actor_options={"num_cpus": threads},
                                    graceful_shutdown_timeout_s=_grace(cluster) + 15)
    return deployment.bind(cluster.settings)


def serve_locally(cluster: ClusterArgs, host: str, port: int, address: str | None = None) -> int:
    """`maas serve --ray`: start a local Ray cluster (or join `address`), deploy both applications
    on `host:port`, and serve until SIGTERM or SIGINT, then shut Serve down (draining)."""
    import ray

    training = int(cluster.settings.get("training_threads", 1))
    wanted = (cluster.autoscaling.max_replicas if cluster.autoscaling else cluster.replicas) * cluster.threads
    if address is None:
        # Ray counts logical CPUs: the supervisor's too, though it is idle but for training.
        ray.init(num_cpus=max(os.cpu_count() or 1, wanted + training), include_dashboard=False)
    else:
        ray.init(address=address)
    logger.warning("Ray cluster at %s", ray.get_runtime_context().gcs_address)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(supervisor(cluster), name=SUPERVISOR_APP, route_prefix=None)
        serve.run(ingress(cluster), name=INGRESS_APP, route_prefix="/")
        logger.warning("serving on http://%s:%d with %s ingress replica(s)", host, port,
                       f"{cluster.autoscaling.min_replicas}-{cluster.autoscaling.max_replicas}"
                       if cluster.autoscaling else cluster.replicas)
        stop.wait()
        logger.warning("shutting down: draining the replicas")
        # Deleting the applications first drains their replicas while the proxies still carry the
        # streams in flight (`serve.shutdown` alone stops the proxies at once, cutting them).
        for name in (INGRESS_APP, SUPERVISOR_APP):
            serve.delete(name)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    return 0
