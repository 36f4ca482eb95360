// Glimpse web page: upload → submit → follow progress (events, else polling) → predictions,
// overlays and quality numbers.
"use strict";
const $ = (id) => document.getElementById(id);
let file = null;
let job = null;
let originalUrl = null;
let run = 0; // the submission being followed: an older one's events and polls stop
let source = null; // its EventSource, while open
const FINAL = ["finished", "failed", "canceled"];
const SILENT_MS = 5000; // an EventSource with no event by then is buffered by a proxy: poll
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
  GlimpseCompare.offer(offered);
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
  const token = ++run;
  if (source) source.close();
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
  const methods = GlimpseCompare.methods(params.method);
  if (methods) params.methods = methods;
  if ((methods || [params.method]).some((m) => ["integrated_gradients", "xrai"].includes(m))) {
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
  if (token !== run) return; // submitted again meanwhile
  if (!response.ok) return showError(await problemText(response));
  job = await response.json();
  showProgress(job);
  follow(token);
}

function showProgress(state) {
  const { done, total } = state.progress;
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("status-text").textContent = `${state.status} — ${done} / ${total} model evaluations`;
}

// Progress from the job's events stream (Server-Sent Events), polling where it cannot be
// had: with an API key (EventSource cannot send the header), without EventSource, when the
// stream fails, or when a buffering proxy holds its events back.
function follow(token) {
  if (FINAL.includes(job.status)) return poll(token); // an earlier identical job: nothing to follow
  if (apiKey() || typeof EventSource === "undefined") return poll(token);
  const stream = new EventSource(`/v1/explanations/${job.id}/events`);
  source = stream;
  document.body.dataset.progress = "events";
  document.body.dataset.events = "0";
  let heard = false;
  let ended = false;
  const fallBack = () => {
    stream.close();
    if (ended || token !== run) return;
    ended = true;
    document.body.dataset.progress = "polling";
    poll(token);
  };
  const silent = setTimeout(() => { if (!heard) fallBack(); }, SILENT_MS);
  stream.onmessage = (event) => {
    if (token !== run) return stream.close();
    heard = true;
    document.body.dataset.events = String(Number(document.body.dataset.events) + 1);
    const state = JSON.parse(event.data);
    showProgress(state);
    if (state.status === "deleted") {
      ended = true;
      stream.close();
      return showError("The job was deleted");
    }
    if (FINAL.includes(state.status)) {
      ended = true;
      stream.close();
      clearTimeout(silent);
      poll(token); // the job whole: its result or error
    }
  };
  // Before any event, or once the browser gives up reconnecting (CLOSED): poll instead.
  stream.onerror = () => { if (!heard || stream.readyState === EventSource.CLOSED) fallBack(); };
}

async function poll(token) {
  if (token !== run) return;
  const response = await api(`/v1/explanations/${job.id}`);
  if (token !== run) return;
  if (!response.ok) return showError(await problemText(response));
  job = await response.json();
  showProgress(job);
  if (job.status === "finished") return showResult();
  if (job.status === "failed" || job.status === "canceled") {
    return showError(job.error ? `${job.error.title}: ${job.error.detail}` : job.status);
  }
  setTimeout(() => poll(token), 300);
}

// The heatmap's visualisation options (docs/api.md); each is sent only when it is not the
// server's default, so the default overlay keeps its URL (and its cached rendering).
const VISUAL = [
  ["polarity", "polarity", "both"],
  ["color_map", "color-map", "red_blue"],
  ["overlay", "overlay-base", ""],
  ["draw", "draw", "pixels"],
  ["clip_upper", "clip-upper", ""],
  ["clip_lower", "clip-lower", ""],
  ["max_side", "max-side", ""],
];

function overlayUrl(classIndex) {
  const style = document.querySelector("input[name=style]:checked").value;
  const query = new URLSearchParams({ class_index: classIndex, style });
  for (const [name, id, fallback] of VISUAL) {
    if ($(id).value !== fallback) query.set(name, $(id).value);
  }
  if ($("legend").checked) query.set("legend", "true");
  if ($("uncertain").checked && !$("uncertain").disabled) query.set("uncertain", "hatch");
  return `/v1/explanations/${job.id}/overlay.png?${query}`;
}

function currentStyle() {
  return document.querySelector("input[name=style]:checked").value;
}

// Each class's overlay over the photo; the grid style is one picture of every class.
function drawExplanations() {
  const result = job.result;
  if (currentStyle() === "grid") {
    const figure = document.createElement("figure");
    const grid = new Image();
    grid.className = "overlay grid";
    grid.dataset.classIndex = result.explanations[0].class_index;
    grid.alt = "Every explained class side by side, on one colour scale";
    setImage(grid, overlayUrl(grid.dataset.classIndex));
    figure.append(grid);
    return $("explanations").replaceChildren(figure);
  }
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
}

const number = (value, digits = 3) => (value == null ? "—" : value.toFixed(digits));
// " (within 2.3 % of the total)": up to what share of Σ|weights| the top regions' order is
// known (top_resolution: a region outside them may exceed one inside by that much).
const within = (e) =>
  e.top_resolution == null ? "" : ` (within ${(100 * e.top_resolution).toPrecision(2)} % of the total)`;

// The numbers that say how far to trust the maps: faithfulness (RISE deletion/insertion
// AUC), whether the top regions are settled, how many signs are uncertain, IG's
// completeness gap, and what the run spent.
function showQuality(result) {
  const s = result.stats;
  const parts = [`${s.model_evaluations} model evaluations`];
  if (s.quality_evaluations) parts.push(`+${s.quality_evaluations} for the quality curves`);
  let text = `${parts.join(" ")} in ${s.seconds.toFixed(2)} s`;
  if (s.converged != null) {
    const how = s.converged ? "converged" : "not converged (reached its cap)";
    text += `; auto budget: ${s.rounds} rounds, ${how}`;
  }
  $("run-stats").textContent = `${text}.`;
  const rows = result.explanations.map((e) => {
    const uncertain = e.weights_se
      ? `${e.weights.filter((w, i) => Math.abs(w) < 2 * e.weights_se[i]).length} of ${e.weights.length}`
      : "—";
    const settled = e.top_settled == null ? "—" : `${e.top_settled ? "yes" : "no"}${within(e)}`;
    const gap = e.completeness ? `${(100 * e.completeness.relative_gap).toFixed(1)} %` : "—";
    const cells = [e.label, number(e.quality && e.quality.deletion_auc),
      number(e.quality && e.quality.insertion_auc), settled, uncertain, gap];
    const tr = document.createElement("tr");
    tr.dataset.classIndex = e.class_index;
    for (const value of cells) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  });
  $("quality-table").tBodies[0].replaceChildren(...rows);
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
  // Hatching needs standard errors (LIME, Kernel SHAP); other methods have none.
  const se = result.explanations.every((e) => e.weights_se);
  $("uncertain").disabled = !se;
  $("uncertain").title = se ? "" : `${result.method} gives no standard errors`;
  if (!se) $("uncertain").checked = false;
  drawExplanations();
  showQuality(result);
  GlimpseCompare.show(job, setImage);
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
    radio.addEventListener("change", () => { if (job && job.result) drawExplanations(); });
  }
  for (const [, id] of VISUAL) $(id).addEventListener("change", refreshOverlays);
  $("legend").addEventListener("change", refreshOverlays);
  $("uncertain").addEventListener("change", refreshOverlays);
  $("fit-width").addEventListener("change", () => {
    $("explanations").classList.toggle("fit", $("fit-width").checked);
  });
  $("auto-samples").addEventListener("change", () => {
    $("samples-label").textContent = $("auto-samples").checked
      ? "Budget: at most (model evaluations)"
      : "Budget (model evaluations)";
  });
  $("opacity").addEventListener("input", () => {
    // the grid is a picture of its own, with nothing under it to show through
    for (const img of document.querySelectorAll("img.overlay:not(.grid)")) {
      img.style.opacity = $("opacity").value;
    }
  });
});
