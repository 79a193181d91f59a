"""`BatchRun`: one batch from its input file to its output files.

Lines run concurrently (bounded by the service's slots, shared by every batch), each as
background work through the route its url names, and each result is recorded in the store the
moment it arrives, with the batch's counts and token totals. A run that starts again (after a
restart, or on another replica) skips the lines already recorded, and the store records a line
at most once, so no line is lost and none is in the output twice.

The batch is watched between lines: once it is cancelled (`cancelling`) no line starts, the lines
in flight are given `cancel_grace` seconds to finish into the output (those still running then
are dropped), and it ends `cancelled` with what was recorded; once its window has passed the
lines in flight are dropped and it ends `expired`, the lines that never ran listed in its error
file as `batch_expired`. Otherwise, when every line is
recorded, it goes `finalizing`, its output and error files are written in input order and it
ends `completed`. A batch whose input file is deleted before it has read it all ends `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

from reference_server import datasets
from reference_server.batch.lines import LineDispatcher, answered_line, unanswered_line
from reference_server.datasets import RecordError
from reference_server.inference.engine.priority import running_in_background
from reference_server.storage import AsyncStore, BatchRecord, FileRecord, blobs, ids
from reference_server.storage.layout import DataLayout

logger = logging.getLogger("reference_server.batch")

# Seconds between looks at the batch's status (a cancellation made through any replica).
_WATCH = 0.5
# Lines read from the input file per trip to a worker thread.
_READ_CHUNK = 256
_RETRY_AFTER = 1.0
_EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


def _now() -> int:
    return int(time.time())


def _lines(handle: BinaryIO) -> Iterator[tuple[int, dict[str, Any]]]:
    return datasets.read_records(handle)


def _next_lines(lines: Iterator[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    return [item for _, item in zip(range(_READ_CHUNK), lines)]


class BatchRun:
    def __init__(self, batch: BatchRecord, db: AsyncStore, layout: DataLayout, dispatch: LineDispatcher,
                 slots: asyncio.Semaphore, urls: tuple[str, ...], cancel_grace: float = 60.0) -> None:
        self.batch = batch
        self.db = db
        self.layout = layout
        self.dispatch = dispatch
        self.slots = slots
        self.urls = urls
        self.cancel_grace = cancel_grace
        self._in_flight: set[asyncio.Task[None]] = set()
        self._checked = 0.0
        self._status = batch.status

    async def run(self) -> None:
        if self.batch.status == "validating" and not await self._validate():
            return
        if self._status == "in_progress" and await self._input_missing():
            return
        if self._status == "in_progress" and not self._expired():
            await self._run_lines()
        await self._finish()

    # Validation

    async def _input_missing(self) -> bool:
        """Fail the batch if its input file was deleted (before it started, or while it ran)."""
        batch = self.batch
        record = await self.db.get_file(batch.input_file_id, batch.owner)
        if record is not None and self.layout.file_path(record.id).is_file():
            return False
        await self.db.update_batch(batch.id, if_status=("validating", "in_progress"), status="failed",
                                   failed_at=_now(),
                                   errors=[{"code": "file_not_found", "param": "input_file_id", "line": None,
                                            "message": f"The input file {batch.input_file_id} was deleted before "
                                                       "the batch could read all of it."}])
        await self._refresh()
        return True

    async def _validate(self) -> bool:
        """The input file is still there: the batch starts with its line count as total."""
        batch = self.batch
        if await self._input_missing():
            return False
        record = await self.db.get_file(batch.input_file_id, batch.owner)
        assert record is not None
        if not await self.db.update_batch(batch.id, if_status=("validating",), status="in_progress",
                                          in_progress_at=_now(), total=record.lines):
            await self._refresh()
            return not self.batch.done
        self._status = "in_progress"
        return True

    # Lines

    async def _run_lines(self) -> None:
        """Run the lines not yet recorded until they are all recorded or the batch stops; whatever
        way this returns (or is cancelled, on shutdown), no line of it is left running."""
        try:
            await self._start_lines()
            if self._status == "cancelling":
                await self._let_in_flight_finish()
        finally:
            await self._drop_in_flight()

    async def _start_lines(self) -> None:
        batch = self.batch
        done = await self.db.recorded_lines(batch.id)
        path = self.layout.file_path(batch.input_file_id)
        with open(path, "rb") as handle:  # noqa: ASYNC230 - read in chunks on a worker thread below
            lines = await asyncio.to_thread(_lines, handle)
            while chunk := await asyncio.to_thread(_next_lines, lines):
                for number, record in chunk:
                    if number in done:
                        continue
                    if not await self._slot():
                        return
                    task = asyncio.create_task(self._line(number, record))
                    self._in_flight.add(task)
                    task.add_done_callback(self._line_done)
        while self._in_flight:
            if not await self._still_running():
                return
            await asyncio.wait(set(self._in_flight), timeout=_WATCH)

    async def _let_in_flight_finish(self) -> None:
        """A cancelled batch keeps the answers of the lines it had started: they run to their end,
        for `cancel_grace` seconds at most, and are recorded (a cancelling batch still records)."""
        if self._in_flight:
            logger.info("batch %s: cancelling; %d lines in flight may finish", self.batch.id, len(self._in_flight))
            await asyncio.wait(set(self._in_flight), timeout=self.cancel_grace)

    async def _slot(self) -> bool:
        """Take a line slot, watching the batch while every slot is busy; False (and no slot
        held) once it was cancelled or its window passed."""
        acquire = asyncio.ensure_future(self.slots.acquire())
        taken = False
        try:
            while not taken:
                done, _ = await asyncio.wait({acquire}, timeout=_WATCH)
                taken = bool(done)
                if not taken and not await self._still_running():
                    return False
            if await self._still_running():
                return True
            self.slots.release()
            return False
        finally:
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
                if not acquire.cancelled():  # it was granted as it was cancelled
                    self.slots.release()

    def _line_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            logger.error("batch %s: a line failed unexpectedly", self.batch.id, exc_info=task.exception())

    async def _drop_in_flight(self) -> None:
        """Cancel the lines still running; their results are not recorded (a later run of a batch
        still in progress does them)."""
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _line(self, number: int, record: dict[str, Any]) -> None:
        batch = self.batch
        request_id = f"req_{uuid.uuid4().hex}"
        try:
            request = datasets.batch_request_of(record, self.urls)
        except RecordError as exc:  # checked at upload; only a file changed on disk gets here
            custom_id = str(record.get("custom_id", ""))
            await self.db.record_batch_result(batch.id, number, custom_id, ok=False,
                                              result=unanswered_line(custom_id, "invalid_request", str(exc)))
            return
        while True:
            with running_in_background():
                answer = await self.dispatch(batch.owner, request.url, request.body, request_id)
            if not answer.transient:
                break
            await asyncio.sleep(answer.retry_after or _RETRY_AFTER)
        input_tokens, output_tokens = answer.tokens()
        await self.db.record_batch_result(batch.id, number, request.custom_id, ok=answer.status == 200,
                                          result=answered_line(request.custom_id, request_id, answer),
                                          input_tokens=input_tokens, output_tokens=output_tokens)

    # Watching

    def _expired(self) -> bool:
        return time.time() >= self.batch.expires_at

    async def _refresh(self) -> None:
        found = await self.db.get_batch(self.batch.id)
        if found is not None:
            self.batch = found
            self._status = found.status

    async def _still_running(self) -> bool:
        """False once the batch was cancelled, its window passed or its input file was deleted
        (looked up every `_WATCH` s)."""
        if time.monotonic() - self._checked >= _WATCH:
            self._checked = time.monotonic()
            await self._refresh()
            if self._status == "in_progress" and not self.layout.file_path(self.batch.input_file_id).is_file():
                await self._input_missing()
        return self._status == "in_progress" and not self._expired()

    # The end

    async def _finish(self) -> None:
        await self._refresh()
        batch = self.batch
        if batch.status == "cancelling":
            await self._close("cancelling", "cancelled", cancelled_at=_now())
        elif batch.status == "in_progress" and self._expired():
            await self._close("in_progress", "expired", expired_at=_now())
        elif batch.status in ("in_progress", "finalizing"):
            if batch.status == "in_progress":
                if len(await self.db.recorded_lines(batch.id)) < batch.total:
                    return  # stopped part-way (shutdown): the next run goes on
                await self.db.update_batch(batch.id, if_status=("in_progress",), status="finalizing",
                                           finalizing_at=_now())
            await self._close("finalizing", "completed", completed_at=_now())

    async def _close(self, current: str, final: str, **stamps: int) -> None:
        """Write the output and error files from the recorded lines (and, for an expired batch,
        the lines that never ran), and end the batch `final` with them."""
        batch = self.batch
        files = await asyncio.to_thread(self._write_files, final == "expired")
        closed = False
        try:
            closed = await self.db.update_batch(
                batch.id, if_status=(current,), status=final, files=list(files.values()),
                **{column: record.id for column, record in files.items()}, **stamps)
        finally:
            if not closed:  # not recorded, so not kept
                for record in files.values():
                    self.layout.file_path(record.id).unlink(missing_ok=True)
        if closed:
            await self.db.drop_batch_results(batch.id)
            logger.info("batch %s: %s", batch.id, final)

    def _write_files(self, expired: bool) -> dict[str, FileRecord]:
        """The output and error files (those with lines), by the batch column naming each."""
        files: dict[str, FileRecord] = {}
        for column, suffix, lines in (("output_file_id", "output", self._output_lines()),
                                      ("error_file_id", "error", self._error_lines(expired))):
            file_id = ids.new_id(ids.FILE)
            path = self.layout.file_path(file_id)
            count, size, sha256 = blobs.write_lines(path, lines)
            if not count:
                path.unlink()
                continue
            files[column] = FileRecord(id=file_id, owner=self.batch.owner, filename=f"{self.batch.id}_{suffix}.jsonl",
                                       purpose="batch_output", bytes=size, created_at=_now(),
                                       format=datasets.BATCH_OUTPUT_FORMAT, lines=count, sha256=sha256)
        return files

    def _recorded(self, ok: bool) -> Iterator[tuple[int, str]]:
        """The recorded results that succeeded (`ok`) or not, in line order, a page at a time."""
        after = 0
        while page := self.db.store.batch_results(self.batch.id, ok=ok, after_line=after):
            yield from page
            after = page[-1][0]

    def _output_lines(self) -> Iterator[str]:
        return (line for _, line in self._recorded(True))

    def _error_lines(self, expired: bool) -> Iterator[str]:
        """The failed lines, and for an expired batch the lines that never ran, in input order."""
        failed = self._recorded(False)
        if not expired:
            yield from (line for _, line in failed)
            return
        recorded = self.db.store.recorded_lines(self.batch.id)
        pending = next(failed, None)
        with open(self.layout.file_path(self.batch.input_file_id), "rb") as handle:
            for number, record in datasets.read_records(handle):
                if pending is not None and pending[0] == number:
                    yield pending[1]
                    pending = next(failed, None)
                elif number not in recorded:
                    yield unanswered_line(str(record.get("custom_id", "")), "batch_expired", _EXPIRED_MESSAGE)
