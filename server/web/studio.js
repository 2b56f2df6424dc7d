// stylecast studio: static page over the KServe v2 REST API (the same API tritonclient.http and curl use).
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const authHeaders = token ? { Authorization: `Bearer ${token}` } : {};
const sideLimit = () => parseInt($("size").value, 10) || Infinity; // the user's output size (long side)
const ATTRIBUTIONS = ["saliency", "guided_backprop", "gradcam", "occlusion"];
const state = { models: {}, weights: [], photo: null, busy: false, again: false, webcam: null, version: 0 };

async function api(path, options = {}) {
  // The server refuses POSTs typed text/plain (what fetch gives a string body): they could come from any page.
  const typed = typeof options.body === "string" ? { "Content-Type": "application/json" } : {};
  const r = await fetch(path, { ...options, headers: { ...authHeaders, ...typed, ...(options.headers || {}) } });
  if (!r.ok) {
    let message = `${r.status}`;
    try { message = (await r.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return r;
}

// One infer call with Triton's binary-tensor extension: JSON header, then the raw tensors.
async function infer(model, inputs, outputs) {
  const header = {
    inputs: inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape,
                                 parameters: { binary_data_size: t.data.byteLength } })),
    outputs: outputs.map((o) => ({ name: o.name, parameters: { binary_data: o.binary } })),
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const r = await api(`/v2/models/${encodeURIComponent(model)}/infer`, {
    method: "POST", body: new Blob([json, ...inputs.map((t) => t.data)]),
    headers: { "Inference-Header-Content-Length": String(json.length), "Content-Type": "application/octet-stream" },
  });
  const buf = await r.arrayBuffer();
  const length = parseInt(r.headers.get("Inference-Header-Content-Length") || String(buf.byteLength), 10);
  const head = JSON.parse(new TextDecoder().decode(buf.slice(0, length)));
  const out = {};
  let offset = length;
  for (const o of head.outputs) {
    const size = o.parameters && o.parameters.binary_data_size;
    if (size !== undefined) {
      out[o.name] = { shape: o.shape, bytes: new Uint8Array(buf.slice(offset, offset + size)) };
      offset += size;
    } else {
      out[o.name] = { shape: o.shape, data: o.data };
    }
  }
  return out;
}

// --- pixels ------------------------------------------------------------------------------------------

function rgbOf(canvas) {
  const { width: w, height: h } = canvas;
  const rgba = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}

function paint(canvas, rgb, w, h) {
  canvas.width = w; canvas.height = h;
  const img = new ImageData(w, h);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    img.data[i] = rgb[j]; img.data[i + 1] = rgb[j + 1]; img.data[i + 2] = rgb[j + 2]; img.data[i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(img, 0, 0);
}

function drawSource(source, w, h) {
  state.source = { source, w, h };
  const scale = Math.min(1, sideLimit() / Math.max(w, h));
  const canvas = $("photo");
  canvas.width = Math.max(1, Math.round(w * scale));
  canvas.height = Math.max(1, Math.round(h * scale));
  canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
  state.photo = { rgb: rgbOf(canvas), w: canvas.width, h: canvas.height };
}

// Keep colours (luminance of the result, chroma of the photo, as YCbCr) and strength, as the client library does.
function finish(photo, stylized, strength, keep) {
  const out = new Uint8Array(stylized.length);
  for (let j = 0; j < stylized.length; j += 3) {
    let [r, g, b] = [stylized[j], stylized[j + 1], stylized[j + 2]];
    if (keep) {
      const [pr, pg, pb] = [photo[j], photo[j + 1], photo[j + 2]];
      const y = 0.299 * r + 0.587 * g + 0.114 * b;
      const cb = 128 - 0.168736 * pr - 0.331264 * pg + 0.5 * pb;
      const cr = 128 + 0.5 * pr - 0.418688 * pg - 0.081312 * pb;
      [r, g, b] = [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)];
    }
    out[j] = strength * r + (1 - strength) * photo[j];
    out[j + 1] = strength * g + (1 - strength) * photo[j + 1];
    out[j + 2] = strength * b + (1 - strength) * photo[j + 2];
  }
  return out;
}

// --- models and style sliders ------------------------------------------------------------------------

async function loadModels() {
  const index = await (await api("/v2/repository/index", { method: "POST", body: "{}" })).json();
  const ready = index.filter((m) => m.state === "READY").map((m) => m.name);
  const techniques = {};
  state.models = {};
  for (const name of ready) {
    const cfg = await (await api(`/v2/models/${encodeURIComponent(name)}/config`)).json();
    const params = cfg.parameters || {};
    const kind = params.stylecast_kind && params.stylecast_kind.string_value;
    if (kind === "style") {
      state.models[name] = params.styles ? params.styles.string_value.split(",").map((s) => s.trim()) : [name];
    } else if (kind === "technique") {
      techniques[name] = cfg;
    }
  }
  setTechniques(techniques);
  const model = $("model").value;
  $("model").replaceChildren(...Object.keys(state.models).map((m) => new Option(m, m)));
  if (state.models[model]) $("model").value = model;
  $("technique").replaceChildren(...ATTRIBUTIONS.filter((t) => ready.includes(t)).map((t) => new Option(t, t)));
  $("run-explain").disabled = !$("technique").options.length;
  $("run-dream").disabled = !ready.includes("deepdream");
  showStyles();
  $("status").textContent = `${Object.keys(state.models).length} style model(s), ${ready.length} models ready`;
}

// The blend by style name, kept across a model switch: a style the next model also holds keeps its weight.
const blend = {};
// Thumbnails of the paintings this page taught the server (the server's --paintings folder lacks them).
const ownThumbs = {};

function showStyles() {
  const names = state.models[$("model").value] || [];
  state.weights = names.map((name) => blend[name] || 0);
  if (!state.weights.some((w) => w > 0) && names.length) state.weights[0] = 1;
  $("styles").replaceChildren(...names.map((name, i) => {
    const row = document.createElement("div");
    row.className = "style-row";
    const pick = document.createElement("button");
    pick.type = "button"; pick.textContent = name.replace(/_/g, " "); pick.title = `${name} alone`;
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: 0, max: 1, step: 0.05, value: state.weights[i] });
    slider.dataset.style = name;
    const value = document.createElement("output");
    value.textContent = state.weights[i].toFixed(2);
    const thumb = document.createElement("img");
    const src = ownThumbs[name] || `paintings/${encodeURIComponent(name)}.jpg`;
    Object.assign(thumb, { className: "thumb", alt: "", src });
    thumb.addEventListener("error", () => thumb.remove());  // no painting of that name on this server
    slider.addEventListener("input", () => {
      state.weights[i] = parseFloat(slider.value); value.textContent = state.weights[i].toFixed(2);
      remember(names); stylize();
    });
    pick.addEventListener("click", () => {
      state.weights = names.map((_, k) => (k === i ? 1 : 0));
      remember(names);
      $("styles").querySelectorAll("input").forEach((s, k) => { s.value = state.weights[k]; });
      $("styles").querySelectorAll("output").forEach((o, k) => { o.textContent = state.weights[k].toFixed(2); });
      stylize();
    });
    row.append(thumb, pick, slider, value);
    return row;
  }));
  remember(names);
}

function remember(names) {
  for (const k of Object.keys(blend)) delete blend[k];
  names.forEach((name, i) => { blend[name] = state.weights[i]; });
}

// --- example photos ----------------------------------------------------------------------------------

async function loadExamples() {
  const r = await fetch("examples/examples.json");
  if (!r.ok) return;
  $("examples").replaceChildren(...(await r.json()).map((e) => {
    const img = document.createElement("img");
    Object.assign(img, { src: `examples/${e.file}`, alt: e.title, title: `${e.title}: ${e.credit}` });
    img.dataset.example = e.title;
    img.addEventListener("click", () => {
      const full = new Image();
      full.onload = () => { drawSource(full, full.naturalWidth, full.naturalHeight); stylize(); };
      full.src = img.src;
    });
    return img;
  }));
}

// --- stylize -----------------------------------------------------------------------------------------

async function stylize() {
  if (!state.photo) return;
  if (state.busy) { state.again = true; return; }
  const total = state.weights.reduce((a, b) => a + b, 0);
  if (total <= 0) { $("timing").textContent = "move at least one style slider above 0"; return; }
  state.busy = true;
  const { rgb, w, h } = state.photo;
  const model = $("model").value;
  const inputs = [{ name: "image", datatype: "UINT8", shape: [1, h, w, 3], data: rgb }];
  if (state.models[model].length > 1) {
    inputs.push({ name: "style_weights", datatype: "FP32", shape: [1, state.weights.length],
                  data: new Float32Array(state.weights.map((v) => v / total)) });
  }
  const t0 = performance.now();
  try {
    const out = await infer(model, inputs, [{ name: "stylized", binary: true }]);
    const result = finish(rgb, out.stylized.bytes, parseFloat($("strength").value), $("keep").checked);
    state.result = { rgb: result, photo: rgb, w, h };
    showResult();
    $("result").dataset.version = String(++state.version);
    $("timing").textContent = `${w}x${h} in ${(performance.now() - t0).toFixed(0)} ms`;
    const full = document.createElement("canvas");  // the download is the whole result, whatever the slider
    paint(full, result, w, h);
    $("download").href = full.toDataURL("image/png");
    $("download").hidden = false;
  } catch (e) {
    $("timing").textContent = `error: ${e.message}`;
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; stylize(); } else if (state.webcam) requestAnimationFrame(webcamFrame);
  }
}

// Before / after: the result left of the slider's position, the photo right of it.
function showResult() {
  const r = state.result;
  if (!r) return;
  const split = Math.round(r.w * parseFloat($("compare").value));
  let rgb = r.rgb;
  if (split < r.w) {
    rgb = new Uint8Array(r.rgb);
    for (let y = 0; y < r.h; y++) {
      const row = 3 * y * r.w;
      rgb.set(r.photo.subarray(row + 3 * split, row + 3 * r.w), row + 3 * split);
    }
  }
  paint($("result"), rgb, r.w, r.h);
}

function webcamFrame() {
  const video = $("video");
  if (!state.webcam || video.readyState < 2) return;
  drawSource(video, video.videoWidth, video.videoHeight);
  stylize();
}

async function toggleWebcam() {
  if (state.webcam) {
    state.webcam.getTracks().forEach((t) => t.stop());
    state.webcam = null; $("webcam").textContent = "Use the webcam"; return;
  }
  try {
    state.webcam = await navigator.mediaDevices.getUserMedia({ video: { width: 320 } });
  } catch (e) {
    $("status").textContent = `webcam: ${e.message}`; return;
  }
  const video = $("video");
  video.srcObject = state.webcam;
  await video.play();
  $("webcam").textContent = "Stop the webcam";
  webcamFrame();
}

// --- explain and DeepDream ---------------------------------------------------------------------------

async function explain() {
  if (!state.photo) return;
  const { rgb, w, h } = state.photo;
  $("label").textContent = "…";
  try {
    const out = await infer($("technique").value, [{ name: "image", datatype: "UINT8", shape: [h, w, 3], data: rgb }],
                            [{ name: "overlay", binary: true }, { name: "label", binary: false },
                             { name: "probability", binary: false }]);
    paint($("overlay"), out.overlay.bytes, w, h);
    $("label").textContent = `${out.label.data[0]} (${(100 * out.probability.data[0]).toFixed(1)}%)`;
  } catch (e) {
    $("label").textContent = `error: ${e.message}`;
  }
}

function nested(rgb, w, h) {
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = [];
    for (let x = 0; x < w; x++) { const j = 3 * (y * w + x); row.push([rgb[j], rgb[j + 1], rgb[j + 2]]); }
    rows.push(row);
  }
  return rows;
}

function paintNested(canvas, rows) {
  const h = rows.length, w = rows[0].length, rgb = new Uint8Array(w * h * 3);
  rows.forEach((row, y) => row.forEach((p, x) => rgb.set(p, 3 * (y * w + x))));
  paint(canvas, rgb, w, h);
}

async function dream() {
  if (!state.photo) return;
  const small = document.createElement("canvas");
  const scale = Math.min(1, 160 / Math.max(state.photo.w, state.photo.h));
  small.width = Math.round(state.photo.w * scale); small.height = Math.round(state.photo.h * scale);
  small.getContext("2d").drawImage($("photo"), 0, 0, small.width, small.height);
  const steps = parseInt($("dream-steps").value, 10);
  const body = JSON.stringify({ image: nested(rgbOf(small), small.width, small.height),
                                parameters: { steps, preview_every: 2, octaves: 1 } });
  $("dream-progress").textContent = "starting…";
  try {
    const r = await api("/v2/models/deepdream/generate_stream", { method: "POST", body,
                                                                   headers: { "Content-Type": "application/json" } });
    await readEvents(r, (event) => {
      if (event.error) { $("dream-progress").textContent = `error: ${event.error}`; return; }
      if (event.image) paintNested($("dream"), event.image);
      $("dream-progress").textContent = event.step !== undefined
        ? `step ${event.step} / ${steps}, loss ${Number(event.loss).toFixed(3)}` : `done: ${event.steps} steps`;
    });
  } catch (e) {
    $("dream-progress").textContent = `error: ${e.message}`;
  }
}

// --- wiring ------------------------------------------------------------------------------------------

// A dropped or chosen file as a decoded image, given to use(img); what is wrong with it goes to status.
function openImage(file, status, use) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { status.textContent = `error: ${file.name} is not an image`; return; }
  const img = new Image();
  img.onerror = () => { status.textContent = `error: ${file.name} could not be read as an image`; };
  img.onload = () => { use(img); URL.revokeObjectURL(img.src); };
  img.src = URL.createObjectURL(file);
}

function openPhoto(file) {
  openImage(file, $("timing"), (img) => { drawSource(img, img.naturalWidth, img.naturalHeight); stylize(); });
}

$("file").addEventListener("change", () => openPhoto($("file").files[0]));
$("source").addEventListener("dragover", (e) => e.preventDefault());
$("source").addEventListener("drop", (e) => { e.preventDefault(); openPhoto(e.dataTransfer.files[0]); });
$("size").addEventListener("change", () => {
  if (state.source) { drawSource(state.source.source, state.source.w, state.source.h); stylize(); }
});
$("webcam").addEventListener("click", toggleWebcam);
$("model").addEventListener("change", () => { showStyles(); stylize(); });
$("strength").addEventListener("input", stylize);
$("compare").addEventListener("input", showResult);
$("keep").addEventListener("change", stylize);
$("run-explain").addEventListener("click", explain);
$("run-dream").addEventListener("click", dream);
loadModels().catch((e) => { $("status").textContent = `error: ${e.message}`; });
loadExamples();
