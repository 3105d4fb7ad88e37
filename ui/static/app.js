// The summarizer's page: plain DOM, no framework, nothing loaded from elsewhere. Every text that comes from the
// user or the service is put in the page with textContent (never parsed as HTML), so a summary cannot inject markup.
"use strict";

const KEY_STORAGE = "summarizer.apiKey"; // sessionStorage: gone when the tab closes
const SETTINGS = ["num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "no_repeat_ngram_size"];
const FLOAT_SETTINGS = new Set(["length_penalty"]);
// POST /feedback's rating (feedback/protocol.py: a thumbs-up/down) until /docs.json says what it takes now.
const FALLBACK_RATINGS = ["good", "bad"];
const RATING_LABELS = { good: "Good: it may stand as it is", bad: "Bad: it should not stand" };
// The Summary fields shown with a label of their own; any other field is shown by its name (new ones too).
const KNOWN = {
  backend: "Backend",
  model: "Model",
  input_tokens: "Input tokens",
  output_tokens: "Output tokens",
  truncated: "Truncated",
  duration_ms: "Time in the service",
  cached: "From the cache",
  fallback: "Fallback backend",
  request_id: "Request id",
};
const SHOWN_APART = new Set(["summary", "warnings"]);

const state = { contextTokens: null, maxDialogueChars: null, lastRequestId: null, lastSummary: null };

function $(id) {
  return document.getElementById(id);
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

// ------------------------------------------------------------------------------------------------ API key

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch (e) {
    return $("api-key").value.trim(); // storage blocked: the field itself
  }
}

function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch (e) {
    /* storage blocked: the field keeps it */
  }
}

// ------------------------------------------------------------------------------------------------ HTTP

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) headers.Authorization = "Bearer " + key;
  const started = performance.now();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (e) {
    return { ok: false, status: 0, data: null, retryAfter: null, ms: performance.now() - started };
  }
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
  } else {
    await response.text();
  }
  return {
    ok: response.ok,
    status: response.status,
    data,
    retryAfter: response.headers.get("Retry-After"),
    sentKey: Boolean(key),
    ms: performance.now() - started,
  };
}

// What went wrong, for people: the error shape {code, message, field, allowed} and what to do about it.
function describeError(answer) {
  const data = answer.data && typeof answer.data === "object" ? answer.data : {};
  const lines = [];
  let headline;
  if (answer.status === 0) {
    headline = "The service could not be reached. Check the connection and try again.";
  } else if (answer.status === 401) {
    headline = answer.sentKey
      ? "The API key was not accepted: enter a valid API key above and press \u201cUse this key\u201d."
      : "This service needs an API key: enter your API key above and press \u201cUse this key\u201d.";
  } else if (answer.status === 429 || answer.status === 503) {
    headline = (answer.status === 429 ? "Too many requests for this API key. " : "The service is busy or not ready. ") +
      (answer.retryAfter ? "Try again in " + answer.retryAfter + " s." : "Try again shortly.");
  } else {
    headline = data.message || "The service answered HTTP " + answer.status + ".";
  }
  lines.push(["Status", "HTTP " + answer.status]);
  if (data.code) lines.push(["Code", data.code]);
  if (data.message && data.message !== headline) lines.push(["Message", data.message]);
  if (data.field) lines.push(["Field", data.field]);
  if (Array.isArray(data.allowed) && data.allowed.length) lines.push(["Allowed", data.allowed.join(", ")]);
  if (answer.retryAfter) lines.push(["Retry after", answer.retryAfter + " s"]);
  return { headline, lines };
}

function showError(answer) {
  const { headline, lines } = describeError(answer);
  $("error-message").textContent = headline;
  const details = $("error-details");
  clear(details);
  for (const [name, value] of lines) {
    details.appendChild(el("dt", name));
    details.appendChild(el("dd", value));
  }
  $("error").hidden = false;
  if (answer.status === 401) $("api-key").focus();
}

// ------------------------------------------------------------------------------------------------ schema

// The published OpenAPI document says what the service accepts: the dialogue's length limit, each setting's
// range, the feedback rating's values. Followed through $ref, allOf and anyOf (OpenAPI 3.0 as /docs.json has).
function resolver(spec) {
  const schemas = (spec.components && spec.components.schemas) || {};
  return function resolve(node) {
    for (let depth = 0; node && depth < 10; depth++) {
      if (node.$ref) node = schemas[node.$ref.split("/").pop()];
      else if (Array.isArray(node.allOf) && node.allOf.length === 1) node = node.allOf[0];
      else if (Array.isArray(node.anyOf)) node = node.anyOf.find((o) => o.type !== "null") || null;
      else return node;
    }
    return node || null;
  };
}

function requestSchema(spec, path, resolve) {
  try {
    return resolve(spec.paths[path].post.requestBody.content["application/json"].schema);
  } catch (e) {
    return null;
  }
}

function applySpec(spec) {
  const resolve = resolver(spec);
  const summarize = requestSchema(spec, "/summarize", resolve);
  if (summarize && summarize.properties) {
    const dialogue = resolve(summarize.properties.dialogue);
    if (dialogue && dialogue.maxLength) state.maxDialogueChars = dialogue.maxLength;
    const options = resolve(summarize.properties.generation);
    for (const name of SETTINGS) {
      const prop = options && options.properties ? resolve(options.properties[name]) : null;
      if (!prop) continue;
      if (prop.minimum !== undefined) $(name).min = prop.minimum;
      if (prop.maximum !== undefined) $(name).max = prop.maximum;
      $(name).title = "from " + prop.minimum + " to " + prop.maximum;
    }
  }
  const feedback = requestSchema(spec, "/feedback", resolve);
  if (feedback && feedback.properties && feedback.properties.rating) {
    renderRatings(ratingValues(resolve(feedback.properties.rating)));
    for (const [name, id] of [["corrected_summary", "corrected-summary"], ["comment", "feedback-comment"]]) {
      const prop = resolve(feedback.properties[name]);
      if (prop && prop.maxLength) $(id).maxLength = prop.maxLength;
    }
  }
  updateCount();
}

function ratingValues(rating) {
  if (!rating) return FALLBACK_RATINGS;
  if (Array.isArray(rating.enum) && rating.enum.length) return rating.enum;
  if (rating.type === "integer" && rating.minimum !== undefined && rating.maximum !== undefined &&
      rating.maximum - rating.minimum <= 10) {
    const values = [];
    for (let v = rating.minimum; v <= rating.maximum; v++) values.push(v);
    return values;
  }
  if (rating.type === "boolean") return [true, false];
  return FALLBACK_RATINGS;
}

function ratingLabel(value, values) {
  if (value === true) return "Good";
  if (value === false) return "Bad";
  if (typeof value === "string" && RATING_LABELS[value]) return RATING_LABELS[value];
  if (typeof value === "number" && values.every((v) => typeof v === "number")) {
    const low = Math.min(...values);
    const high = Math.max(...values);
    if (value === low) return value + " (bad)";
    if (value === high) return value + " (good)";
  }
  return String(value);
}

function renderRatings(values) {
  const box = $("ratings");
  const checked = box.querySelector("input:checked");
  const previous = checked ? checked.value : null;
  clear(box);
  values.forEach((value, i) => {
    const id = "rating-" + String(value).replace(/[^A-Za-z0-9_-]/g, "_");
    const input = el("input", null, { type: "radio", name: "rating", id, value: JSON.stringify(value) });
    if (previous === input.value) input.checked = true;
    const label = el("label", ratingLabel(value, values), { for: id });
    const wrap = el("span", null, { class: "choice" });
    wrap.appendChild(input);
    wrap.appendChild(label);
    box.appendChild(wrap);
    if (i === 0) input.required = true;
  });
}

// ------------------------------------------------------------------------------------------------ model

async function loadService() {
  const info = $("model-info");
  const model = await call("GET", "/model");
  if (model.ok && model.data) {
    const m = model.data;
    state.contextTokens = m.context_tokens;
    info.textContent = "Model " + m.model + " \u00b7 reads up to " + m.context_tokens + " tokens \u00b7 backend " +
      m.primary + (m.fallback ? " (fallback " + m.fallback + ")" : "");
    const defaults = m.generation_defaults || {};
    for (const name of SETTINGS) {
      if (defaults[name] !== undefined) $(name).placeholder = "default " + defaults[name];
    }
  } else if (model.status === 401) {
    info.textContent = "Enter your API key to load the model's details.";
    $("key-status").textContent = model.sentKey ? "The API key was not accepted." :
      "This service needs an API key.";
  } else {
    info.textContent = "The model's details could not be loaded (HTTP " + model.status + ").";
  }
  const docs = await call("GET", "/docs.json");
  if (docs.ok && docs.data) applySpec(docs.data);
}

// ------------------------------------------------------------------------------------------------ input

function updateCount() {
  const n = $("dialogue").value.length;
  let text = n.toLocaleString("en") + " characters";
  if (state.maxDialogueChars) text += " (the limit is " + state.maxDialogueChars.toLocaleString("en") + ")";
  if (state.contextTokens) text += "; the model reads the first " + state.contextTokens + " tokens";
  $("dialogue-count").textContent = text;
  $("dialogue-count").classList.toggle("over", Boolean(state.maxDialogueChars && n > state.maxDialogueChars));
}

function loadFile() {
  const file = $("dialogue-file").files[0];
  const status = $("file-status");
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    $("dialogue").value = String(reader.result);
    status.textContent = "Loaded " + file.name + " (" + String(reader.result).length + " characters).";
    updateCount();
  };
  reader.onerror = () => {
    status.textContent = "Could not read " + file.name + ".";
  };
  reader.readAsText(file, "utf-8");
}

// The settings the user filled in; {error} when one is not a number.
function generationOptions() {
  const options = {};
  for (const name of SETTINGS) {
    const input = $(name);
    if (input.validity && input.validity.badInput) return { error: name + " is not a number" };
    const raw = input.value.trim();
    if (raw === "") continue;
    const value = FLOAT_SETTINGS.has(name) ? Number.parseFloat(raw) : Number(raw);
    if (!Number.isFinite(value)) return { error: name + " is not a number" };
    options[name] = value;
  }
  return { options };
}

// ------------------------------------------------------------------------------------------------ result

function yesNo(value) {
  return value ? "yes" : "no";
}

function describe(name, value, answer) {
  if (name === "duration_ms" && typeof value === "number") return value.toFixed(0) + " ms";
  if (name === "truncated") {
    return value ? "yes: the dialogue was cut to the model's context" +
      (state.contextTokens ? " (" + state.contextTokens + " tokens)" : "") + "; the end was not read" : "no";
  }
  if (name === "cached" || name === "fallback") return yesNo(value);
  return null;
}

// Any JSON value as DOM: text for scalars, a list for arrays, a definition list for objects.
function renderValue(value) {
  if (value === null || value === undefined) return el("span", "none");
  if (Array.isArray(value)) {
    if (!value.length) return el("span", "none");
    const list = el("ul");
    for (const item of value) {
      const li = el("li");
      li.appendChild(renderValue(item));
      list.appendChild(li);
    }
    return list;
  }
  if (typeof value === "object") {
    const dl = el("dl", null, { class: "nested" });
    for (const [k, v] of Object.entries(value)) {
      dl.appendChild(el("dt", k.replace(/_/g, " ")));
      const dd = el("dd");
      dd.appendChild(renderValue(v));
      dl.appendChild(dd);
    }
    return dl;
  }
  if (typeof value === "boolean") return el("span", yesNo(value));
  return el("span", String(value));
}

function addDetail(dl, name, label, content) {
  dl.appendChild(el("dt", label, { id: "label-" + name }));
  const dd = el("dd", null, { id: "detail-" + name, "aria-labelledby": "label-" + name });
  if (content instanceof Node) dd.appendChild(content);
  else dd.textContent = content;
  dl.appendChild(dd);
}

function showSummary(summary, answer) {
  $("summary-text").textContent = summary.summary;
  const warnings = $("warnings");
  clear(warnings);
  const notices = Array.isArray(summary.warnings) ? summary.warnings : [];
  for (const notice of notices) {
    const li = el("li");
    if (notice && typeof notice === "object" && "message" in notice) {
      li.appendChild(el("strong", notice.code || "warning"));
      li.appendChild(document.createTextNode(": " + notice.message));
    } else {
      li.appendChild(renderValue(notice));
    }
    warnings.appendChild(li);
  }
  $("warnings-box").hidden = notices.length === 0;
  const dl = $("details");
  clear(dl);
  for (const [name, label] of Object.entries(KNOWN)) {
    if (!(name in summary)) continue;
    addDetail(dl, name, label, describe(name, summary[name], answer) ?? renderValue(summary[name]));
  }
  addDetail(dl, "round_trip_ms", "Round trip (this page)", answer.ms.toFixed(0) + " ms");
  for (const [name, value] of Object.entries(summary)) {
    if (name in KNOWN || SHOWN_APART.has(name) || value === null) continue; // null: not this answer's case
    addDetail(dl, name, name.replace(/_/g, " "), renderValue(value)); // e.g. long_dialogue: how it was done
  }
  $("result").hidden = false;
}

async function summarize(event) {
  event.preventDefault();
  $("error").hidden = true;
  const dialogue = $("dialogue").value;
  if (!dialogue.trim()) {
    showError({ status: 400, data: { code: "invalid_request", message: "Paste or load a dialogue first.",
      field: "dialogue" }, retryAfter: null });
    $("dialogue").focus();
    return;
  }
  const { options, error } = generationOptions();
  if (error) {
    showError({ status: 400, data: { code: "invalid_request", message: error }, retryAfter: null });
    return;
  }
  const body = { dialogue };
  if (Object.keys(options).length) body.generation = options;
  const button = $("summarize");
  button.disabled = true;
  $("busy").textContent = "Summarizing\u2026";
  try {
    const answer = await call("POST", "/summarize", body);
    if (answer.ok && answer.data) {
      state.lastRequestId = answer.data.request_id || null;
      state.lastSummary = answer.data.summary;
      showSummary(answer.data, answer);
      resetFeedback();
      $("feedback-section").hidden = !state.lastRequestId;
      $("busy").textContent = "Done.";
    } else {
      showError(answer);
      $("busy").textContent = "";
    }
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------------------------------------ feedback

function resetFeedback() {
  $("feedback-form").reset();
  $("corrected-summary").value = "";
  const status = $("feedback-status");
  status.textContent = "";
  status.classList.remove("error");
  $("send-feedback").disabled = false;
}

async function sendFeedback(event) {
  event.preventDefault();
  const status = $("feedback-status");
  status.classList.remove("error");
  const chosen = document.querySelector("#ratings input:checked");
  if (!chosen) {
    status.textContent = "Choose a rating first.";
    status.classList.add("error");
    return;
  }
  const body = { request_id: state.lastRequestId, rating: JSON.parse(chosen.value) };
  const corrected = $("corrected-summary").value.trim();
  const comment = $("feedback-comment").value.trim();
  if (corrected) body.corrected_summary = corrected;
  if (comment) body.comment = comment;
  const button = $("send-feedback");
  button.disabled = true;
  status.textContent = "Sending\u2026";
  const answer = await call("POST", "/feedback", body);
  if (answer.ok) {
    const replaced = answer.data && answer.data.replaced ? " It replaces the feedback you sent before." : "";
    status.textContent = "Thank you: your feedback on request " + state.lastRequestId + " was recorded." +
      replaced;
  } else {
    const { headline, lines } = describeError(answer);
    status.textContent = "Feedback not recorded. " + headline + " (" +
      lines.map(([k, v]) => k + ": " + v).join("; ") + ")";
    status.classList.add("error");
  }
  button.disabled = false; // a second feedback on the same summary replaces the first
}

// ------------------------------------------------------------------------------------------------ start

function init() {
  $("api-key").value = apiKey();
  $("key-status").textContent = apiKey() ? "An API key is set for this tab." : "";
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    setKey(key);
    $("key-status").textContent = key ? "The API key is set for this tab." : "No API key set.";
    loadService();
  });
  $("forget-key").addEventListener("click", () => {
    setKey("");
    $("api-key").value = "";
    $("key-status").textContent = "The API key was forgotten.";
  });
  $("dialogue").addEventListener("input", updateCount);
  $("dialogue-file").addEventListener("change", loadFile);
  $("summarize-form").addEventListener("submit", summarize);
  $("feedback-form").addEventListener("submit", sendFeedback);
  renderRatings(FALLBACK_RATINGS);
  updateCount();
  loadService();
}

document.addEventListener("DOMContentLoaded", init);
