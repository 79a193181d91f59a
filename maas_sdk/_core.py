"""What the sync and async clients share: settings, request building and answer parsing.

An operation is described once, as a `Call` (built in `_endpoints`). The transports
(`_transport`) only move it over the wire; everything else happens here, once:
URL join, headers (`Authorization`, `User-Agent`, `Idempotency-Key`, the caller's
extras), JSON or multipart body, per-call timeout, status -> exception mapping,
parsing into the response model and copying `x-request-id` onto it.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast

import httpx
from typing_extensions import Self, Unpack

from maas_sdk._clock import SYSTEM_CLOCK, Clock
from maas_sdk._exceptions import APIConnectionError, APITimeoutError, status_error
from maas_sdk._logging import logger, redact_headers, setup_logging
from maas_sdk._retry import RETRY_COUNT_HEADER, RetryPolicy
from maas_sdk._types import ClientOptions, JSONBody, TimeoutParam
from maas_sdk._version import __version__
from maas_sdk.protocol import ResponseModel

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "Call",
    "ClientCore",
    "ResponseMode",
    "Settings",
    "StreamCall",
    "build_request",
    "checked",
    "parse",
    "set_request_id",
    "transport_errors",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
DEFAULT_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
USER_AGENT = f"maas-sdk/{__version__}"
# Methods that change state: each call gets one Idempotency-Key, repeated by its retries.
_KEYED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

R = TypeVar("R")
C = TypeVar("C")
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)

FileField = tuple[str, bytes, str]
# What a client's methods answer with: "parsed", the typed result; "raw", a `RawResponse`
# whose body has been read; "streamed", a `StreamedResponse` whose body is read only when asked.
ResponseMode = Literal["parsed", "raw", "streamed"]


@dataclass(frozen=True, kw_only=True)
class Call(Generic[R]):
    """One API operation, fully described: what to send and what the answer parses into."""

    method: str
    path: str
    response_type: type[R]
    json: JSONBody | None = None
    files: Mapping[str, FileField] | None = None
    form: Mapping[str, object] | None = None
    query: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    timeout: TimeoutParam = None


@dataclass(frozen=True, kw_only=True)
class StreamCall(Call[R], Generic[R, C]):
    """A call that may be streamed; when it is, the answer is a series of `chunk_type` events."""

    chunk_type: type[C]


def _timeout(value: float | httpx.Timeout) -> httpx.Timeout:
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value)


@dataclass(frozen=True)
class Settings:
    """A client's configuration. Immutable: `with_options` makes a changed copy."""

    api_key: str | None = field(repr=False)
    base_url: str
    timeout: httpx.Timeout
    max_retries: int
    default_headers: Mapping[str, str]
    clock: Clock = SYSTEM_CLOCK
    headers: dict[str, str] = field(init=False, repr=False)
    retry: RetryPolicy = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        headers = {"accept": "application/json", "user-agent": USER_AGENT, RETRY_COUNT_HEADER: "0"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        headers.update({name.lower(): value for name, value in self.default_headers.items()})
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "retry", RetryPolicy(self.max_retries))

    @classmethod
    def create(
        cls,
        api_key: str | None,
        base_url: str | httpx.URL | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
    ) -> Settings:
        api_key = api_key if api_key is not None else os.environ.get("MAAS_API_KEY")
        url = base_url if base_url is not None else os.environ.get("MAAS_BASE_URL") or DEFAULT_BASE_URL
        return cls(
            api_key=api_key,
            base_url=str(url).rstrip("/"),
            timeout=_timeout(timeout),
            max_retries=max_retries,
            default_headers=dict(default_headers or {}),
        )

    def updated(self, **overrides: Unpack[ClientOptions]) -> Settings:
        merged_headers = {**self.default_headers, **(overrides.get("default_headers") or {})}
        timeout = overrides.get("timeout")
        base_url = overrides.get("base_url")
        max_retries = overrides.get("max_retries")
        return replace(
            self,
            api_key=overrides.get("api_key", self.api_key),
            base_url=self.base_url if base_url is None else str(base_url).rstrip("/"),
            timeout=self.timeout if timeout is None else _timeout(timeout),
            max_retries=self.max_retries if max_retries is None else max_retries,
            default_headers=merged_headers,
        )


def set_request_id(response: ResponseModel, request_id: str | None) -> None:
    """Record the call's `x-request-id` on a response model.

    `_request_id` is a plain slot, so this skips pydantic's `__setattr__` (its
    validation-assignment machinery has nothing to do here).
    """
    object.__setattr__(response, "_request_id", request_id)


class transport_errors:
    """Turn httpx's transport failures into `APITimeoutError` / `APIConnectionError`."""

    __slots__ = ("_doing", "_request")

    def __init__(self, request: httpx.Request, doing: str = "Connection error") -> None:
        self._request = request
        self._doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, httpx.TimeoutException):
            raise APITimeoutError(f"Request timed out: {exc}", request=self._request) from exc
        if isinstance(exc, httpx.TransportError):
            raise APIConnectionError(f"{self._doing}: {exc!r}", request=self._request) from exc


def build_request(settings: Settings, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
    """The httpx request for `call`: URL, headers (a fresh `Idempotency-Key` for state changes), body, timeout."""
    headers = settings.headers
    if call.headers or call.method in _KEYED_METHODS:
        headers = dict(headers)
        if call.headers:
            headers.update({name.lower(): value for name, value in call.headers.items()})
        if call.method in _KEYED_METHODS and "idempotency-key" not in headers:
            headers["idempotency-key"] = "maas-" + os.urandom(16).hex()
    request = http.build_request(
        call.method,
        settings.base_url + call.path,
        params=call.query,
        headers=headers,
        json=call.json,
        files=call.files,
        data=call.form,
        timeout=settings.timeout if call.timeout is None else _timeout(call.timeout),
    )
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("request %s %s headers=%s", call.method, request.url, redact_headers(request.headers.items()))
    return request


def checked(response: httpx.Response) -> httpx.Response:
    """The response if it is a success; its typed exception otherwise (its body must have been read)."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "%s %s -> %d (request id %s)",
            response.request.method, response.request.url, response.status_code,
            response.headers.get("x-request-id"),
        )
    if response.is_error:
        raise status_error(response)
    return response


def parse(call: Call[R], response: httpx.Response) -> R:
    """The read body of a successful answer as `call.response_type`, with its request id."""
    if call.response_type is bytes:
        return cast(R, response.content)
    model = cast(type[ResponseModel], call.response_type)
    result = model.model_validate_json(response.content)
    set_request_id(result, response.headers.get("x-request-id"))
    return cast(R, result)


class ClientCore(ABC, Generic[HttpT]):
    """Configuration and connection pool ownership of a client; its API object does the calls."""

    _settings: Settings
    _http: HttpT
    _owns_http: bool
    _mode: ResponseMode

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: HttpT | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        """`api_key` defaults to `$MAAS_API_KEY` (no key: no `Authorization` header), `base_url` to
        `$MAAS_BASE_URL` or `http://127.0.0.1:8000/v1`. `timeout` is in seconds or an `httpx.Timeout`.
        Pass `http_client` to use your own httpx client (proxies, certificates, transports);
        closing this client then leaves yours open."""
        setup_logging()
        self._settings = Settings.create(api_key, base_url, timeout, max_retries, default_headers)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else self._new_http_client(self._settings.timeout)
        self._mode = "parsed"

    @abstractmethod
    def _new_http_client(self, timeout: httpx.Timeout) -> HttpT:
        """The connection pool a client makes for itself when not given one."""

    @property
    def api_key(self) -> str | None:
        return self._settings.api_key

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def timeout(self) -> httpx.Timeout:
        return self._settings.timeout

    @property
    def max_retries(self) -> int:
        return self._settings.max_retries

    def with_options(self, **overrides: Unpack[ClientOptions]) -> Self:
        """A copy with some settings changed, sharing this client's connection pool.

        Closing the copy leaves the pool open; closing this client closes it for both.
        `default_headers` are merged into the current ones.
        """
        return self._copy(self._settings.updated(**overrides), self._mode)

    def _viewed(self, mode: ResponseMode) -> Self:
        return self._copy(self._settings, mode)

    def _copy(self, settings: Settings, mode: ResponseMode) -> Self:
        copy = object.__new__(type(self))
        copy._settings = settings
        copy._http = self._http
        copy._owns_http = False
        copy._mode = mode
        return copy
