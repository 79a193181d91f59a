"""A streamed answer put back together: the `Generation` or `ChatCompletion` its chunks make up.

`get_final_completion()` on a stream returns what the same request without `stream`
would have returned. A stream keeps each chunk's JSON text (a string: cheap to keep,
and nothing for the garbage collector to scan, unlike the parsed chunks); the pieces
of each choice are merged field by field from it, so that fields this SDK does not
model (a server's extensions) are merged too:
strings are concatenated (`text`, `content`, a tool call's `arguments`), lists are
extended (logprobs), lists of objects with an `index` (tool calls) are merged by
index, and fields that name rather than add (`index`, `id`, `type`, `role`,
`finish_reason`, `name`) keep their first value, or their last for `finish_reason`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from maas_sdk.protocol import ChatCompletion, Generation

__all__ = ["final_chat_completion", "final_generation"]

JSONObject = dict[str, Any]
_NAMING = frozenset({"index", "id", "type", "role", "name", "object", "model"})


def _merge(into: JSONObject, piece: JSONObject) -> None:
    for key, value in piece.items():
        if value is None:
            continue
        current = into.get(key)
        if current is None:
            into[key] = _copy(value)
        elif key == "finish_reason":
            into[key] = value
        elif key in _NAMING:
            continue
        elif isinstance(current, str) and isinstance(value, str):
            into[key] = current + value
        elif isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            _merge_list(current, value)
        else:
            into[key] = _copy(value)


def _merge_list(into: list[Any], pieces: list[Any]) -> None:
    for piece in pieces:
        if isinstance(piece, dict) and isinstance(piece.get("index"), int):
            same = next((item for item in into if isinstance(item, dict) and item.get("index") == piece["index"]),
                        None)
            if same is not None:
                _merge(same, piece)
                continue
        into.append(_copy(piece))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _envelope(chunks: Sequence[JSONObject], object_name: str) -> JSONObject:
    """The fields around the choices: the first chunk's (id, model, creation time, ...), the last usage."""
    if not chunks:
        raise RuntimeError("the stream carried no chunks to assemble")
    answer = {key: value for key, value in chunks[0].items() if key not in ("choices", "usage") and value is not None}
    answer["object"] = object_name
    usage = next((chunk["usage"] for chunk in reversed(chunks) if chunk.get("usage")), None)
    if usage is not None:
        answer["usage"] = usage
    return answer


def _choices(chunks: Sequence[JSONObject]) -> dict[int, JSONObject]:
    merged: dict[int, JSONObject] = {}
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            _merge(merged.setdefault(index, {}), choice)
    return merged


def final_generation(chunks: Sequence[JSONObject]) -> Generation:
    answer = _envelope(chunks, "text_completion")
    choices = _choices(chunks)
    answer["choices"] = [{"text": "", **choices[index], "index": index} for index in sorted(choices)]
    return Generation.model_validate(answer)


def final_chat_completion(chunks: Sequence[JSONObject]) -> ChatCompletion:
    answer = _envelope(chunks, "chat.completion")
    choices = []
    for index, choice in sorted(_choices(chunks).items()):
        message = {"role": "assistant", **choice.pop("delta", {})}
        message.setdefault("content", None)
        for value in message.values():  # a streamed tool call's `index` says where it goes, not what it is
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        item.pop("index", None)
        choices.append({**choice, "index": index, "message": message})
    answer["choices"] = choices
    return ChatCompletion.model_validate(answer)
