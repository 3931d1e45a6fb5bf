// app.js - the saserve playground (GET /): a streamed completion with the share / rebalance
// controls, the answer's KV cache as bars, /metrics figures, the layer-similarity heatmap and,
// when a phiDNN model is served, an image classification with each recreation mode.
// Plain browser JavaScript: no framework, no build step, only this server's endpoints.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (n) => Number(n).toLocaleString("en-US");

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, opts) {
  const o = Object.assign({}, opts || {});
  o.headers = authHeaders(o.headers);
  return fetch(path, o);
}

async function errorText(res) {
  try {
    const j = await res.json();
    return res.status + " " + (j.error ? j.error.code + ": " + j.error.message : "");
  } catch (e) {
    return String(res.status);
  }
}

let model = null; // GET /v1/models data[0]

// ---- health and model ----

async function loadModel() {
  const h = await fetch("/health");
  const hj = await h.json();
  // 200 {"status": "ok"}; 503 the error object (loading or draining)
  $("health").textContent = h.ok ? hj.status : /loading/.test(hj.error.message) ? "loading" : "unavailable";
  $("health").className = "pill " + (h.ok ? "ok" : "warn");
  if (!h.ok) { setTimeout(loadModel, 1000); return; }
  const res = await api("/v1/models");
  if (!res.ok) { $("model-name").textContent = await errorText(res); return; }
  model = (await res.json()).data[0];
  $("model-name").textContent = model.id + " · " + model.layers + " layers · configured plan " + model.share_spans;
  $("share").checked = !!model.share_default;
  $("rebalance").checked = !!model.rebalance_default;
  loadHeatmap();
}

// ---- the layer-similarity heatmap (fetched, so an API key can be sent) ----

async function loadHeatmap() {
  const img = $("heatmap");
  const res = await api("/v1/models/" + encodeURIComponent(model.id) + "/similarity.png");
  if (!res.ok) { $("heatmap-status").textContent = await errorText(res); return; }
  const blob = await res.blob();
  img.onload = () => {
    $("heatmap-status").textContent = model.layers + " × " + model.layers +
      " cosine similarity of the layers' attention (" + img.naturalWidth + " px)";
    img.dataset.loaded = "1";
  };
  img.src = URL.createObjectURL(blob);
}

// ---- streamed completion ----

let controller = null;

function completionRequest() {
  const q = new URLSearchParams();
  q.set("share", $("share").checked ? "on" : "off");
  q.set("rebalance", $("rebalance").checked ? "on" : "off");
  const body = {
    prompt: $("prompt").value,
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    stream: true,
  };
  const spans = $("spans").value.trim();
  if (spans) body.share_spans = spans;
  return { url: "/v1/completions?" + q.toString(), body };
}

// Server-sent events from a fetch body: calls onEvent(data string) per "data:" event.
async function readSSE(res, onEvent) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = ev.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) onEvent(data);
    }
  }
}

async function generate() {
  const out = $("output"), status = $("gen-status");
  const { url, body } = completionRequest();
  out.textContent = "";
  out.dataset.done = "0";
  status.textContent = "…";
  $("run").disabled = true;
  $("stop").disabled = false;
  controller = new AbortController();
  let chunks = 0, cache = null, usage = null, timings = null, finish = null;
  const t0 = performance.now();
  try {
    const res = await api(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!res.ok) throw new Error(await errorText(res));
    await readSSE(res, (data) => {
      if (data === "[DONE]") return;
      const j = JSON.parse(data);
      if (j.error) throw new Error(j.error.code + ": " + j.error.message);
      for (const c of j.choices || []) {
        if (c.text) { out.textContent += c.text; chunks++; }
        if (c.finish_reason) finish = c.finish_reason;
      }
      if (j.cache) cache = j.cache;
      if (j.usage) usage = j.usage;
      if (j.timings) timings = j.timings;
    });
    const ms = performance.now() - t0;
    status.textContent = chunks + " chunks in " + ms.toFixed(0) + " ms" +
      (usage ? " · " + usage.prompt_tokens + " prompt + " + usage.completion_tokens + " generated tokens" : "") +
      (finish ? " · finish: " + finish : "");
    out.dataset.chunks = String(chunks);
    if (cache) showCache(cache);
  } catch (e) {
    status.textContent = e.name === "AbortError" ? "stopped" : "error: " + e.message;
  } finally {
    out.dataset.done = "1";
    $("run").disabled = false;
    $("stop").disabled = true;
    controller = null;
    refreshMetrics();
  }
}

// ---- the cache object as bars: K and V bytes with and without sharing ----

function setFig(id, v) {
  const el = $(id);
  el.dataset.value = String(v);
  el.textContent = fmt(v);
}

function showCache(c) {
  const kWith = c.k_bytes, vWith = c.v_bytes;
  const vWithout = c.v_bytes; // sharing keeps every V
  const kWithout = c.kv_bytes_without_sharing - vWithout;
  const max = Math.max(kWithout + vWithout, 1);
  const bar = (id, k, v) => {
    const el = $(id);
    el.querySelector(".k").style.width = (100 * k / max) + "%";
    el.querySelector(".v").style.width = (100 * v / max) + "%";
  };
  bar("bar-with", kWith, vWith);
  bar("bar-without", kWithout, vWithout);
  setFig("k-with", kWith); setFig("v-with", vWith); setFig("kv-with", c.kv_bytes);
  setFig("k-without", kWithout); setFig("v-without", vWithout); setFig("kv-without", c.kv_bytes_without_sharing);
  $("cache-summary").textContent = (c.shared_attention ? "sharing on, spans " + (c.spans || []).join(",") : "sharing off") +
    (c.rebalance ? " · rebalance on" : "") + " · " + c.tokens + " tokens · " + c.sharing_layers + "/" + c.layers +
    " layers share · saved " + fmt(c.kv_bytes_saved) + " bytes (" + (100 * c.kv_saved_ratio).toFixed(1) + "%)";
  $("cache-empty").hidden = true;
  $("cache-bars").hidden = false;
  $("cache").dataset.shared = c.shared_attention ? "1" : "0";
}

// ---- /metrics ----

// Sum of the samples of one family (any labels); null when absent.
function metricSum(text, name, labelFilter) {
  let sum = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    if (labelFilter && !rest.includes(labelFilter)) continue;
    const v = Number(rest.slice(rest.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) sum = (sum || 0) + v;
  }
  return sum;
}

let visionStarted = false;

async function refreshMetrics() {
  let text;
  try {
    const res = await api("/metrics");
    if (!res.ok) return;
    text = await res.text();
  } catch (e) {
    return;
  }
  const show = (id, v) => { const el = $(id); el.dataset.value = v === null ? "" : String(v); el.textContent = v === null ? "–" : fmt(v); };
  show("m-requests", metricSum(text, "saserve_requests_total"));
  show("m-prompt-tokens", metricSum(text, "saserve_prompt_tokens_total"));
  show("m-generated-tokens", metricSum(text, "saserve_generated_tokens_total"));
  show("m-kv-saved", metricSum(text, "saserve_kv_bytes_saved_total"));
  show("m-active", metricSum(text, "saserve_active_sequences"));
  $("metrics").dataset.scrapes = String(Number($("metrics").dataset.scrapes || 0) + 1);
  // the vision model's name is the model label of saserve_vision_images_total (present only with one)
  const m = /^saserve_vision_images_total\{model="([A-Za-z0-9._-]+)"/m.exec(text);
  if (m && !visionStarted) { visionStarted = true; loadVision(m[1]); }
}

// ---- phiDNN classification ----

let vision = null; // {name, meta, C, H, W}

async function loadVision(name) {
  const res = await api("/v2/models/" + encodeURIComponent(name));
  if (!res.ok) { $("vision-status").textContent = await errorText(res); return; }
  const meta = await res.json();
  const shape = meta.inputs[0].shape; // [-1, C, H, W]
  vision = { name, meta, C: shape[1], H: shape[2], W: shape[3] };
  $("vision-name").textContent = name + " · modes " + meta.parameters.recreation_modes.join(", ");
  const sel = $("sample");
  sel.innerHTML = "";
  const none = document.createElement("option");
  none.value = ""; none.textContent = "(drawing)";
  sel.appendChild(none);
  (window.SAMPLES || []).forEach((s, i) => {
    const o = document.createElement("option");
    o.value = String(i); o.textContent = "test image " + s.index + " (" + s.label + ")";
    sel.appendChild(o);
  });
  $("vision").hidden = false;
  clearCanvas();
}

function clearCanvas() {
  const ctx = $("draw").getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, 28, 28);
}

function loadSample(i) {
  const s = window.SAMPLES[i];
  const bytes = Uint8Array.from(atob(s.b64), (c) => c.charCodeAt(0));
  const ctx = $("draw").getContext("2d");
  const img = ctx.createImageData(28, 28);
  for (let p = 0; p < 784; p++) {
    img.data[4 * p] = img.data[4 * p + 1] = img.data[4 * p + 2] = bytes[p];
    img.data[4 * p + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function canvasPixels() {
  const d = $("draw").getContext("2d").getImageData(0, 0, 28, 28).data;
  const px = new Array(784);
  for (let p = 0; p < 784; p++) px[p] = d[4 * p];
  return px;
}

function drawTensor(canvas, data, W, H) {
  canvas.width = W; canvas.height = H;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(W, H);
  for (let p = 0; p < W * H; p++) {
    const v = Math.max(0, Math.min(255, Math.round(255 * data[p])));
    img.data[4 * p] = img.data[4 * p + 1] = img.data[4 * p + 2] = v;
    img.data[4 * p + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

async function classify() {
  if (!vision) return;
  const table = $("vision-results");
  while (table.rows.length > 1) table.deleteRow(1);
  const px = canvasPixels();
  const seed = Number($("seed").value);
  $("vision-status").textContent = "…";
  $("classify").disabled = true;
  try {
    for (const mode of vision.meta.parameters.recreation_modes) {
      const body = {
        id: "page-" + mode,
        parameters: { seed, return_recreation: true },
        inputs: [{ name: vision.meta.inputs[0].name, datatype: "UINT8", shape: [1, vision.C, vision.H, vision.W], data: px }],
      };
      const res = await api("/v2/models/" + encodeURIComponent(vision.name) + "/infer?recreate=" + mode, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      const row = table.insertRow();
      row.dataset.mode = mode;
      row.insertCell().textContent = mode;
      if (!res.ok) { row.insertCell().textContent = await errorText(res); continue; }
      const j = await res.json();
      const out = Object.fromEntries(j.outputs.map((o) => [o.name, o]));
      const label = out.label.data[0], idx = out.class_index.data[0];
      const cell = row.insertCell();
      cell.textContent = label;
      cell.className = "label";
      row.insertCell().textContent = out.probabilities.data[idx].toFixed(3);
      const c = document.createElement("canvas");
      c.className = "pixel";
      if (out.recreation) drawTensor(c, out.recreation.data, vision.W, vision.H);
      row.insertCell().appendChild(c);
    }
    $("vision-status").textContent = "seed " + seed + " · " + (table.rows.length - 1) + " modes";
    $("vision").dataset.done = String(Number($("vision").dataset.done || 0) + 1);
  } finally {
    $("classify").disabled = false;
    refreshMetrics();
  }
}

// ---- drawing with the mouse ----

function setupDrawing() {
  const cv = $("draw");
  let down = false;
  const paint = (ev) => {
    const r = cv.getBoundingClientRect();
    const x = Math.floor((ev.clientX - r.left) * 28 / r.width), y = Math.floor((ev.clientY - r.top) * 28 / r.height);
    const ctx = cv.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(x + 0.5, y + 0.5, 1.4, 0, 2 * Math.PI);
    ctx.fill();
  };
  cv.addEventListener("pointerdown", (ev) => { down = true; $("sample").value = ""; paint(ev); });
  cv.addEventListener("pointermove", (ev) => { if (down) paint(ev); });
  window.addEventListener("pointerup", () => { down = false; });
}

// ---- start ----

$("run").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("clear").addEventListener("click", () => { $("sample").value = ""; clearCanvas(); });
$("sample").addEventListener("change", () => { if ($("sample").value !== "") loadSample(Number($("sample").value)); });
$("classify").addEventListener("click", classify);
$("api-key").value = sessionStorage.getItem("saserve-key") || "";
$("api-key").addEventListener("change", () => { sessionStorage.setItem("saserve-key", $("api-key").value); loadModel(); refreshMetrics(); });
setupDrawing();
loadModel().then(refreshMetrics);
setInterval(refreshMetrics, 2000);
