"""Running a batch file offline, with no server: `python -m reference_server.batch -i IN -o OUT`.

As vLLM's `run_batch` does, it loads the models the settings name (`MAAS_*`, as `maas serve`
reads them) and answers every line of the file through the same route code as the server's
Batch API (in-process, as an open server's caller), so each line gets exactly the answer the
server would give. The file is checked first, as an upload of purpose `batch` is; the results,
answered and failed alike, are written to OUT in the input's order, with a progress bar.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

from maas_sdk.protocol.vocabulary import BATCH_ENDPOINTS
from reference_server import datasets
from reference_server.batch.lines import LineDispatcher, answered_line
from reference_server.settings import Settings

_RETRY_AFTER = 1.0


async def _answer(dispatch: LineDispatcher, request: datasets.BatchRequest) -> str:
    request_id = f"req_{uuid.uuid4().hex}"
    while True:
        answer = await dispatch("anonymous", request.url, request.body, request_id)
        if not answer.transient:
            return answered_line(request.custom_id, request_id, answer)
        await asyncio.sleep(answer.retry_after or _RETRY_AFTER)


async def run_file(settings: Settings, source: Path, target: Path, *, progress: bool = True) -> tuple[int, int]:
    """Answer every line of `source` into `target`; returns (answered with 200, failed). A line
    that failed is a result like any other (its error is in `target`), not a failure of the run."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    from reference_server.app import create_app
    from reference_server.http.batch_dispatch import InProcessDispatcher
    from reference_server.http.middleware.auth import KeyRing
    from reference_server.state import state_of_app

    with source.open("rb") as handle:
        datasets.validate_batch_file(handle, BATCH_ENDPOINTS, settings.batch_max_requests)
        requests = [datasets.batch_request_of(record, BATCH_ENDPOINTS) for _, record in datasets.read_records(handle)]
    app = create_app(settings)
    models = state_of_app(app).models
    await models.start()
    try:
        while not models.ready.is_set() and models.error is None:
            await asyncio.sleep(0.1)
        if models.error is not None:
            raise RuntimeError(f"the models could not be loaded: {models.error}")
        dispatch = InProcessDispatcher(app, KeyRing([]))
        slots = asyncio.Semaphore(settings.batch_concurrency or 2 * settings.max_running)
        bar = tqdm(total=len(requests), unit="request", desc=source.name, disable=not progress, file=sys.stderr)

        async def one(request: datasets.BatchRequest) -> str:
            async with slots:
                line = await _answer(dispatch, request)
            bar.update(1)
            return line

        with bar:
            lines = await asyncio.gather(*(one(r) for r in requests))
    finally:
        await models.stop()
    target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    ok = sum(json.loads(line)["response"]["status_code"] == 200 for line in lines)
    return ok, len(lines) - ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_server.batch",
                                     description="Run a Batch API file on the configured models, with no server.")
    parser.add_argument("-i", "--input-file", required=True, type=Path, help="JSONL of batch requests.")
    parser.add_argument("-o", "--output-file", required=True, type=Path, help="Where the results go (JSONL).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
    args = parser.parse_args(argv)
    try:
        ok, failed = asyncio.run(run_file(Settings(), args.input_file, args.output_file,
                                          progress=not args.no_progress))
    except datasets.DatasetError as exc:
        print(f"error: {args.input_file}: {exc.message}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{ok + failed} requests: {ok} answered, {failed} failed; results in {args.output_file}", file=sys.stderr)
    return 0


