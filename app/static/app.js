// Glimpse web page: upload → submit → poll progress → predictions and overlays.
"use strict";
const $ = (id) => document.getElementById(id);
let file = null;
let job = null;
let originalUrl = null;
const KEY_STORAGE = "glimpse-api-key";
let keyRefused = false; // the last /v1/models answered 401: the status panel says so

// The API key, when the server has keys configured: kept for this tab only (sessionStorage)
// and sent as a bearer token. An <img src> or <a href> cannot carry a header, so with a key
// the page fetches images and downloads itself.
function apiKey() {
  return $("api-key").value.trim();
}

function api(url, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("Authorization", `Bearer ${apiKey()}`);
  return fetch(url, { ...options, headers });
}

async function setImage(img, url) {
  if (!apiKey()) {
    img.src = url;
    return;
  }
  const response = await api(url);
  if (!response.ok) return showError(await problemText(response));
  const old = img.src;
  img.src = URL.createObjectURL(await response.blob());
  if (old.startsWith("blob:") && old !== originalUrl) URL.revokeObjectURL(old);
}

async function download(event) {
  if (!apiKey()) return; // the link's own href works without a key
  event.preventDefault();
  const source = event.currentTarget; // null once the event has been dispatched
  const response = await api(source.href);
  if (!response.ok) return showError(await problemText(response));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = source.pathname.split("/").pop();
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

async function problemText(response) {
  try {
    const p = await response.json();
    return `${p.title}: ${p.detail}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadModels() {
  const response = await api("/v1/models");
  $("model").replaceChildren();
  $("api-key").setAttribute("aria-invalid", String(response.status === 401));
  if (response.status === 401) {
    keyRefused = true;
    $("status-panel").hidden = false;
    $("status-text").textContent = "This server needs an API key";
    $("error").textContent = `${await problemText(response)}. Enter it in the API key field.`;
    $("error").hidden = false;
    return;
  }
  if (keyRefused) {
    keyRefused = false;
    $("status-panel").hidden = true;
    $("error").hidden = true;
  }
  const models = response.ok ? await response.json() : [];
  for (const m of models) {
    const option = new Option(`${m.name} (${m.num_classes} classes)`, m.name, m.default, m.default);
    $("model").add(option);
  }
  // The methods the live workers offer (integrated_gradients and xrai need PyTorch there).
  const offered = new Set(models.length ? models[0].methods || [] : []);
  for (const option of $("method").options) {
    option.disabled = offered.size > 0 && !offered.has(option.value);
    option.title = option.disabled ? "no live worker offers this method (it needs PyTorch)" : "";
  }
}

function choose(f) {
  if (!f) return;
  file = f;
  if (originalUrl) URL.revokeObjectURL(originalUrl);
  originalUrl = URL.createObjectURL(f);
  $("preview").src = originalUrl;
  $("preview").hidden = false;
  $("drop-text").textContent = f.name;
  $("submit").disabled = false;
}

function wireDropZone() {
  const zone = $("drop-zone");
  const input = $("image-input");
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  input.addEventListener("change", () => choose(input.files[0]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    choose(e.dataTransfer.files[0]);
  });
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
  $("status-text").textContent = "Failed";
  $("submit").disabled = false;
}

async function submit(event) {
  event.preventDefault();
  if (!file) return;
  $("submit").disabled = true;
  $("results").hidden = true;
  $("error").hidden = true;
  $("status-panel").hidden = false;
  $("status-text").textContent = "Uploading…";
  $("progress").value = 0;
  const params = {
    model: $("model").value || undefined,
    method: $("method").value,
    targets: { top_k: Number($("top-k").value) },
  };
  if (["integrated_gradients", "xrai"].includes(params.method)) {
    params.integrated_gradients = { steps: Number($("steps").value) };
  }
  if ($("auto-samples").checked) {
    params.num_samples = "auto";
    params.max_samples = Number($("samples").value);
  } else {
    params.num_samples = Number($("samples").value);
  }
  const body = new FormData();
  body.append("image", file, file.name);
  body.append("params", JSON.stringify(params));
  const response = await api("/v1/explanations", { method: "POST", body });
  if (!response.ok) return showError(await problemText(response));
  job = await response.json();
  poll();
}

async function poll() {
  const response = await api(`/v1/explanations/${job.id}`);
  if (!response.ok) return showError(await problemText(response));
  job = await response.json();
  const { done, total } = job.progress;
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("status-text").textContent = `${job.status} — ${done} / ${total} model evaluations`;
  if (job.status === "finished") return showResult();
  if (job.status === "failed" || job.status === "canceled") {
    return showError(job.error ? `${job.error.title}: ${job.error.detail}` : job.status);
  }
  setTimeout(poll, 300);
}

// The heatmap's visualisation options (docs/api.md); each is sent only when it is not the
// server's default, so the default overlay keeps its URL (and its cached rendering).
const VISUAL = [
  ["polarity", "polarity", "both"],
  ["color_map", "color-map", "red_blue"],
  ["overlay", "overlay-base", ""],
  ["draw", "draw", "pixels"],
  ["max_side", "max-side", ""],
];

function overlayUrl(classIndex) {
  const style = document.querySelector("input[name=style]:checked").value;
  const query = new URLSearchParams({ class_index: classIndex, style });
  for (const [name, id, fallback] of VISUAL) {
    if ($(id).value !== fallback) query.set(name, $(id).value);
  }
  if ($("legend").checked) query.set("legend", "true");
  return `/v1/explanations/${job.id}/overlay.png?${query}`;
}

function showResult() {
  const result = job.result;
  $("progress").value = $("progress").max;
  $("submit").disabled = false;
  const warnings = result.warnings || [];
  $("warnings").replaceChildren(...warnings.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  $("warnings").hidden = warnings.length === 0;
  const list = $("predictions");
  list.replaceChildren(...result.predictions.map((p) => {
    const li = document.createElement("li");
    li.textContent = `${p.label} — ${(100 * p.probability).toFixed(1)}%`;
    return li;
  }));
  const figures = result.explanations.map((e) => {
    const figure = document.createElement("figure");
    const stack = document.createElement("div");
    stack.className = "stack";
    const base = new Image();
    base.src = originalUrl;
    base.alt = "The uploaded image";
    const overlay = new Image();
    overlay.className = "overlay";
    overlay.dataset.classIndex = e.class_index;
    overlay.alt = `Attribution overlay for ${e.label}`;
    setImage(overlay, overlayUrl(e.class_index));
    overlay.style.opacity = $("opacity").value;
    stack.append(base, overlay);
    const caption = document.createElement("figcaption");
    caption.textContent = `${e.label} (class ${e.class_index}, p=${e.probability.toFixed(3)})`;
    figure.append(stack, caption);
    return figure;
  });
  $("explanations").replaceChildren(...figures);
  const blob = new Blob([JSON.stringify(result, null, 2)], { type: "application/json" });
  $("download-json").href = URL.createObjectURL(blob);
  $("download-npy").href = `/v1/explanations/${job.id}/attribution.npy`;
  $("download-segments").href = `/v1/explanations/${job.id}/segments.png`;
  $("results").hidden = false;
  $("status-text").textContent = `finished — ${result.stats.model_evaluations} evaluations in ${result.stats.seconds.toFixed(2)} s`;
}

function refreshOverlays() {
  for (const img of document.querySelectorAll("img.overlay")) {
    setImage(img, overlayUrl(img.dataset.classIndex));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wireDropZone();
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => {
    if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
    else sessionStorage.removeItem(KEY_STORAGE);
    loadModels();
  });
  for (const id of ["download-npy", "download-segments"]) $(id).addEventListener("click", download);
  loadModels();
  $("explain-form").addEventListener("submit", submit);
  for (const radio of document.querySelectorAll("input[name=style]")) {
    radio.addEventListener("change", refreshOverlays);
  }
  for (const [, id] of VISUAL) $(id).addEventListener("change", refreshOverlays);
  $("legend").addEventListener("change", refreshOverlays);
  $("opacity").addEventListener("input", () => {
    for (const img of document.querySelectorAll("img.overlay")) img.style.opacity = $("opacity").value;
  });
});
