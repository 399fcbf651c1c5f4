// The API key, typed once per tab and kept in sessionStorage (gone when the tab closes), and
// the one function every page uses to call the API with it. No framework, no CDN.
"use strict";

const KEY_STORAGE = "valuation.apiKey";

const ApiKey = {
  get() { return sessionStorage.getItem(KEY_STORAGE); },
  set(key) { sessionStorage.setItem(KEY_STORAGE, key); },
  clear() { sessionStorage.removeItem(KEY_STORAGE); },
};

// Calls the proxy; resolves to {status, body} (body parsed from JSON, or null). Never throws
// on an HTTP error: the caller shows what the API said.
async function callApi(path, options = {}) {
  const headers = { "X-API-Key": ApiKey.get() || "" };
  const init = { method: options.method || "GET", headers, cache: "no-store" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  return { status: response.status, body };
}

// The message of an error answer ({"detail": "..."} or a list of {row, field, message}).
function errorText(answer) {
  const detail = answer.body && answer.body.detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message)).join("; ");
  }
  return detail ? String(detail) : `HTTP ${answer.status}`;
}

// Wires the key panel present on every page: a form to type the key, the note that it is kept
// for this tab, and a button to forget it. `onKey` runs whenever a key becomes available,
// `onForget` (optional) when it is forgotten.
function setUpKeyPanel(onKey, onForget) {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  const kept = document.getElementById("key-kept");
  const forget = document.getElementById("key-forget");
  function show() {
    const present = Boolean(ApiKey.get());
    form.hidden = present;
    kept.hidden = !present;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    ApiKey.set(key);
    input.value = "";
    show();
    onKey();
  });
  forget.addEventListener("click", () => {
    ApiKey.clear();
    if (onForget) onForget();
    show();
    input.focus();
  });
  show();
  if (ApiKey.get()) onKey();
}

// A new element with a class and text (text only: never HTML, so API values cannot inject markup).
function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svgElement(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function formatUf(value) {
  return `${Math.round(value).toLocaleString("en-US")} UF`;
}
