"""A tour of the maas SDK against a running server: generate, stream, chat, embed.

Run it with `make demo` (which starts a reference server), or point it at any server:
`MAAS_BASE_URL=http://127.0.0.1:8000/v1 python examples/quickstart.py`.
"""

from __future__ import annotations

import math
import time

from maas_sdk import MaaS

GENERATOR = "smollm2-135m-instruct"
EMBEDDER = "all-minilm-l6-v2"


def title(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 60 - len(text)))


def main() -> None:
    with MaaS() as client:
        title("models")
        for model in client.models.list():
            print(f"  {model.id:<24} task={model.task:<9} params={model.parameters:,} "
                  f"ctx={model.context_length} {model.dtype} on {model.device}")

        title("generate (greedy)")
        result = client.generate("The three primary colors are", model=GENERATOR, max_tokens=24, temperature=0)
        print(f"  {result.text.strip()!r}")
        print(f"  finish={result.finish_reason} usage={result.usage} request_id={result.request_id}")

        title("generate, streamed")
        start = time.perf_counter()
        first = None
        tokens = 0
        print("  ", end="")
        with client.generate("Write a haiku about the sea.", model=GENERATOR, max_tokens=40,
                             temperature=0.7, seed=7, stream=True) as stream:
            for chunk in stream:
                if chunk.text and first is None:
                    first = time.perf_counter() - start
                tokens += 1 if chunk.text else 0
                print(chunk.text, end="", flush=True)
        elapsed = time.perf_counter() - start
        print(f"\n  first token after {first or 0:.2f} s, {tokens} chunks in {elapsed:.2f} s")

        title("chat")
        reply = client.chat(
            [{"role": "system", "content": "You answer in one short sentence."},
             {"role": "user", "content": "What is the capital of France?"}],
            model=GENERATOR, max_tokens=40, temperature=0,
        )
        print(f"  assistant: {reply.text.strip()}")

        title("embeddings")
        sentences = ["A man is playing a guitar.", "Someone strums a guitar.", "Stocks fell sharply today."]
        vectors = client.embed(sentences, model=EMBEDDER).vectors
        print(f"  {len(vectors)} vectors of {len(vectors[0])} dimensions")
        for i in range(1, len(sentences)):
            similarity = sum(a * b for a, b in zip(vectors[0], vectors[i]))
            print(f"  cos({sentences[0]!r}, {sentences[i]!r}) = {similarity:.3f}")
        assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-3)


if __name__ == "__main__":
    main()
