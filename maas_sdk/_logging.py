"""The `maas_sdk` logger: set `MAAS_LOG=debug` (or `info`) to see what the client does.

`info` logs each answer (method, URL, status, request id) and each retry;
`debug` adds the request headers. Credentials never reach a log line: any header
that can carry one is replaced by `<redacted>` before it is formatted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

__all__ = ["logger", "redact_headers", "setup_logging"]

logger = logging.getLogger("maas_sdk")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
# A header whose name contains one of these may carry a credential.
_SECRET_WORDS = ("auth", "api-key", "api_key", "apikey", "token", "secret", "password", "cookie", "session")
REDACTED = "<redacted>"


def setup_logging() -> None:
    """Configure the `maas_sdk` logger from `MAAS_LOG`, once, unless the application already did."""
    level = _LEVELS.get(os.environ.get("MAAS_LOG", "").strip().lower())
    if level is None or logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers as a dict, with every credential-bearing value replaced."""
    return {name: REDACTED if _is_secret(name) else value for name, value in headers}
