"""`MaaS` and `AsyncMaaS`: the two clients, thin typed shells over one shared core.

Each public method is a typed signature that asks `_endpoints` for its `Call` and
hands it to `_request` (or `_stream`); those send it through the shared retry
policy and parse the answer with the shared core. Nothing about an operation is
written twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx
from typing_extensions import Self, Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._core import DEFAULT_LIMITS, Call, ClientCore, StreamCall, transport_errors
from maas_sdk._streaming import AsyncStream, ChunkT, Stream
from maas_sdk._tools import ModelT, ParsedChatCompletion, ToolLoop
from maas_sdk._types import (
    ChatParams,
    CompletionParams,
    EmbeddingInput,
    EncodingFormat,
    MessageParam,
    Prompt,
    RequestOptions,
    ResponseFormatParam,
    ToolRunParams,
)
from maas_sdk.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Classifications,
    Detokenized,
    Embeddings,
    Evaluation,
    Generation,
    GenerationChunk,
    Tokenized,
)
from maas_sdk.resources.files import AsyncFiles, Files
from maas_sdk.resources.fine_tuning import AsyncFineTuning, FineTuning
from maas_sdk.resources.models import AsyncModels, Models

__all__ = ["AsyncMaaS", "MaaS"]

R = TypeVar("R")


class MaaS(ClientCore[httpx.Client]):
    """Client for a Model-as-a-Service API: `MaaS(api_key=..., base_url=...)`, best used as `with MaaS() as client:`.

    Calls are retried `max_retries` times on connection errors, timeouts, 408, 409,
    429 and 5xx answers. Every method also accepts `extra_headers`, `extra_query`,
    `extra_body` and `timeout` (see `RequestOptions`).
    """

    def _new_http_client(self, timeout: httpx.Timeout) -> httpx.Client:
        return httpx.Client(timeout=timeout, limits=DEFAULT_LIMITS, follow_redirects=True)

    @property
    def models(self) -> Models:
        return Models(self)

    @property
    def files(self) -> Files:
        return Files(self)

    @property
    def fine_tuning(self) -> FineTuning:
        return FineTuning(self)

    @overload
    def generate(
        self, prompt: Prompt, *, model: str, stream: Literal[False] = False, **params: Unpack[CompletionParams]
    ) -> Generation: ...
    @overload
    def generate(
        self, prompt: Prompt, *, model: str, stream: Literal[True], **params: Unpack[CompletionParams]
    ) -> Stream[GenerationChunk]: ...
    @overload
    def generate(
        self, prompt: Prompt, *, model: str, stream: bool, **params: Unpack[CompletionParams]
    ) -> Generation | Stream[GenerationChunk]: ...
    def generate(
        self, prompt: Prompt, *, model: str, stream: bool = False, **params: Unpack[CompletionParams]
    ) -> Generation | Stream[GenerationChunk]:
        """Complete `prompt` (POST /completions): a `Generation`, or with `stream=True` a
        `Stream[GenerationChunk]`. Sampling parameters left out use the server's defaults."""
        call = endpoints.completion(prompt, model=model, stream=stream, **params)
        return self._stream(call) if stream else self._request(call)

    @overload
    def chat(
        self, messages: Sequence[MessageParam], *, model: str, response_format: type[ModelT],
        stream: Literal[False] = False, **params: Unpack[ChatParams],
    ) -> ParsedChatCompletion[ModelT]: ...
    @overload
    def chat(
        self, messages: Sequence[MessageParam], *, model: str, stream: Literal[False] = False,
        response_format: Mapping[str, object] | None = None, **params: Unpack[ChatParams],
    ) -> ChatCompletion: ...
    @overload
    def chat(
        self, messages: Sequence[MessageParam], *, model: str, stream: Literal[True],
        response_format: ResponseFormatParam | None = None, **params: Unpack[ChatParams],
    ) -> Stream[ChatCompletionChunk]: ...
    @overload
    def chat(
        self, messages: Sequence[MessageParam], *, model: str, stream: bool,
        response_format: ResponseFormatParam | None = None, **params: Unpack[ChatParams],
    ) -> ChatCompletion | Stream[ChatCompletionChunk]: ...
    def chat(
        self, messages: Sequence[MessageParam], *, model: str, stream: bool = False,
        response_format: ResponseFormatParam | None = None, **params: Unpack[ChatParams],
    ) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """Answer a conversation (POST /chat/completions): a `ChatCompletion`, or with `stream=True`
        a `Stream[ChatCompletionChunk]`. `messages` are dicts or `ChatMessage`s.

        `response_format` may be a pydantic model class: the reply is then constrained to its
        schema and the answer is a `ParsedChatCompletion` whose `.parsed` is an instance of it.
        `tools` are dicts, pydantic models or typed Python functions."""
        call = endpoints.chat_completion(messages, model=model, stream=stream, response_format=response_format,
                                         **params)
        return self._stream(call) if stream else self._request(call)

    def run_tools(
        self, messages: Sequence[MessageParam], *, tools: Sequence[Callable[..., Any]], model: str,
        max_rounds: int = 10, **params: Unpack[ToolRunParams],
    ) -> ChatCompletion:
        """Chat with Python functions as tools: call the ones the model asks for, send back their
        results, and repeat until the model answers without a call (at most `max_rounds` rounds;
        then `ToolRunError`). Returns that last completion. `tool_choice` applies to the first
        request; later ones leave the choice to the model. A function's exception is sent to the
        model as the call's result, as are arguments that do not validate."""
        loop = ToolLoop(messages, tools, max_rounds)
        while True:
            reply: ChatCompletion = self.chat(loop.messages, model=model, tools=loop.tools, **loop.params(params))
            calls = loop.pending(reply)
            if not calls:
                return reply
            for pending in calls:
                loop.run(pending)

    def embed(
        self, input: EmbeddingInput, *, model: str, encoding_format: EncodingFormat | None = None,
        dimensions: int | None = None, **options: Unpack[RequestOptions],
    ) -> Embeddings:
        """Sentence vectors (POST /embeddings); `.vectors` lists them in input order."""
        return self._request(endpoints.embeddings(
            input, model=model, encoding_format=encoding_format, dimensions=dimensions, options=options
        ))

    def classify(
        self, input: str | list[str], *, model: str, labels: Sequence[str] | None = None,
        **options: Unpack[RequestOptions],
    ) -> Classifications:
        """Classify text (POST /classifications); `labels` makes it zero-shot over those labels."""
        return self._request(endpoints.classifications(input, model=model, labels=labels, options=options))

    def tokenize(
        self, text: str, *, model: str, add_special_tokens: bool | None = None, **options: Unpack[RequestOptions]
    ) -> Tokenized:
        """The model's token ids for `text` (POST /tokenize)."""
        return self._request(endpoints.tokenize(text, model=model, add_special_tokens=add_special_tokens,
                                                options=options))

    def detokenize(self, tokens: Sequence[int], *, model: str, **options: Unpack[RequestOptions]) -> Detokenized:
        """The text for token ids (POST /detokenize)."""
        return self._request(endpoints.detokenize(tokens, model=model, options=options))

    def evaluate(self, *, model: str, file: str, **options: Unpack[RequestOptions]) -> Evaluation:
        """Score `model` on an uploaded file (POST /evaluations)."""
        return self._request(endpoints.evaluation(model=model, file=file, options=options))

    def close(self) -> None:
        """Close the connection pool, unless it was given as `http_client=`."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, call: Call[R]) -> R:
        return self._parse(call, self._send(self._build_request(call), stream=False))

    def _stream(self, call: StreamCall[Any, ChunkT]) -> Stream[ChunkT]:
        return Stream(self._send(self._build_request(call), stream=True), call.chunk_type)

    def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        settings = self._settings
        return settings.retry.send(self._attempt, request, stream, settings.clock.sleep)

    def _attempt(self, request: httpx.Request, stream: bool) -> httpx.Response:
        with transport_errors(request):
            response = self._http.send(request, stream=stream)
            if stream and response.is_error:
                try:
                    response.read()
                finally:
                    response.close()
        return self._checked(response)


class AsyncMaaS(ClientCore[httpx.AsyncClient]):
    """Async client for a Model-as-a-Service API, best used as `async with AsyncMaaS() as client:`.

    The same methods as `MaaS`, to be awaited; streams and paginated lists are
    consumed with `async for`.
    """

    def _new_http_client(self, timeout: httpx.Timeout) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout, limits=DEFAULT_LIMITS, follow_redirects=True)

    @property
    def models(self) -> AsyncModels:
        return AsyncModels(self)

    @property
    def files(self) -> AsyncFiles:
        return AsyncFiles(self)

    @property
    def fine_tuning(self) -> AsyncFineTuning:
        return AsyncFineTuning(self)

    @overload
    async def generate(
        self, prompt: Prompt, *, model: str, stream: Literal[False] = False, **params: Unpack[CompletionParams]
    ) -> Generation: ...
    @overload
    async def generate(
        self, prompt: Prompt, *, model: str, stream: Literal[True], **params: Unpack[CompletionParams]
    ) -> AsyncStream[GenerationChunk]: ...
    @overload
    async def generate(
        self, prompt: Prompt, *, model: str, stream: bool, **params: Unpack[CompletionParams]
    ) -> Generation | AsyncStream[GenerationChunk]: ...
    async def generate(
        self, prompt: Prompt, *, model: str, stream: bool = False, **params: Unpack[CompletionParams]
    ) -> Generation | AsyncStream[GenerationChunk]:
        """Complete `prompt` (POST /completions): a `Generation`, or with `stream=True` an
        `AsyncStream[GenerationChunk]`. Sampling parameters left out use the server's defaults."""
        call = endpoints.completion(prompt, model=model, stream=stream, **params)
        if stream:
            return await self._stream(call)
        return await self._request(call)

    @overload
    async def chat(
        self, messages: Sequence[MessageParam], *, model: str, response_format: type[ModelT],
        stream: Literal[False] = False, **params: Unpack[ChatParams],
    ) -> ParsedChatCompletion[ModelT]: ...
    @overload
    async def chat(
        self, messages: Sequence[MessageParam], *, model: str, stream: Literal[False] = False,
        response_format: Mapping[str, object] | None = None, **params: Unpack[ChatParams],
    ) -> ChatCompletion: ...
    @overload
    async def chat(
        self, messages: Sequence[MessageParam], *, model: str, stream: Literal[True],
        response_format: ResponseFormatParam | None = None, **params: Unpack[ChatParams],
    ) -> AsyncStream[ChatCompletionChunk]: ...
    @overload
    async def chat(
        self, messages: Sequence[MessageParam], *, model: str, stream: bool,
        response_format: ResponseFormatParam | None = None, **params: Unpack[ChatParams],
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...
    async def chat(
        self, messages: Sequence[MessageParam], *, model: str, stream: bool = False,
        response_format: ResponseFormatParam | None = None, **params: Unpack[ChatParams],
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """Answer a conversation (POST /chat/completions): a `ChatCompletion`, or with `stream=True`
        an `AsyncStream[ChatCompletionChunk]`. `messages` are dicts or `ChatMessage`s;
        `response_format` and `tools` as for `MaaS.chat`."""
        call = endpoints.chat_completion(messages, model=model, stream=stream, response_format=response_format,
                                         **params)
        if stream:
            return await self._stream(call)
        return await self._request(call)

    async def run_tools(
        self, messages: Sequence[MessageParam], *, tools: Sequence[Callable[..., Any]], model: str,
        max_rounds: int = 10, **params: Unpack[ToolRunParams],
    ) -> ChatCompletion:
        """As `MaaS.run_tools`; the tools may be async functions (they are awaited)."""
        loop = ToolLoop(messages, tools, max_rounds)
        while True:
            reply: ChatCompletion = await self.chat(loop.messages, model=model, tools=loop.tools, **loop.params(params))
            calls = loop.pending(reply)
            if not calls:
                return reply
            for pending in calls:
                result = loop.start(pending)
                if inspect.isawaitable(result):
                    result = await loop.finish(result)
                loop.record(pending, result)

    async def embed(
        self, input: EmbeddingInput, *, model: str, encoding_format: EncodingFormat | None = None,
        dimensions: int | None = None, **options: Unpack[RequestOptions],
    ) -> Embeddings:
        """Sentence vectors (POST /embeddings); `.vectors` lists them in input order."""
        return await self._request(endpoints.embeddings(
            input, model=model, encoding_format=encoding_format, dimensions=dimensions, options=options
        ))

    async def classify(
        self, input: str | list[str], *, model: str, labels: Sequence[str] | None = None,
        **options: Unpack[RequestOptions],
    ) -> Classifications:
        """Classify text (POST /classifications); `labels` makes it zero-shot over those labels."""
        return await self._request(endpoints.classifications(input, model=model, labels=labels, options=options))

    async def tokenize(
        self, text: str, *, model: str, add_special_tokens: bool | None = None, **options: Unpack[RequestOptions]
    ) -> Tokenized:
        """The model's token ids for `text` (POST /tokenize)."""
        return await self._request(endpoints.tokenize(text, model=model, add_special_tokens=add_special_tokens,
                                                      options=options))

    async def detokenize(
        self, tokens: Sequence[int], *, model: str, **options: Unpack[RequestOptions]
    ) -> Detokenized:
        """The text for token ids (POST /detokenize)."""
        return await self._request(endpoints.detokenize(tokens, model=model, options=options))

    async def evaluate(self, *, model: str, file: str, **options: Unpack[RequestOptions]) -> Evaluation:
        """Score `model` on an uploaded file (POST /evaluations)."""
        return await self._request(endpoints.evaluation(model=model, file=file, options=options))

    async def close(self) -> None:
        """Close the connection pool, unless it was given as `http_client=`."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _request(self, call: Call[R]) -> R:
        return self._parse(call, await self._send(self._build_request(call), stream=False))

    async def _stream(self, call: StreamCall[Any, ChunkT]) -> AsyncStream[ChunkT]:
        return AsyncStream(await self._send(self._build_request(call), stream=True), call.chunk_type)

    async def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        settings = self._settings
        return await settings.retry.async_send(self._attempt, request, stream, settings.clock.async_sleep)

    async def _attempt(self, request: httpx.Request, stream: bool) -> httpx.Response:
        with transport_errors(request):
            response = await self._http.send(request, stream=stream)
            if stream and response.is_error:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        return self._checked(response)
