"""One line of a batch: how it is answered (`LineDispatcher`), and its line in the output files.

An output line is OpenAI's: `{"id", "custom_id", "response": {"status_code", "request_id",
"body"}, "error"}`, `response` the route's answer whatever its status (a 4xx answer goes to the
error file), `error` set only for a line that never ran (the batch expired first).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from maas_sdk.protocol.vocabulary import QUOTA_EXCEEDED
from reference_server.storage import ids


@dataclass(frozen=True)
class LineAnswer:
    """What the route answered: its status, JSON body and `Retry-After` (seconds, if sent)."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        """Overloaded or briefly unavailable: the line is tried again rather than failed (but not
        past the key's monthly budget, which no retry within the batch's window overcomes)."""
        error = self.body.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return self.status in (429, 503) and code != QUOTA_EXCEEDED

    def tokens(self) -> tuple[int, int]:
        """(input, output) tokens of the answer's `usage`, as chat, completions and embeddings
        (`prompt_tokens`, `completion_tokens`) or responses (`input_tokens`, `output_tokens`) report it."""
        usage = self.body.get("usage") if self.status == 200 else None
        if not isinstance(usage, dict):
            return 0, 0
        read = usage.get("prompt_tokens", usage.get("input_tokens"))
        written = usage.get("completion_tokens", usage.get("output_tokens"))
        return int(read or 0), int(written or 0)


class LineDispatcher(Protocol):
    """Answers one line as its url's route would answer `owner`'s request `body`."""

    async def __call__(self, owner: str, url: str, body: dict[str, Any], request_id: str) -> LineAnswer: ...


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def answered_line(custom_id: str, request_id: str, answer: LineAnswer) -> str:
    return _dumps({"id": ids.new_id(ids.BATCH_REQUEST), "custom_id": custom_id,
                   "response": {"status_code": answer.status, "request_id": request_id, "body": answer.body},
                   "error": None})


def unanswered_line(custom_id: str, code: str, message: str) -> str:
    return _dumps({"id": ids.new_id(ids.BATCH_REQUEST), "custom_id": custom_id, "response": None,
                   "error": {"code": code, "message": message}})
