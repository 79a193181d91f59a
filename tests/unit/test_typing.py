"""A user's program that uses the SDK's surface type-checks under `mypy --strict`: wire models can be
built by hand, pages iterate typed items, stream helpers and `score()` return typed results."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

PROGRAM = '''
from maas_sdk import AsyncMaaS, ChatCompletion, Generation, MaaS, Model, Score, Usage


def use(client: MaaS) -> float:
    handmade: list[Model] = [Model(id="a"), Model(id="b", task="generate")]
    ids: list[str] = [m.id for m in client.models.list()] + [m.id for m in handmade]
    sizes: list[int] = [f.bytes for f in client.files.list(limit=10)]
    page = client.fine_tuning.jobs.list()
    statuses = [job.status for job in page.data] + [job.status for job in page.get_next_page()]
    with client.generate("hi", model="m", stream=True, logprobs=1, n=2) as stream:
        pieces: list[str] = list(stream.text_stream)
        whole: Generation = stream.get_final_completion()
    with client.chat([{"role": "user", "content": "hi"}], model="m", stream=True, logprobs=True) as chat:
        reply: ChatCompletion = chat.until_done().get_final_completion()
    score: Score = client.score("The sky is", " blue", model="m")
    usage = Usage(prompt_tokens=1)
    print(ids, sizes, statuses, pieces, whole.text, reply.text, usage.total_tokens, score.token_count)
    return score.logprob


async def use_async(client: AsyncMaaS) -> list[str]:
    first = await client.models.list()
    later = [m.id async for m in client.files.list()]
    stream = await client.generate("hi", model="m", stream=True)
    final: Generation = await stream.get_final_completion()
    return [m.id for m in first.data] + later + [final.text]
'''


@pytest.mark.slow
def test_a_users_program_type_checks(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    out, err, status = mypy_api.run(["--strict", "--cache-dir", str(tmp_path / "cache"), str(program)])
    assert status == 0, out + err
