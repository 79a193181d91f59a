"""Base classes of the resource namespaces (`client.models`, `client.files`, ...).

A resource only holds its client; clients make a new one on each attribute access
(it is two words of memory), so a client and its copies hold no reference cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maas_sdk._client import AsyncMaaS, MaaS

__all__ = ["AsyncResource", "SyncResource"]


class SyncResource:
    __slots__ = ("_client",)

    def __init__(self, client: MaaS) -> None:
        self._client = client


class AsyncResource:
    __slots__ = ("_client",)

    def __init__(self, client: AsyncMaaS) -> None:
        self._client = client
