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

_PATTERN = re.compile(r"^(file|ftjob|ftevent|ftckpt)-[0-9a-f]{24}$")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def is_valid(prefix: str, value: str) -> bool:
    return bool(_PATTERN.match(value)) and value.startswith(prefix + "-")
