"""The `maas` command: `maas serve` starts the reference server; `maas bench NAME` runs one of
the benchmarks in `bench/` (from a source checkout, where that folder sits beside this package)."""

from __future__ import annotations

import argparse
import os
import sys

# After the drain, how long uvicorn waits for connections to close before cancelling them.
CLOSE_SECONDS = 5
# Request line and headers together; a larger head is refused as malformed.
MAX_HEADER_BYTES = 64 * 1024


SERVER_EXTRA = "pip install 'maas-sdk[server]'"


def _server_missing() -> str | None:
    """The first package of the server extra that is not installed, if any."""
    import importlib.util

    for module in ("uvicorn", "starlette", "pydantic_settings", "multipart", "torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def _serve(args: argparse.Namespace) -> int:
    missing = _server_missing()
    if missing is not None:
        print(f"maas serve: the server is not installed ({missing} is missing): {SERVER_EXTRA}", file=sys.stderr)
        return 2
    import uvicorn

    from reference_server.app import create_app
    from reference_server.http.connections import header_timeout_protocol
    from reference_server.logs import log_config
    from reference_server.server import DrainingServer
    from reference_server.settings import Settings
    from reference_server.state import state_of_app

    overrides = {"host": args.host, "port": args.port}
    if args.api_keys is not None:
        overrides["api_keys"] = args.api_keys
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.grace is not None:
        overrides["shutdown_grace"] = args.grace
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    if args.access_log is not None:
        overrides["access_log"] = args.access_log
    if args.lora_modules is not None:
        overrides["lora_modules"] = args.lora_modules
    if args.ray:
        return _serve_on_ray(args, overrides)
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        timeout_graceful_shutdown=CLOSE_SECONDS,
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]  # uvicorn takes seconds
        http=header_timeout_protocol(settings.header_timeout),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        access_log=False,  # ours (reference_server.access) logs duration and request id too
    )
    DrainingServer(config, state_of_app(app).drainer, grace=settings.shutdown_grace).run()
    return 0


def _serve_on_ray(args: argparse.Namespace, overrides: dict[str, object]) -> int:
    """`maas serve --ray`: the same app on `--replicas` Ray Serve replicas (docs/scale-out.md)."""
    import logging

    from reference_server.deploy.ray_serve import ClusterArgs, serve_locally

    logging.basicConfig(level=(args.log_level or "info").upper(), format="%(asctime)s %(levelname)s %(message)s")
    host, port = str(overrides.pop("host")), int(str(overrides.pop("port")))
    threads = int(str(overrides.pop("threads", None) or os.environ.get("MAAS_THREADS") or 1))
    cluster = ClusterArgs(replicas=args.replicas, threads=threads,
                          settings={k: v for k, v in overrides.items() if v is not None})
    return serve_locally(cluster, host, port, address=args.ray_address)


BENCHMARKS = ("serving", "embeddings", "quantization", "tenants")


def _bench(args: argparse.Namespace) -> int:
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / f"{args.name}.py").is_file():
        print(f"maas bench: {root / 'bench'} not found; the benchmarks run from a source checkout.",
              file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module(f"bench.{args.name}")
    return int(module.main(args.args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maas", description="maas reference server and tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Start the reference server (settings also from MAAS_* env).")
    serve.add_argument("--host", default=os.environ.get("MAAS_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("MAAS_PORT", "8000")))
    serve.add_argument("--api-keys", default=None, help="Comma-separated Bearer keys (else MAAS_API_KEYS).")
    serve.add_argument("--threads", type=int, default=None, help="torch compute threads (else MAAS_THREADS).")
    serve.add_argument("--log-level", default=None,
                       help="debug, info, warning, error (else MAAS_LOG_LEVEL or MAAS_LOG, info).")
    serve.add_argument("--grace", type=float, default=None,
                       help="Seconds in-flight requests get on SIGTERM (else MAAS_SHUTDOWN_GRACE, 30).")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=None,
                       help="Log one line per request: method, path, status, duration, request id "
                            "(default on; else MAAS_ACCESS_LOG).")
    serve.add_argument("--lora-modules", nargs="+", default=None, metavar="NAME=PATH",
                       help="PEFT adapter folders served on their base generator, visible to every key "
                            "(else MAAS_LORA_MODULES, comma-separated).")
    serve.add_argument("--ray", action="store_true",
                       help="Serve on Ray Serve replicas sharing the store (see docs/scale-out.md).")
    serve.add_argument("--replicas", type=int, default=2, help="With --ray: ingress replicas (default 2).")
    serve.add_argument("--ray-address", default=None,
                       help="With --ray: join this Ray cluster (else start a local one).")
    serve.set_defaults(func=_serve)
    bench = commands.add_parser("bench", help="Run a benchmark (see docs/benchmarks.md); options follow NAME.",
                                add_help=False)
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="Options of that benchmark (--help lists them).")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
