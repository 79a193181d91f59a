"""Object ids (`file-…`, `ftjob-…`, …) and their strict validation.

Ids become file and folder names under the data directory, so an id is accepted only if it
is exactly a known prefix plus 24 lowercase hex digits: nothing a client sends can name a
path outside the folder it belongs in.
"""

from __future__ import annotations

import re
import secrets

FILE = "file"
JOB = "ftjob"
EVENT = "ftevent"
CHECKPOINT = "ftckpt"
BATCH = "batch"  # OpenAI spells batch ids `batch_…`
BATCH_REQUEST = "batch_req"  # a line of a batch's output

_SEPARATOR = {BATCH: "_", BATCH_REQUEST: "_"}
_PATTERN = re.compile(r"^(file-|ftjob-|ftevent-|ftckpt-|batch_|batch_req_)[0-9a-f]{24}$")


def new_id(prefix: str) -> str:
    return f"{prefix}{_SEPARATOR.get(prefix, '-')}{secrets.token_hex(12)}"


def is_valid(prefix: str, value: str) -> bool:
    start = prefix + _SEPARATOR.get(prefix, "-")
    return bool(_PATTERN.match(value)) and value.startswith(start) and len(value) == len(start) + 24
