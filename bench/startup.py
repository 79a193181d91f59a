"""Time from `maas serve` to `/ready`, and to every decode bucket compiled, with an empty and
then a warm compile cache: a table.

The server is ready before it compiles (the buckets compile in the background, and each takes
over when it is done, see `reference_server/inference/engine/compiled_decode.py`); the second
figure is when it decodes at full speed. Both runs use one fresh `TORCHINDUCTOR_CACHE_DIR`, so
the first starts from nothing and the second finds what the first cached.

    python -m bench.startup                  # bfloat16, the default generator
    python -m bench.startup --dtype float32
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench._common import GENERATOR, compiled, machine, table


def measure(dtype: str, threads: int) -> list[list[object]]:
    import httpx

    from reference_server.testing import ServerProcess

    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="maas-inductor-") as cache:
        for run in ("empty", "warm"):
            with tempfile.TemporaryDirectory(prefix="maas-startup-") as tmp:
                env = {"MAAS_ENABLED_MODELS": GENERATOR, "MAAS_THREADS": str(threads), "MAAS_DATA_DIR": tmp,
                       "MAAS_LOG_LEVEL": "info", "MAAS_API_KEYS": "", "MAAS_DTYPE": dtype,
                       "TORCHINDUCTOR_CACHE_DIR": cache}
                start = time.monotonic()
                with ServerProcess(env=env, log_path=Path(tmp) / "server.log") as proc:
                    ready = time.monotonic() - start
                    full = ready + compiled(proc.url)
                    text = httpx.get(f"{proc.url}/metrics", timeout=10.0).text
                seconds = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith("maas_engine_compile_seconds{"))
            rows.append([run, ready, full, seconds])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16", help="float32, bfloat16, auto.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"# serve -> /ready -> compiled: {GENERATOR}, {args.dtype}, {args.threads} threads; {machine()}", flush=True)
    print(table(["compile cache", "/ready s", "all buckets compiled s", "compile s (metrics)"],
                measure(args.dtype, args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
