"""`maas serve`'s server: uvicorn, draining the app before it stops listening."""

from __future__ import annotations

import asyncio
from types import FrameType

import uvicorn

from reference_server.http.middleware.draining import Drainer


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining the app before it stops listening.

    uvicorn's own shutdown closes the listening socket first and then waits for the
    connections; here the first SIGTERM/SIGINT drains instead (readiness goes 503 at
    once, idle keep-alive connections are closed), and only when the drain is over does
    uvicorn's shutdown run. A second signal skips what is left of the drain.
    """

    def __init__(self, config: uvicorn.Config, drainer: Drainer, grace: float) -> None:
        super().__init__(config)
        self.drainer = drainer
        self.grace = grace
        self._drain: asyncio.Task[None] | None = None
        self._hurry = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self._hurry = True
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if not await super().on_tick(counter):
            return False
        if self._hurry or self.force_exit:
            return True
        if self._drain is None:
            self._drain = asyncio.create_task(self.drainer.drain(self.grace))
            self._close_idle_connections()
        return self._drain.done()

    def _close_idle_connections(self) -> None:
        """Close the kept-alive connections between requests now (nothing is lost), and make
        those in a request close after their answer, so no idle client holds the drain."""
        for connection in list(self.server_state.connections):
            connection.shutdown()

