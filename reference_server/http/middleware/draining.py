"""Availability of the API across start-up and shutdown.

While models load, and once the server drains, `/v1` answers 503 with `Retry-After`
at once rather than holding the request, so clients and load balancers go elsewhere
or come back later. `/health` stays up; `/ready` says 503 in both states.

Draining (`Drainer.drain`, run on SIGTERM by `DrainingServer`) lets the requests in
flight finish within the grace period, then ends the rest: a stream gets an error event
with code `server_shutdown` and `[DONE]`, so the client knows the answer is cut short,
and a request whose answer has not started gets a 503. Only then does the server stop
listening and run the lifespan shutdown, which stops every service (engines, the
fine-tuning worker) in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server.http.errors import APIError
from reference_server.http.sse import DONE, error_event

logger = logging.getLogger("reference_server")

LOADING_RETRY_AFTER = 2
DRAINING_RETRY_AFTER = 5
# After the grace period, how long the cut-short requests get to send their last words.
CUTOFF_SECONDS = 5.0


class InFlight:
    """One `/v1` request being served: the scope that can cancel it and what it has sent."""

    __slots__ = ("cancel_scope", "done_sent", "finished", "started", "streaming")

    def __init__(self) -> None:
        self.cancel_scope = anyio.CancelScope()
        self.started = False
        self.streaming = False
        self.done_sent = False
        self.finished = False

    def observe(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.streaming = any(
                name == b"content-type" and value.startswith(b"text/event-stream")
                for name, value in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                self.done_sent = bytes(body).endswith(DONE)
            if not message.get("more_body", False):
                self.finished = True

    async def cut_short(self, scope: Scope, receive: Receive, send: Send) -> None:
        """End the answer of a request the shutdown interrupted, in whatever state it is."""
        shutdown = APIError(503, "The server shut down before this request finished; retry it.",
                            code="server_shutdown", headers={"retry-after": str(DRAINING_RETRY_AFTER)})
        if not self.started:
            await shutdown.response()(scope, receive, send)
            return
        if self.finished:
            return
        if self.streaming and not self.done_sent:
            last_words = error_event(shutdown) + DONE
            await send({"type": "http.response.body", "body": last_words, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Drainer:
    """Tracks the `/v1` requests in flight and drains them on shutdown."""

    def __init__(self) -> None:
        self._flights: set[InFlight] = set()

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def add(self, flight: InFlight) -> None:
        self._flights.add(flight)

    def discard(self, flight: InFlight) -> None:
        self._flights.discard(flight)

    async def drain(self, app: Starlette, grace: float) -> None:
        """Refuse new `/v1` requests, wait up to `grace` s for those in flight, end the rest."""
        app.state.draining = True
        logger.info("draining: %d request(s) in flight, up to %g s to finish", self.in_flight, grace)
        if await self._wait_idle(grace):
            return
        logger.warning("grace period over: ending %d request(s) in flight", self.in_flight)
        for flight in list(self._flights):
            flight.cancel_scope.cancel()
        await self._wait_idle(CUTOFF_SECONDS)

    async def _wait_idle(self, timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._flights and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return not self._flights


class LifecycleMiddleware:
    """503 + `Retry-After` on `/v1` while models load or the server drains; otherwise
    registers the request with the `Drainer` so a shutdown can wait for it or end it."""

    def __init__(self, app: ASGIApp, drainer: Drainer) -> None:
        self.app = app
        self.drainer = drainer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        unavailable: APIError | None = None
        if getattr(state, "draining", False):
            unavailable = APIError(503, "The server is shutting down; retry shortly.", code="draining",
                                   headers={"retry-after": str(DRAINING_RETRY_AFTER)})
        elif not state.models_service.ready.is_set() and state.models_service.error is None:
            unavailable = APIError(503, "The server is loading its models; retry shortly.", code="loading",
                                   headers={"retry-after": str(LOADING_RETRY_AFTER)})
        if unavailable is not None:
            await unavailable.response()(scope, receive, send)
            return

        flight = InFlight()

        async def observed_send(message: Message) -> None:
            flight.observe(message)
            await send(message)

        self.drainer.add(flight)
        try:
            with flight.cancel_scope:
                await self.app(scope, receive, observed_send)
            if flight.cancel_scope.cancelled_caught:
                await flight.cut_short(scope, receive, send)
        finally:
            self.drainer.discard(flight)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining the app before it stops listening.

    uvicorn's own shutdown closes the listening socket first and then waits for the
    connections; here the first SIGTERM/SIGINT drains instead (readiness goes 503 at
    once, idle keep-alive connections are closed), and only when the drain is over does
    uvicorn's shutdown run. A second signal skips what is left of the drain.
    """

    def __init__(self, config: uvicorn.Config, app: Starlette, grace: float) -> None:
        super().__init__(config)
        self.app = app
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
            drainer: Drainer = self.app.state.drainer
            self._drain = asyncio.create_task(drainer.drain(self.app, self.grace))
            self._close_idle_connections()
        return self._drain.done()

    def _close_idle_connections(self) -> None:
        """Close the kept-alive connections between requests now (nothing is lost), and make
        those in a request close after their answer, so no idle client holds the drain."""
        for connection in list(self.server_state.connections):
            connection.shutdown()

