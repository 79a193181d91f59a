"""The wire protocol: pydantic models for every request and response body.

Both the SDK and the reference server import these models, so the two sides
cannot drift apart, and the server's OpenAPI document is generated from them.
Response models tolerate unknown fields (servers add fields over time);
request models reject them, so a misspelt parameter is reported instead of
being silently ignored.
"""

from maas_sdk.protocol.chat import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatMessage,
    ChunkChatChoice,
)
from maas_sdk.protocol.common import ErrorBody, ErrorDetail, RequestModel, ResponseModel, StreamOptions, Usage
from maas_sdk.protocol.completions import (
    CompletionChoice,
    CompletionRequest,
    Generation,
    GenerationChunk,
    SamplingFields,
)
from maas_sdk.protocol.embeddings import Embedding, EmbeddingRequest, Embeddings, EmbeddingUsage
from maas_sdk.protocol.files import FileDeleted, FileList, FileObject
from maas_sdk.protocol.fine_tuning import (
    FineTuneMethod,
    FineTuningCheckpoint,
    FineTuningCheckpointList,
    FineTuningEvent,
    FineTuningEventList,
    FineTuningJob,
    FineTuningJobCreate,
    FineTuningJobError,
    FineTuningJobList,
    Hyperparameters,
    LoraConfig,
    SupervisedMethod,
)
from maas_sdk.protocol.logprobs import ChatChoiceLogprobs, ChatTokenLogprob, CompletionLogprobs, TopLogprob
from maas_sdk.protocol.models import Model, ModelDeleted, ModelList
from maas_sdk.protocol.nlu import (
    Classification,
    ClassificationRequest,
    Classifications,
    Detokenized,
    DetokenizeRequest,
    Evaluation,
    EvaluationRequest,
    Tokenized,
    TokenizeRequest,
)
from maas_sdk.protocol.tokenizer import (
    TokenizerInfo,
    VLLMDetokenizeRequest,
    VLLMDetokenizeResponse,
    VLLMTokenizeRequest,
    VLLMTokenizeResponse,
)

__all__ = [
    "ChatChoice",
    "ChatChoiceLogprobs",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatDelta",
    "ChatMessage",
    "ChatTokenLogprob",
    "ChunkChatChoice",
    "Classification",
    "ClassificationRequest",
    "Classifications",
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionRequest",
    "DetokenizeRequest",
    "Detokenized",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingUsage",
    "Embeddings",
    "ErrorBody",
    "ErrorDetail",
    "Evaluation",
    "EvaluationRequest",
    "FileDeleted",
    "FileList",
    "FileObject",
    "FineTuneMethod",
    "FineTuningCheckpoint",
    "FineTuningCheckpointList",
    "FineTuningEvent",
    "FineTuningEventList",
    "FineTuningJob",
    "FineTuningJobCreate",
    "FineTuningJobError",
    "FineTuningJobList",
    "Generation",
    "GenerationChunk",
    "Hyperparameters",
    "LoraConfig",
    "Model",
    "ModelDeleted",
    "ModelList",
    "RequestModel",
    "ResponseModel",
    "SamplingFields",
    "StreamOptions",
    "SupervisedMethod",
    "TokenizeRequest",
    "Tokenized",
    "TokenizerInfo",
    "TopLogprob",
    "Usage",
    "VLLMDetokenizeRequest",
    "VLLMDetokenizeResponse",
    "VLLMTokenizeRequest",
    "VLLMTokenizeResponse",
]
