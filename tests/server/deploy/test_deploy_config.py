"""The shipped Ray Serve config and KubeRay manifest are what Ray and our app builders accept, so
`serve run reference_server/deploy/serve.yaml` does not fail on a typo in front of a user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from reference_server.deploy.ray_serve import INGRESS_APP, SUPERVISOR_APP, ClusterArgs, ingress, supervisor

DEPLOY = Path(__file__).resolve().parents[3] / "reference_server" / "deploy"


def serve_configs() -> list[dict[str, Any]]:
    manifest = yaml.safe_load((DEPLOY / "kuberay-rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    return [yaml.safe_load((DEPLOY / "serve.yaml").read_text()), yaml.safe_load(manifest["spec"]["serveConfigV2"])]


@pytest.mark.parametrize("config", serve_configs(), ids=["serve.yaml", "kuberay-rayservice.yaml"])
def test_the_shipped_serve_configs_deploy_both_applications(config: dict[str, Any]) -> None:
    ServeDeploySchema.model_validate(config)
    apps = {app["name"]: app for app in config["applications"]}
    assert set(apps) == {INGRESS_APP, SUPERVISOR_APP}
    assert apps[INGRESS_APP]["import_path"] == "reference_server.deploy.ray_serve:ingress"
    assert apps[SUPERVISOR_APP]["route_prefix"] is None  # no HTTP: it only runs jobs
    for app in apps.values():
        ClusterArgs.model_validate(app["args"])


def test_the_builders_bound_every_queue_and_size_replicas_from_threads() -> None:
    app = ingress({"replicas": 3, "threads": 2, "max_queued_requests": 8})
    options = app._bound_deployment._deployment_config  # type: ignore[attr-defined]
    assert (options.num_replicas, options.max_queued_requests) == (3, 8)
    assert options.backpressure_config.status_code == 429 and options.backpressure_config.retry_after_s == 1
    assert app._bound_deployment.ray_actor_options["num_cpus"] == 2  # type: ignore[attr-defined]
    single = supervisor({})._bound_deployment  # type: ignore[attr-defined]
    assert single._deployment_config.num_replicas == 1
    with pytest.raises(ValidationError):
        ClusterArgs.model_validate({"replica": 2})  # a typo is refused, not ignored
