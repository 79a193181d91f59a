// The maas playground: plain browser JavaScript against this server's /v1 API.
// The API key lives in sessionStorage (this tab only) and travels only in the Authorization header.
// The chat view speaks Chat Completions, the Responses API or Anthropic's Messages API, streaming with each.
"use strict";

const KEY_STORAGE = "maas.apiKey";
const $ = (id) => document.getElementById(id);

const state = { models: [], history: [], controller: null };

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = apiKey();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function showStatus(text, isError) {
  const status = $("status");
  status.textContent = text || "";
  status.classList.toggle("error", Boolean(isError));
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) {
      const param = body.error.param ? " (" + body.error.param + ")" : "";
      return response.status + " " + body.error.message + param;
    }
  } catch (_) { /* not JSON */ }
  return response.status + " " + response.statusText;
}

async function api(path, body) {
  const init = body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const response = await fetch("/v1" + path, init);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response.json();
}

// ---- models ----

function fillPicker(select, models, preferred) {
  const previous = select.value;
  select.replaceChildren(...models.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.id;
    return option;
  }));
  const keep = models.find((m) => m.id === previous) || models.find((m) => m.id === preferred) || models[0];
  if (keep) select.value = keep.id;
}

async function loadModels() {
  try {
    const list = await api("/models");
    state.models = list.data;
    fillPicker($("chat-model"), state.models.filter((m) => m.task === "generate"));
    fillPicker($("embed-model"), state.models.filter((m) => m.task === "embed"));
    fillPicker($("tokenize-model"), state.models);
    showStatus(state.models.length + " models served.");
  } catch (error) {
    showStatus("Could not list the models: " + error.message + (apiKey() ? "" : " (is an API key needed?)"), true);
  }
}

// ---- chat ----

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = role;
  item.textContent = text;
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function setStreaming(on) {
  $("chat-send").disabled = on;
  $("chat-stop").disabled = !on;
}

// Reads a text/event-stream body and calls onEvent with each `data:` payload parsed as JSON
// (and the event's name, when it has an `event:` line).
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const lines = buffer.slice(0, end).split("\n");
      buffer = buffer.slice(end + 2);
      const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      const name = lines.filter((l) => l.startsWith("event:")).map((l) => l.slice(6).trim())[0] || "message";
      if (!data) continue;
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data), name);
    }
  }
}

// The three APIs the chat view can speak: where each is served, its request, and what each of
// its stream events adds to the answer ({ text, tokens, model } or an error thrown).
const APIS = {
  chat: {
    path: "/v1/chat/completions",
    request: (model, system, history, sampling) => ({
      model,
      messages: system ? [{ role: "system", content: system }, ...history] : [...history],
      stream: true,
      stream_options: { include_usage: true },
      temperature: sampling.temperature,
      top_p: sampling.top_p,
      max_tokens: sampling.max_tokens,
    }),
    read: (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices && chunk.choices[0];
      return { text: choice && choice.delta.content, tokens: chunk.usage && chunk.usage.completion_tokens, model: chunk.model };
    },
  },
  responses: {
    path: "/v1/responses",
    request: (model, system, history, sampling) => ({
      model,
      ...(system ? { instructions: system } : {}),
      input: history.map((turn) => ({ role: turn.role, content: turn.content })),
      stream: true,
      store: false,
      temperature: sampling.temperature,
      top_p: sampling.top_p,
      max_output_tokens: sampling.max_tokens,
    }),
    read: (event, name) => {
      if (name === "error") throw new Error(event.message);
      if (name === "response.failed") throw new Error((event.response.error || {}).message || "The response failed.");
      if (name === "response.created") return { model: event.response.model };
      if (name === "response.output_text.delta") return { text: event.delta };
      if (name === "response.completed" || name === "response.incomplete") {
        return { tokens: event.response.usage && event.response.usage.output_tokens };
      }
      return {};
    },
  },
  messages: {
    path: "/v1/messages",
    maxTemperature: 1,
    request: (model, system, history, sampling) => ({
      model,
      ...(system ? { system } : {}),
      messages: [...history],
      stream: true,
      temperature: sampling.temperature,
      top_p: sampling.top_p,
      max_tokens: sampling.max_tokens,
    }),
    read: (event, name) => {
      if (name === "error") throw new Error(event.error.message);
      if (name === "message_start") return { model: event.message.model };
      if (name === "content_block_delta" && event.delta.type === "text_delta") return { text: event.delta.text };
      if (name === "message_delta") return { tokens: event.usage.output_tokens };
      return {};
    },
  },
};

function chatApi() {
  return APIS[$("chat-api").value] || APIS.chat;
}

// Anthropic's temperature runs from 0 to 1, OpenAI's to 2: the slider follows the API picked.
function fitTemperature() {
  const slider = $("temperature");
  slider.max = String(chatApi().maxTemperature || 2);
  if (Number(slider.value) > Number(slider.max)) slider.value = slider.max;
  $("temperature-value").textContent = slider.value;
}

function chatRequest() {
  const sampling = {
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value),
  };
  return chatApi().request($("chat-model").value, $("system-prompt").value.trim(), state.history, sampling);
}

async function sendChat(text) {
  state.history.push({ role: "user", content: text });
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  bubble.classList.add("streaming");
  const protocol = chatApi();
  const body = chatRequest();
  const controller = new AbortController();
  state.controller = controller;
  setStreaming(true);
  const started = performance.now();
  let answer = "";
  let tokens = 0;
  let counted = null;
  let served = body.model;
  let stopped = false;
  try {
    const response = await fetch(protocol.path, {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, (event, name) => {
      const part = protocol.read(event, name);
      if (part.tokens !== undefined && part.tokens !== null) counted = part.tokens;
      if (part.model) served = part.model;
      if (part.text) {
        answer += part.text;
        tokens += 1;
        bubble.textContent = answer;
        bubble.scrollIntoView({ block: "end" });
      }
    });
  } catch (error) {
    if (error.name === "AbortError") {
      stopped = true;
    } else {
      bubble.classList.add("error");
      bubble.textContent = answer + (answer ? "\n" : "") + error.message;
    }
  } finally {
    bubble.classList.remove("streaming");
    state.controller = null;
    setStreaming(false);
  }
  state.history.push({ role: "assistant", content: answer });
  const seconds = (performance.now() - started) / 1000;
  const count = counted !== null ? counted : tokens;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = served + " · " + count + " tokens · " + seconds.toFixed(1) + " s" + (stopped ? " · stopped" : "")
    + " · " + $("chat-api").selectedOptions[0].textContent;
  bubble.append(meta);
  $("chat-stats").textContent = stopped ? "Stopped." : "";
}

function setUpChat() {
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text || state.controller) return;
    $("chat-input").value = "";
    sendChat(text);
  });
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("chat-stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("chat-reset").addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    state.history = [];
    $("messages").replaceChildren();
  });
  $("chat-api").addEventListener("change", fitTemperature);
  for (const [input, output] of [["temperature", "temperature-value"], ["top-p", "top-p-value"]]) {
    $(input).addEventListener("input", () => { $(output).textContent = $(input).value; });
  }
}

// ---- embeddings ----

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

async function runEmbeddings() {
  const sentences = $("embed-input").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (!sentences.length) return;
  $("embed-run").disabled = true;
  try {
    const result = await api("/embeddings", { model: $("embed-model").value, input: sentences });
    const vectors = result.data.sort((x, y) => x.index - y.index).map((d) => d.embedding);
    const table = $("similarity");
    const head = document.createElement("tr");
    head.append(document.createElement("th"));
    sentences.forEach((_, i) => { const th = document.createElement("th"); th.textContent = String(i + 1); head.append(th); });
    const rows = sentences.map((sentence, i) => {
      const row = document.createElement("tr");
      const label = document.createElement("th");
      label.className = "sentence";
      label.textContent = (i + 1) + ". " + sentence;
      row.append(label);
      vectors.forEach((other) => {
        const value = cosine(vectors[i], other);
        const cell = document.createElement("td");
        cell.textContent = value.toFixed(2);
        const strength = Math.max(0, Math.min(1, value));
        cell.style.backgroundColor = "rgba(59, 91, 219, " + (strength * 0.75).toFixed(3) + ")";
        cell.style.color = strength > 0.6 ? "#fff" : "inherit";
        row.append(cell);
      });
      return row;
    });
    table.replaceChildren(head, ...rows);
    showStatus(result.model + ": " + vectors.length + " vectors of " + vectors[0].length + " dimensions.");
  } catch (error) {
    showStatus("Embeddings failed: " + error.message, true);
  } finally {
    $("embed-run").disabled = false;
  }
}

// ---- tokenizer ----

// Byte-level BPE tokenizers mark a leading space as "\u0120" and a newline as "\u010a": show them as such.
function readable(piece) {
  return piece.replaceAll("\u0120", " ").replaceAll("\u010a", "\u21b5\n");
}

async function runTokenizer() {
  $("tokenize-run").disabled = true;
  try {
    const result = await api("/tokenize", { model: $("tokenize-model").value, text: $("tokenize-input").value });
    const spans = result.token_strings.map((piece, i) => {
      const span = document.createElement("span");
      span.className = "t" + (i % 5);
      span.textContent = readable(piece);
      span.title = "token " + result.tokens[i];
      return span;
    });
    $("tokens").replaceChildren(...spans);
    $("token-count").textContent = result.count + " tokens" + (result.max_model_len ? " of a " + result.max_model_len + "-token context" : "");
  } catch (error) {
    showStatus("Tokenize failed: " + error.message, true);
  } finally {
    $("tokenize-run").disabled = false;
  }
}

// ---- page ----

function showView(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === name);
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== "view-" + name;
  showStatus("");
}

function setUpKey() {
  const input = $("api-key");
  input.value = apiKey();
  const mark = () => { $("key-state").textContent = apiKey() ? "key set" : ""; };
  $("key-form").addEventListener("submit", (event) => { event.preventDefault(); input.dispatchEvent(new Event("change")); });
  input.addEventListener("change", () => {
    const key = input.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
    mark();
    loadModels();
  });
  mark();
}

async function showDocsLink() {
  try {
    const response = await fetch("/docs", { method: "GET" });
    $("link-docs").hidden = !response.ok;
  } catch (_) { /* no docs served */ }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  setUpKey();
  setUpChat();
  $("embed-run").addEventListener("click", runEmbeddings);
  $("tokenize-run").addEventListener("click", runTokenizer);
  loadModels();
  showDocsLink();
});
