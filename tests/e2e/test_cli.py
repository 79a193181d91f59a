"""The `maas` command line as a person uses it: the installed console script, run against the
session's real server, its output read as a user or a script would read it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest

import maas_sdk
from maas_sdk import MaaS
from reference_server.testing import ServerProcess, free_port
from tests.constants import API_KEY, EMBEDDER, GENERATOR

DATA = Path(__file__).resolve().parents[1] / "data"
ESCAPE = "\x1b["
COMMANDS = ["models", "generate", "chat", "embed", "classify", "rerank", "tokenize", "eval", "usage", "files",
            "fine-tune", "batch", "serve", "bench"]


def entry_point() -> Path:
    """The `maas` console script installed beside this interpreter (what `pip install` made)."""
    script = Path(sys.executable).with_name("maas")
    assert script.is_file(), f"{script} is missing: install the project (make install)"
    assert "from maas_cli import main" in script.read_text(), f"{script} is not this version's: run make install"
    return script


def cli_env(server: ServerProcess | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAAS_") and k != "NO_COLOR"}
    if server is not None:
        env.update(MAAS_BASE_URL=server.base_url, MAAS_API_KEY=API_KEY)
    env.update(extra)
    return env


def maas(*args: str, server: ServerProcess | None = None, stdin: str | None = None,
         env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(entry_point()), *args], env=env or cli_env(server), input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ok(*args: str, server: ServerProcess, stdin: str | None = None) -> str:
    result = maas(*args, server=server, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert ESCAPE not in result.stdout and ESCAPE not in result.stderr, "colour written to a pipe"
    return result.stdout


def ok_json(*args: str, server: ServerProcess) -> Any:
    return json.loads(ok(*args, "--json", server=server))


def test_help_lists_every_command() -> None:
    result = maas("--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert f" {command} " in result.stdout, command
    assert ESCAPE not in result.stdout
    version = maas("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"maas {maas_sdk.__version__}"
    fine_tune, files = maas("fine-tune", "--help"), maas("files", "--help")
    assert fine_tune.returncode == 0 and files.returncode == 0
    assert all(f" {sub} " in fine_tune.stdout for sub in ("create", "list", "show", "events", "cancel"))
    assert all(f" {sub} " in files.stdout for sub in ("upload", "list", "show", "delete"))


def test_serve_and_bench_keep_their_options() -> None:
    serve = maas("serve", "--help")
    assert serve.returncode == 0, serve.stderr
    for option in ("--host", "--port", "--api-keys", "--threads", "--log-level", "--grace", "--access-log"):
        assert option in serve.stdout
    assert maas("bench", "no-such-benchmark").returncode == 2
    bench = maas("bench", "serving", "--help")
    assert bench.returncode == 0 and "--concurrency" in bench.stdout, bench.stdout + bench.stderr


@pytest.mark.slow  # a CLI process per call: seconds each
def test_models_as_a_table_and_as_json(server: ServerProcess) -> None:
    table = ok("models", server=server)
    assert table.splitlines()[0].split()[:2] == ["id", "task"]
    assert any(line.split()[:2] == [GENERATOR, "generate"] for line in table.splitlines())
    listed = ok_json("models", server=server)
    assert {m["id"]: m["task"] for m in listed["data"]}[EMBEDDER] == "embed"
    assert json.loads(ok("--json", "models", server=server)) == listed, "--json before the command is the same"


@pytest.mark.slow  # a CLI process per call: seconds each
def test_generate_matches_the_sdk(server: ServerProcess, client: MaaS) -> None:
    expected = client.generate("The capital of France is", model=GENERATOR, max_tokens=8, temperature=0).text
    assert ok("generate", "The capital of France is", "--max-tokens", "8", "-t", "0", server=server) == expected + "\n"
    streamed = ok("generate", "The capital of France is", "--max-tokens", "8", "-t", "0", "--stream", server=server)
    assert streamed == expected + "\n"
    chunks = [json.loads(line) for line in
              ok("generate", "-", "--max-tokens", "8", "-t", "0", "--stream", "--json", server=server,
                 stdin="The capital of France is").splitlines()]
    assert len(chunks) > 1 and "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == expected
    whole = ok_json("generate", "The capital of France is", "--max-tokens", "8", "-t", "0", "-m", GENERATOR,
                    server=server)
    assert whole["model"] == GENERATOR and whole["choices"][0]["text"] == expected


@pytest.mark.slow  # a CLI process per call: seconds each
def test_embed_similarity(server: ServerProcess) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stocks fell sharply today."]
    result = ok_json("embed", *texts, "--similarity", server=server)
    matrix = result["similarity"]
    assert result["model"] == EMBEDDER and len(matrix) == 3
    assert all(abs(matrix[i][i] - 1) < 1e-3 for i in range(3))
    assert matrix[0][1] == matrix[1][0] and matrix[0][1] > matrix[0][2] + 0.2
    vectors = ok_json("embed", "hello", server=server)["data"]
    assert len(vectors) == 1 and len(vectors[0]["embedding"]) == 384
    table = ok("embed", *texts, "--similarity", server=server)
    assert "1.000" in table and texts[2] in table


@pytest.mark.slow  # a CLI process per call: seconds each
def test_classify_and_tokenize(server: ServerProcess, client: MaaS) -> None:
    result = ok_json("classify", "I loved every minute", "What a waste of money", "-l", "positive,negative",
                     server=server)
    assert [item["index"] for item in result["data"]] == [0, 1]
    assert set(result["data"][0]["scores"]) == {"positive", "negative"}
    tokens = ok_json("tokenize", "Hello world", server=server)
    assert tokens["tokens"] == client.tokenize("Hello world", model=GENERATOR).tokens
    assert ok("tokenize", "Hello world", server=server).splitlines() == [
        "Hello world", f"{tokens['count']} tokens: {tokens['tokens']}"]


@pytest.mark.slow  # a CLI process per call: seconds each
def test_rerank_matches_the_sdk(server: ServerProcess, client: MaaS) -> None:
    query = "Where can I park my car?"
    documents = ["The soup was too salty.", "Parking is free behind the station.", "The car park opens at six."]
    expected = client.rerank(query, documents, model=EMBEDDER)
    result = ok_json("rerank", query, *documents, "--top-n", "2", server=server)
    assert result["model"] == EMBEDDER
    assert [r["index"] for r in result["results"]] == expected.indices[:2]
    rows = ok("rerank", query, *documents, server=server).splitlines()
    assert rows[0].split()[:3] == ["rank", "score", "document"]
    assert rows[1].split()[0] == "1" and documents[expected.indices[0]] in rows[1]
    assert documents[0] in rows[3], "least relevant last"
    refused = maas("rerank", query, *documents, "-m", GENERATOR, server=server)
    assert refused.returncode != 0 and "model" in refused.stderr


@pytest.mark.slow  # a CLI process per call: seconds each
def test_usage_per_model_and_kind(server: ServerProcess, client: MaaS) -> None:
    vectors = client.embed(["one", "two"], model=EMBEDDER)
    days = ok_json("usage", "--since", "1d", "--by", "model", "--by", "kind", "-m", EMBEDDER, server=server)["data"]
    assert days[-1]["results"], "today's bucket has the use"
    embedded = [r for day in days for r in day["results"] if r["kind"] == "embeddings"]
    assert {r["model"] for r in embedded} == {EMBEDDER}
    assert sum(r["inputs"] for r in embedded) >= 2 and sum(r["prompt_tokens"] for r in embedded) >= \
        vectors.usage.prompt_tokens
    table = ok("usage", "--since", "2h", "--bucket", "1h", "--by", "kind", server=server)
    assert "embeddings" in table and "bucket (UTC)" in table
    for bad in (["--since", "last week"], ["--bucket", "2d"], ["--by", "project"]):
        refused = maas("usage", *bad, server=server)
        assert refused.returncode == 2 and bad[0] in refused.stderr, refused.stderr


@pytest.mark.slow  # a CLI process per call: seconds each
def test_files_round_trip(server: ServerProcess) -> None:
    uploaded = ok_json("files", "upload", str(DATA / "sentiment_heldout.jsonl"), "--purpose", "evals",
                       server=server)
    assert (uploaded["format"], uploaded["lines"], uploaded["purpose"]) == ("classification", 80, "evals")
    assert uploaded["id"] in {f["id"] for f in ok_json("files", "list", "--purpose", "evals", server=server)["data"]}
    assert uploaded["id"] in ok("files", "list", server=server), "ids are printed whole"
    assert ok_json("files", "show", uploaded["id"], server=server)["filename"] == "sentiment_heldout.jsonl"
    assert ok_json("files", "delete", uploaded["id"], server=server)["deleted"] is True
    gone = maas("files", "show", uploaded["id"], server=server)
    assert gone.returncode == 1 and gone.stdout == ""
    assert gone.stderr.startswith("error: 404") and "No such file" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a CLI process per call: seconds each
def test_exit_codes_scripts_rely_on(server: ServerProcess) -> None:
    wrong_key = maas("--api-key", "sk-wrong", "models", server=server)
    assert wrong_key.returncode == 1 and "Incorrect API key" in wrong_key.stderr
    as_json = maas("models", "--json", env=cli_env(server, MAAS_API_KEY="sk-wrong"))
    assert as_json.returncode == 1
    assert json.loads(as_json.stderr)["error"]["status"] == 401
    bad_value = maas("generate", "hi", "--temperature", "5", server=server)
    assert bad_value.returncode == 1 and "temperature" in bad_value.stderr
    assert maas("generate", server=server).returncode == 2, "a missing argument is a usage error"
    assert maas("models", "--no-such-option", server=server).returncode == 2
    assert maas("no-such-command", server=server).returncode == 2
    down = maas("--base-url", f"http://127.0.0.1:{free_port()}/v1", "--timeout", "5", "models",
                env=cli_env(None, MAAS_API_KEY=API_KEY))
    assert down.returncode == 1 and "error:" in down.stderr


@pytest.mark.slow  # a CLI process per call: seconds each
def test_chat_reads_lines_and_writes_json_for_scripts(server: ServerProcess) -> None:
    out = ok("chat", "--json", "--max-tokens", "6", "-t", "0", server=server,
             stdin="What is the capital of France?\n/reset\nSay hi.\n")
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["model"] for a in answers] == [GENERATOR, GENERATOR]
    assert all(a["content"] and a["stopped"] is False for a in answers)


def terminal(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    """The CLI on a terminal of its own, with Ctrl-C delivered as on a user's terminal: a test run
    started in the background (`make test &`) ignores SIGINT, and a child would inherit that."""
    return pexpect.spawn(str(entry_point()), args, env=env, encoding="utf-8", timeout=120, dimensions=(40, 160),
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.slow  # a CLI process per call: seconds each
def test_colour_on_a_terminal_unless_no_color(server: ServerProcess) -> None:
    coloured = terminal(["models"], cli_env(server, TERM="xterm-256color"))
    assert ESCAPE in coloured.read()
    plain = terminal(["models"], cli_env(server, TERM="xterm-256color", NO_COLOR="1"))
    text = plain.read()
    assert GENERATOR in text and ESCAPE not in text


@pytest.mark.slow
def test_chat_repl_streams_stops_resets_and_exits(server: ServerProcess) -> None:
    child = terminal(["chat", "--max-tokens", "400", "-t", "0"], cli_env(server, TERM="xterm-256color"))
    child.expect("you> ")
    child.sendline("Tell me a very long story about a dragon who learns to paint.")
    child.expect_exact("paint.\r\n")  # the typed line, echoed by the terminal
    child.expect(r"[A-Za-z]{3,}")  # tokens of the answer arrive while it is being written...
    child.sendintr()  # ...and Ctrl-C stops it there, long before 400 tokens
    child.expect_exact("[stopped]")
    child.expect_exact("you> ")
    child.sendline("/model")
    child.expect_exact(f"served: {GENERATOR}")
    child.sendline("/system You answer in one short sentence.")
    child.expect_exact("(system prompt: You answer in one short sentence.)")
    child.sendline("/reset")
    child.expect_exact("(conversation cleared)")
    child.expect_exact("you> ")
    child.sendline("What is the capital of France? Answer in one word.")
    child.expect_exact("France? Answer in one word.\r\n")
    child.expect_exact("Paris")
    child.expect_exact("you> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.slow
def test_fine_tune_wait_events_and_eval(server: ServerProcess) -> None:
    result = maas("fine-tune", "create", "-m", EMBEDDER, "--training-file", str(DATA / "sentiment_train.jsonl"),
                  "--max-steps", "3", "--batch-size", "8", "--suffix", "cli", "--wait", "--poll-interval", "0.5",
                  server=server)
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout and "3/3" in result.stdout
    assert "loss" in result.stderr, "the progress bar shows the loss"
    job = ok_json("fine-tune", "list", "--limit", "1", server=server)[0]
    assert (job["status"], job["suffix"], job["step"]) == ("succeeded", "cli", 3)
    assert ok_json("fine-tune", "show", job["id"], server=server)["fine_tuned_model"] == job["fine_tuned_model"]
    events = ok_json("fine-tune", "events", job["id"], "--limit", "100", server=server)
    assert [e["data"]["step"] for e in events if e["type"] == "metrics" and "learning_rate" in e["data"]] == [3, 2, 1]
    finished = maas("fine-tune", "cancel", job["id"], server=server)
    assert finished.returncode == 1 and "cannot be cancelled" in finished.stderr
    evaluation = ok_json("eval", str(DATA / "sentiment_heldout.jsonl"), "-m", job["fine_tuned_model"],
                         server=server)
    assert evaluation["num_examples"] == 80 and set(evaluation["metrics"]) >= {"accuracy", "f1"}


@pytest.mark.slow  # a CLI process per call: seconds each
def test_batch_create_wait_list_and_results(server: ServerProcess, tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    lines = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": GENERATOR, "messages": [{"role": "user", "content": f"Say {i}."}], "max_tokens": 4,
                       "temperature": 0}} for i in range(3)]
    lines.insert(1, {**lines[0], "custom_id": "bad", "body": {"model": GENERATOR, "messages": []}})
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = maas("batch", "create", str(requests), "--endpoint", "/v1/chat/completions", "--metadata", "run=cli",
                  "--wait", "--poll-interval", "0.3", server=server)
    assert result.returncode == 0, result.stderr
    assert "completed" in result.stdout and "4/4" in result.stdout
    batch = ok_json("batch", "list", "--limit", "1", server=server)[0]
    assert (batch["status"], batch["metadata"], batch["request_counts"]["failed"]) == ("completed", {"run": "cli"}, 1)
    assert ok_json("batch", "show", batch["id"], server=server)["output_file_id"] == batch["output_file_id"]
    found = [json.loads(line) for line in ok("batch", "results", batch["id"], server=server).splitlines()]
    assert [r["custom_id"] for r in found] == ["q0", "bad", "q1", "q2"], "in the order of the input file"
    assert [r["response"]["status_code"] for r in found] == [200, 400, 200, 200]
    finished = maas("batch", "cancel", batch["id"], server=server)
    assert finished.returncode == 1 and "cannot be cancelled" in finished.stderr


@pytest.mark.slow
def test_maas_serve_starts_the_server(tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(None, MAAS_ENABLED_MODELS=EMBEDDER, MAAS_THREADS="1", MAAS_DATA_DIR=str(tmp_path),
                  HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen([str(entry_point()), "serve", "--port", str(port), "--grace", "1"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            server = ServerProcess(port=port)
            server.process = process
            server.wait_ready()
            assert ok_json("models", server=server)["data"][0]["id"] == EMBEDDER
        finally:
            process.terminate()
            # uvicorn re-raises the signal it handled once shutdown is complete.
            assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (tmp_path / "server.log").read_text()
