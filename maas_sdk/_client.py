"""`MaaS` and `AsyncMaaS`: the two clients, thin typed shells over one shared core.

Each public method is a typed signature that asks `_endpoints` for its `Call` and
hands it to the client's API (`SyncTransport` / `AsyncTransport`, the `SyncAPI` /
`AsyncAPI` its resources get too); the API sends it through the shared retry policy
and parses the answer with the shared core, or, in a `with_raw_response` /
`with_streaming_response` view, returns the raw answer. Nothing about an operation
is written twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload

import httpx
from typing_extensions import Self, Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._core import DEFAULT_LIMITS, ClientCore
from maas_sdk._response import AsyncResponseContextManager, ResponseContextManager, Viewable
from maas_sdk._scoring import Score, score_of
from maas_sdk._streaming import AsyncStream, Stream
from maas_sdk._tools import ModelT, ParsedChatCompletion, ToolLoop
from maas_sdk._transport import AsyncTransport, SyncTransport
from maas_sdk._types import (
    ChatParams,
    ClassificationInput,
    CompletionParams,
    EmbeddingInput,
    EncodingFormat,
    MessageParam,
    Prompt,
    RequestOptions,
    ResponseFormatParam,
    TimeParam,
    ToolRunParams,
    UsageParams,
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
    Reranking,
    Tokenized,
    UsagePage,
    UsageResult,
)
from maas_sdk.resources.batches import AsyncBatches, Batches
from maas_sdk.resources.files import AsyncFiles, Files
from maas_sdk.resources.fine_tuning import AsyncFineTuning, FineTuning
from maas_sdk.resources.models import AsyncModels, Models
from maas_sdk.resources.responses import AsyncResponses, Responses

__all__ = ["AsyncMaaS", "MaaS"]


class MaaS(ClientCore[httpx.Client], Viewable):
    """Client for a Model-as-a-Service API: `MaaS(api_key=..., base_url=...)`, best used as `with MaaS() as client:`.

    Calls are retried `max_retries` times on connection errors, timeouts, 408, 409,
    429 and 5xx answers. Every method also accepts `extra_headers`, `extra_query`,
    `extra_body` and `timeout` (see `RequestOptions`), and has a raw form:
    `client.with_raw_response.generate(...)` (status, headers, `.parse()`) and
    `client.with_streaming_response.generate(...)` (a context manager; the body is read
    when asked). `list()` methods return a `Page` that iterates every item.
    """

    _context_manager = ResponseContextManager

    def _new_http_client(self, timeout: httpx.Timeout) -> httpx.Client:
        return httpx.Client(timeout=timeout, limits=DEFAULT_LIMITS, follow_redirects=True)

    @property
    def _api(self) -> SyncTransport:
        return SyncTransport(self._settings, self._http, self._mode)

    @property
    def models(self) -> Models:
        return Models(self._api)

    @property
    def files(self) -> Files:
        return Files(self._api)

    @property
    def fine_tuning(self) -> FineTuning:
        return FineTuning(self._api)

    @property
    def batches(self) -> Batches:
        return Batches(self._api)

    @property
    def responses(self) -> Responses:
        """OpenAI's Responses API: `create`, `stream`, `parse`, and the stored responses."""
        return Responses(self._api)

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
        return self._api.stream(call) if stream else self._api.request(call)

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
        return self._api.stream(call) if stream else self._api.request(call)

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
        return self._api.request(endpoints.embeddings(
            input, model=model, encoding_format=encoding_format, dimensions=dimensions, options=options
        ))

    def classify(
        self, input: ClassificationInput, *, model: str, labels: Sequence[str] | None = None,
        **options: Unpack[RequestOptions],
    ) -> Classifications:
        """Classify text (POST /classifications); `labels` makes it zero-shot over those labels.
        A classifier fine-tuned on text pairs classifies pairs: `{"text": ..., "text_pair": ...}`."""
        return self._api.request(endpoints.classifications(input, model=model, labels=labels, options=options))

    def rerank(
        self, query: str, documents: Sequence[str], *, model: str, top_n: int | None = None,
        return_documents: bool | None = None, max_tokens_per_doc: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> Reranking:
        """Rank `documents` by relevance to `query` (POST /rerank): `.results` most relevant first,
        each with the document's `index` and its `relevance_score` (`.indices` lists the indices);
        `top_n` keeps the best ones only. An embedding model scores by cosine similarity, a
        classifier fine-tuned on text pairs by its probability of relevance."""
        return self._api.request(endpoints.rerank(
            query, documents, model=model, top_n=top_n, return_documents=return_documents,
            max_tokens_per_doc=max_tokens_per_doc, options=options,
        ))

    def tokenize(
        self, text: str, *, model: str, add_special_tokens: bool | None = None, **options: Unpack[RequestOptions]
    ) -> Tokenized:
        """The model's token ids for `text` (POST /tokenize)."""
        return self._api.request(endpoints.tokenize(text, model=model, add_special_tokens=add_special_tokens,
                                                options=options))

    def detokenize(self, tokens: Sequence[int], *, model: str, **options: Unpack[RequestOptions]) -> Detokenized:
        """The text for token ids (POST /detokenize)."""
        return self._api.request(endpoints.detokenize(tokens, model=model, options=options))

    def evaluate(self, *, model: str, file: str, **options: Unpack[RequestOptions]) -> Evaluation:
        """Score `model` on an uploaded file (POST /evaluations)."""
        return self._api.request(endpoints.evaluation(model=model, file=file, options=options))

    def score(self, prompt: str, continuation: str, *, model: str, **options: Unpack[RequestOptions]) -> Score:
        """How likely `model` finds `continuation` after `prompt`: one completion request that
        generates nothing (`echo=True`, `max_tokens=0`, `logprobs=1`) and reads the logprobs of
        the continuation's tokens. A `Score`: `.logprob` (their sum), `.token_logprobs`,
        `.tokens`, `.token_count`, `.is_greedy`."""
        call = endpoints.score(prompt, continuation, model=model, options=options)
        return self._api.request(call, lambda generation, _: score_of(generation, len(prompt)))

    def usage(self, *, start_time: TimeParam, **params: Unpack[UsageParams]) -> UsagePage[UsageResult]:
        """What this API key used from `start_time` on (GET /usage): a page of time buckets
        (`bucket_width` "1m", "1h" or "1d", the default), each with its results: requests, tokens
        read and written, inputs embedded or classified, tokens trained; one result per model
        and/or kind with `group_by=["model", "kind"]`. `page.next_page` is the `page=` of the next."""
        return self._api.request(endpoints.usage(start_time=start_time, **params))

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



class AsyncMaaS(ClientCore[httpx.AsyncClient], Viewable):
    """Async client for a Model-as-a-Service API, best used as `async with AsyncMaaS() as client:`.

    The same methods as `MaaS`, to be awaited; streams and paginated lists are
    consumed with `async for`.
    """

    _context_manager = AsyncResponseContextManager

    def _new_http_client(self, timeout: httpx.Timeout) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout, limits=DEFAULT_LIMITS, follow_redirects=True)

    @property
    def _api(self) -> AsyncTransport:
        return AsyncTransport(self._settings, self._http, self._mode)

    @property
    def models(self) -> AsyncModels:
        return AsyncModels(self._api)

    @property
    def files(self) -> AsyncFiles:
        return AsyncFiles(self._api)

    @property
    def fine_tuning(self) -> AsyncFineTuning:
        return AsyncFineTuning(self._api)

    @property
    def batches(self) -> AsyncBatches:
        return AsyncBatches(self._api)

    @property
    def responses(self) -> AsyncResponses:
        """OpenAI's Responses API: `create`, `stream`, `parse`, and the stored responses."""
        return AsyncResponses(self._api)

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
            return await self._api.stream(call)
        return await self._api.request(call)

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
            return await self._api.stream(call)
        return await self._api.request(call)

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
        return await self._api.request(endpoints.embeddings(
            input, model=model, encoding_format=encoding_format, dimensions=dimensions, options=options
        ))

    async def classify(
        self, input: ClassificationInput, *, model: str, labels: Sequence[str] | None = None,
        **options: Unpack[RequestOptions],
    ) -> Classifications:
        """Classify text (POST /classifications); `labels` makes it zero-shot over those labels.
        A classifier fine-tuned on text pairs classifies pairs: `{"text": ..., "text_pair": ...}`."""
        return await self._api.request(endpoints.classifications(input, model=model, labels=labels, options=options))

    async def rerank(
        self, query: str, documents: Sequence[str], *, model: str, top_n: int | None = None,
        return_documents: bool | None = None, max_tokens_per_doc: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> Reranking:
        """Rank `documents` by relevance to `query` (POST /rerank); see `MaaS.rerank`."""
        return await self._api.request(endpoints.rerank(
            query, documents, model=model, top_n=top_n, return_documents=return_documents,
            max_tokens_per_doc=max_tokens_per_doc, options=options,
        ))

    async def tokenize(
        self, text: str, *, model: str, add_special_tokens: bool | None = None, **options: Unpack[RequestOptions]
    ) -> Tokenized:
        """The model's token ids for `text` (POST /tokenize)."""
        return await self._api.request(endpoints.tokenize(text, model=model, add_special_tokens=add_special_tokens,
                                                      options=options))

    async def detokenize(
        self, tokens: Sequence[int], *, model: str, **options: Unpack[RequestOptions]
    ) -> Detokenized:
        """The text for token ids (POST /detokenize)."""
        return await self._api.request(endpoints.detokenize(tokens, model=model, options=options))

    async def evaluate(self, *, model: str, file: str, **options: Unpack[RequestOptions]) -> Evaluation:
        """Score `model` on an uploaded file (POST /evaluations)."""
        return await self._api.request(endpoints.evaluation(model=model, file=file, options=options))

    async def score(self, prompt: str, continuation: str, *, model: str, **options: Unpack[RequestOptions]) -> Score:
        """How likely `model` finds `continuation` after `prompt`; see `MaaS.score`."""
        call = endpoints.score(prompt, continuation, model=model, options=options)
        return await self._api.request(call, lambda generation, _: score_of(generation, len(prompt)))

    async def usage(self, *, start_time: TimeParam, **params: Unpack[UsageParams]) -> UsagePage[UsageResult]:
        """What this API key used from `start_time` on (GET /usage); see `MaaS.usage`."""
        return await self._api.request(endpoints.usage(start_time=start_time, **params))

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

