"""Constrained decoding in-process: the schema subset check, the compile cache and time limit,
the tool-call parser, and constrained rows sharing the engine's batch with free ones."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, Field

from maas_sdk.protocol.structured import FunctionDefinition, ToolDefinition
from reference_server.inference.engine.generation import GenerationEngine, GenerationHandle
from reference_server.inference.engine.sampling import SamplingParams
from reference_server.inference.loading import LoadedModel
from reference_server.inference.structured import ConstraintError, StructuredBackend, specs, tools
from reference_server.inference.structured.schema import check_schema

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                           "confidence": {"type": "integer", "minimum": 0, "maximum": 10}},
          "required": ["answer", "confidence"], "additionalProperties": False}


@pytest.fixture(scope="module")
def backend(generator: LoadedModel) -> StructuredBackend:
    vocab = int(generator.model.config.get_text_config().vocab_size)
    eos = [int(generator.tokenizer.eos_token_id)]
    return StructuredBackend(generator.tokenizer, vocab, eos, compile_timeout_s=5.0)


# ----- schema subset -----


def test_pydantic_schemas_are_in_the_subset() -> None:
    class Inner(BaseModel):
        tags: list[str] = Field(max_length=3)

    class Outer(BaseModel):
        name: str | None = None
        inner: Inner
        score: float = Field(ge=0, le=1)

    check_schema(Outer.model_json_schema(), "p")  # $defs, $ref, anyOf with null, titles, defaults


@pytest.mark.parametrize(("schema", "where"), [
    ({"type": "object", "properties": {"a": {"not": {}}}}, "#/properties/a"),
    ({"anyOf": [{"type": "string"}, {"if": {}}]}, "#/anyOf/1"),
    ({"$defs": {"x": {"dependentSchemas": {}}}}, "#/$defs/x"),
])
def test_unsupported_keyword_is_named_with_its_place(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(ConstraintError) as info:
        check_schema(schema, "response_format.json_schema.schema")
    assert f"at {where} " in info.value.message
    assert info.value.param == "response_format.json_schema.schema"
    assert info.value.code == "unsupported_schema"


# ----- compile cache and limits -----


async def test_cached_compile_is_under_a_millisecond(backend: StructuredBackend) -> None:
    spec = specs.json_schema(SCHEMA, "p")
    first = await backend.compile(spec)
    # The same schema sent with other spacing and its keywords in another order.
    same_schema_other_keyword_order = specs.json_schema(json.loads(json.dumps(dict(reversed(SCHEMA.items())),
                                                                              indent=4)), "p")
    start = time.perf_counter()
    again = await backend.compile(same_schema_other_keyword_order)
    assert time.perf_counter() - start < 1e-3
    assert again is first


def test_the_cache_key_keeps_the_properties_order_and_nothing_else() -> None:
    reordered = {**SCHEMA, "properties": dict(reversed(SCHEMA["properties"].items()))}
    assert specs.json_schema(reordered, "p") != specs.json_schema(SCHEMA, "p")
    nested = {"type": "array", "items": SCHEMA}
    nested_keywords_reversed = {"items": dict(reversed(SCHEMA.items())), "type": "array"}
    assert specs.json_schema(nested, "p") == specs.json_schema(nested_keywords_reversed, "p")
    (fn,) = tools.functions([ToolDefinition(function=FunctionDefinition(name="f", parameters=reordered))])
    tag = json.loads(tools.call_grammar([fn], "required", parallel=False).source)
    assert list(tag["format"]["tags"][0]["content"]["json_schema"]["properties"]) == ["confidence", "answer"]


async def test_concurrent_compiles_of_one_grammar_share_the_work(backend: StructuredBackend) -> None:
    spec = specs.regex("[a-z]{2,9}@example\\.(com|org)", "p")
    before = len(backend.compile_times)
    results = await asyncio.gather(*(backend.compile(spec) for _ in range(4)))
    assert all(r is results[0] for r in results)
    assert len(backend.compile_times) == before + 1


async def test_compile_past_the_time_limit_is_refused_then_cached(generator: LoadedModel) -> None:
    vocab = int(generator.model.config.get_text_config().vocab_size)
    quick = StructuredBackend(generator.tokenizer, vocab, [int(generator.tokenizer.eos_token_id)],
                              compile_timeout_s=0.05)
    slow = specs.json_schema({"type": "string", "pattern": "^([a-z0-9]{1,30}-){1,40}$"}, "p")
    with pytest.raises(ConstraintError) as info:
        await quick.compile(slow)
    assert info.value.code == "grammar_too_complex"
    for _ in range(600):  # the compile goes on in its thread and lands in the cache
        if quick.is_cached(slow):
            break
        await asyncio.sleep(0.1)
    assert await quick.compile(slow) is not None
    quick.close()


async def test_too_large_and_invalid_grammars(backend: StructuredBackend) -> None:
    with pytest.raises(ConstraintError) as info:
        await backend.compile(specs.grammar("root ::= " + " | ".join(f'"w{i}"' for i in range(20000)), "g"))
    assert info.value.code == "grammar_too_large"
    with pytest.raises(ConstraintError) as info:
        await backend.compile(specs.grammar("root ::= missing", "structured_outputs.grammar"))
    assert info.value.code == "invalid_grammar" and info.value.param == "structured_outputs.grammar"


# ----- tool calls -----

CALLS = ('Sure. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}</tool_call>\n'
         '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')


def test_tool_calls_parse_out_of_the_text() -> None:
    content, calls = tools.parse(CALLS)
    assert content == "Sure. "
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris", "days": [1, 2]}), ("get_time", {})]
    assert tools.parse("No call, just <b>text</b> and a < sign.") == (
        "No call, just <b>text</b> and a < sign.", [])


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_streamed_tool_calls_split_anywhere_give_the_same_calls(step: int) -> None:
    parser = tools.ToolCallParser()
    events: list[tuple[Any, ...]] = []
    for i in range(0, len(CALLS), step):
        events += parser.feed(CALLS[i:i + step])
    events += parser.finish()
    text = "".join(e[1] for e in events if e[0] == "text")
    names = [e[2] for e in events if e[0] == "call"]
    args = ["".join(e[2] for e in events if e[0] == "arguments" and e[1] == i) for i in range(2)]
    assert (text, names) == ("Sure. ", ["get_weather", "get_time"])
    assert [json.loads(a) for a in args] == [{"city": "Paris", "days": [1, 2]}, {}]


# ----- engine -----


async def _run(engine: GenerationEngine, handle: GenerationHandle) -> tuple[str, str | None]:
    parts, finish = [], None
    async for ev in handle:
        parts.append(ev.text)
        finish = ev.finish_reason or finish
    return "".join(parts), finish


@pytest.mark.slow
async def test_constrained_rows_share_the_batch_and_leave_free_rows_alone(
    generator: LoadedModel, backend: StructuredBackend, chat_prompt: Callable[[str], list[int]]
) -> None:
    compiled = await backend.compile(specs.json_schema(SCHEMA, "p"))
    question = chat_prompt("Is water wet? Answer in JSON with answer and confidence.")
    free_prompt = chat_prompt("Name a colour.")
    params = SamplingParams(max_tokens=30, temperature=0)
    engine = GenerationEngine(generator)
    engine.start()
    try:
        free_alone = await _run(engine, engine.submit(free_prompt, params))
        rows = [engine.submit(question, SamplingParams(max_tokens=30, temperature=t, seed=i),
                              backend.matcher(compiled)) for i, t in enumerate([0.0, 1.0, 1.0])]
        free = engine.submit(free_prompt, params)
        results = await asyncio.gather(*(_run(engine, h) for h in [*rows, free]))
    finally:
        await engine.stop()
    for text, finish in results[:3]:
        assert finish == "stop"
        jsonschema.validate(json.loads(text), SCHEMA)
    assert results[3] == free_alone


async def test_constrained_rows_report_the_models_raw_logprobs(
    generator: LoadedModel, backend: StructuredBackend, chat_prompt: Callable[[str], list[int]]
) -> None:
    # Every token is forced: masked logits would give each a logprob of 0.
    compiled = await backend.compile(specs.grammar('root ::= "Purple elephants dance at noon."', "g"))
    engine = GenerationEngine(generator)
    engine.start()
    try:
        handle = engine.submit(chat_prompt("Say something."), SamplingParams(max_tokens=40, temperature=0, logprobs=1),
                               backend.matcher(compiled))
        text, logprobs = "", []
        async for ev in handle:
            text += ev.text
            logprobs += ev.logprobs or []
    finally:
        await engine.stop()
    assert text == "Purple elephants dance at noon."
    assert min(lp.logprob for lp in logprobs) < -1.0
