"""Who may call the API, and which models each caller may use.

Keys come from `MAAS_API_KEYS` (comma-separated, every model allowed) and from
`MAAS_API_KEYS_FILE`, one key per line, optionally followed by whitespace and a
comma-separated model allowlist (exact ids or shell patterns such as `ft:*`), and by
`monthly_tokens=N`, the tokens the key may use per calendar month (UTC) before its
requests are refused with 429 `quota_exceeded` until the month ends; `#` starts a comment:

    sk-team-a                                  # every model
    sk-team-b   smollm2-135m-instruct,ft:*     # only these
    sk-team-c   monthly_tokens=1000000         # every model, a million tokens a month

A missing or unknown key is a 401; a known key asking for a model outside its
allowlist is a 403, whether or not that model exists, so a restricted key cannot
probe which models are served. Keys are held only as SHA-256 digests, compared in
constant time, and never logged; callers are named by `key_id`, a non-secret digest
prefix that owns their files and jobs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from reference_server.http.errors import HTTPError
from reference_server.settings import Settings

ANONYMOUS = "anonymous"


def key_id(key: str) -> str:
    """A stable, non-secret name for an API key (used as the owner of files and jobs)."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its principal, its model allowlist (None: every model) and its
    monthly token budget (None: no budget)."""

    principal: str
    models: tuple[str, ...] | None = None
    monthly_tokens: int | None = None

    def may_use(self, model_id: str) -> bool:
        if self.models is None:
            return True
        return any(fnmatch.fnmatchcase(model_id, pattern) for pattern in self.models)


@dataclass(frozen=True)
class KeyEntry:
    """One configured key: the key, its model allowlist (None: every model), its monthly token budget."""

    key: str
    models: tuple[str, ...] | None = None
    monthly_tokens: int | None = None


_FORMAT = "expected `KEY [MODEL,MODEL,...] [monthly_tokens=N]`"


def parse_key_file(text: str) -> list[KeyEntry]:
    """A `KeyEntry` per non-blank, non-comment line; ValueError names a bad line."""
    entries: list[KeyEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, *rest = line.split()
        words = [w for w in rest if "=" not in w]
        budget: int | None = None
        for option in (w for w in rest if "=" in w):
            name, _, value = option.partition("=")
            if name != "monthly_tokens":
                raise ValueError(f"line {number}: unknown option {name!r}; {_FORMAT}")
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"line {number}: monthly_tokens must be a whole number of tokens, at least 1")
            budget = int(value)
        models: tuple[str, ...] | None = None
        if words:
            models = tuple(m.strip() for m in " ".join(words).split(",") if m.strip())
            if not models or any(" " in m for m in models):
                raise ValueError(f"line {number}: {_FORMAT}")
        entries.append(KeyEntry(key, models, budget))
    return entries


class KeyRing:
    """The configured keys as `(digest, Caller)` pairs; empty means the API is open."""

    def __init__(self, entries: Iterable[KeyEntry]) -> None:
        self._entries: list[tuple[bytes, Caller]] = [
            (_digest(entry.key), Caller(key_id(entry.key), entry.models, entry.monthly_tokens))
            for entry in entries
        ]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        entries = [KeyEntry(key) for key in settings.api_keys]
        if settings.api_keys_file is not None:
            try:
                entries.extend(parse_key_file(settings.api_keys_file.read_text(encoding="utf-8")))
            except ValueError as exc:
                raise ValueError(f"MAAS_API_KEYS_FILE {settings.api_keys_file}: {exc}") from None
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def caller_named(self, principal: str) -> Caller | None:
        """The caller a principal names, with its key's current allowlist (None: no such key is
        configured any more). Background work done for a caller, such as a batch, acts as it."""
        if not self._entries:
            return Caller(ANONYMOUS) if principal == ANONYMOUS else None
        return next((caller for _, caller in self._entries if caller.principal == principal), None)

    def lookup(self, token: str | None) -> Caller | None:
        """The caller holding `token`. Every configured digest is compared, so the time taken
        reveals neither which key matched nor how much of one."""
        if token is None:
            return None
        digest = _digest(token)
        found: Caller | None = None
        for candidate, caller in self._entries:
            if hmac.compare_digest(candidate, digest):
                found = caller
        return found


class APIKeyMiddleware:
    """API-key check, mounted on `/v1` (health, readiness, metrics and the OpenAPI
    document stay open): the key comes as `Authorization: Bearer <key>` (OpenAI) or
    `x-api-key: <key>` (Anthropic). Sets `scope["state"]["principal"]` and `["caller"]`."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.keys:
            state["principal"] = ANONYMOUS
            state["caller"] = Caller(ANONYMOUS)
            await self.app(scope, receive, send)
            return
        token = _presented_key(scope)
        caller = self.keys.lookup(token)
        if caller is None:
            message = "Missing API key: send `Authorization: Bearer <key>` (or `x-api-key: <key>`)." if token is None else (
                "Incorrect API key provided."
            )
            response = HTTPError(401, message, code="invalid_api_key",
                                headers={"www-authenticate": "Bearer"}).response()
            await response(scope, receive, send)
            return
        state["principal"] = caller.principal
        state["caller"] = caller
        await self.app(scope, receive, send)


def caller_of(request: Request) -> Caller:
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else Caller(ANONYMOUS)


def require_model(request: Request, model_id: str, param: str = "model") -> None:
    """403 unless the caller's key may use `model_id`."""
    if not caller_of(request).may_use(model_id):
        raise HTTPError(403, f"This API key may not use the model '{model_id}'.", param=param,
                       code="model_not_allowed")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _presented_key(scope: Scope) -> str | None:
    """The Bearer token, else the `x-api-key` header (a Bearer token wins when both are sent)."""
    api_key: str | None = None
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            auth = value.decode("latin-1")
            if auth[:7].lower() == "bearer ":
                return str(auth[7:].strip())
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1").strip()
    return api_key
