"""Helpers tests share (kept out of conftest.py, which pytest imports on its own)."""

from __future__ import annotations

import httpx


def post_declared_and_chunked(url: str, headers: dict[str, str], body: bytes, chunk: int) -> list[httpx.Response]:
    """POST `body` twice: once with its Content-Length, once chunked with none declared, so a
    size limit is shown to hold whether or not the client announces the size."""
    declared = httpx.post(url, headers=headers, content=body, timeout=30)
    chunked = httpx.post(url, headers=headers, timeout=30,
                         content=(body[i:i + chunk] for i in range(0, len(body), chunk)))
    return [declared, chunked]
