"""Availability of the API across start-up and shutdown.

While models load, and once the server drains, `/v1` answers 503 with `Retry-After`
at once rather than holding the request, so clients and load balancers go elsewhere
or come back later. `/health` stays up; `/ready` says 503 in both states.

Draining (`Drainer.drain`, run on SIGTERM by `reference_server.server.DrainingServer`) lets the requests in
flight finish within the grace period, then ends the rest: a stream gets an error event
with code `server_shutdown` and `[DONE]`, so the client knows the answer is cut short,
and a request whose answer has not started gets a 503. Only then does the server stop
listening and run the lifespan shutdown, which stops every service (engines, the
fine-tuning worker) in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maas_sdk.protocol.vocabulary import RETRY_AFTER_DRAINING, RETRY_AFTER_LOADING
from reference_server.http.errors import HTTPError
from reference_server.http.sse import DONE, error_event

logger = logging.getLogger("reference_server")

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
        shutdown = HTTPError(503, "The server shut down before this request finished; retry it.",
                            code="server_shutdown", headers={"retry-after": str(RETRY_AFTER_DRAINING)})
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
        self.draining = False

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def add(self, flight: InFlight) -> None:
        self._flights.add(flight)

    def discard(self, flight: InFlight) -> None:
        self._flights.discard(flight)

    async def drain(self, grace: float) -> None:
        """Refuse new `/v1` requests, wait up to `grace` s for those in flight, end the rest."""
        self.draining = True
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


class Loading(Protocol):
    """What the middleware needs to know of model loading."""

    ready: asyncio.Event
    error: BaseException | None


class LifecycleMiddleware:
    """503 + `Retry-After` on `/v1` while models load or the server drains; otherwise
    registers the request with the `Drainer` so a shutdown can wait for it or end it."""

    def __init__(self, app: ASGIApp, drainer: Drainer, loading: Loading) -> None:
        self.app = app
        self.drainer = drainer
        self.loading = loading

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        unavailable: HTTPError | None = None
        if self.drainer.draining:
            unavailable = HTTPError(503, "The server is shutting down; retry shortly.", code="draining",
                                   headers={"retry-after": str(RETRY_AFTER_DRAINING)})
        elif not self.loading.ready.is_set() and self.loading.error is None:
            unavailable = HTTPError(503, "The server is loading its models; retry shortly.", code="loading",
                                   headers={"retry-after": str(RETRY_AFTER_LOADING)})
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
