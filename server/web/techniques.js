// stylecast studio: every technique the server holds, each with a form built from its served model config
// (inputs, parameters with defaults, bounds and choices), run over Triton's generate / generate_stream.
// A new technique (one spec on the server) appears here without page code.
"use strict";

const T = { configs: {}, style: null };
const MAX_JSON_SIDE = 256; // images go as JSON in generate requests: bound their size

function paramSpecs(cfg) {
  // "int,default=5,min=1,max=50: help" or "str,default=a,choices=a|b: help"
  return Object.entries(cfg.parameters || {}).filter(([k]) => k.startsWith("param.")).map(([k, v]) => {
    const text = v.string_value, cut = text.indexOf(": ");
    const head = cut >= 0 ? text.slice(0, cut) : text, help = cut >= 0 ? text.slice(cut + 2) : "";
    const [kind, ...fields] = head.split(",");
    const f = Object.fromEntries(fields.map((x) => [x.slice(0, x.indexOf("=")), x.slice(x.indexOf("=") + 1)]));
    return { name: k.slice(6), kind, def: f.default, min: f.min, max: f.max,
             choices: f.choices ? f.choices.split("|") : null, help };
  });
}

const isImage = (t) => t.data_type === "TYPE_UINT8" && String(t.dims.slice(-1)[0]) === "3";

function sourceFor(t) {
  // which picture feeds an image input: the style image for paintings and styles, else the photo
  return ["painting", "style"].includes(t.name) ? "style" : "photo";
}

function setTechniques(configs) {
  // configs: {name: served model config} of the ready models whose stylecast_kind is "technique"
  T.configs = configs;
  const names = Object.keys(T.configs).sort();
  const current = $("tech").value;
  $("tech").replaceChildren(...names.map((n) => new Option(n, n)));
  if (names.includes(current)) $("tech").value = current;
  $("tech-run").disabled = !names.length;
  renderForm();
  document.dispatchEvent(new Event("techniques"));
}

function field(label, input, help) {
  const row = document.createElement("label");
  row.className = "field";
  row.append(`${label} `, input);
  if (help) row.title = help;
  return row;
}

function renderForm() {
  const cfg = T.configs[$("tech").value];
  if (!cfg) return;
  $("tech-about").textContent = cfg.parameters.description ? cfg.parameters.description.string_value : "";
  const rows = [];
  for (const t of cfg.input) {
    if (isImage(t)) {
      const from = sourceFor(t) === "style" ? "painting (your own style)" : "photo";
      rows.push(field(t.name, Object.assign(document.createElement("span"),
                                            { textContent: `← the ${from}${t.optional ? " (optional)" : ""}` })));
    } else {
      const input = Object.assign(document.createElement("input"), { type: "text", placeholder: t.optional ? "optional" : "" });
      input.dataset.input = t.name; input.dataset.type = t.data_type;
      rows.push(field(t.name, input, `${t.data_type} ${t.dims.join("x")}`));
    }
  }
  for (const p of paramSpecs(cfg)) {
    let input;
    if (p.choices) {
      input = document.createElement("select");
      input.append(...p.choices.map((c) => new Option(c, c, c === p.def, c === p.def)));
    } else if (p.kind === "str") {
      input = Object.assign(document.createElement("input"), { type: "text", value: p.def || "" });
    } else {
      input = Object.assign(document.createElement("input"), { type: "number", value: p.def, min: p.min, max: p.max,
                                                                step: p.kind === "int" ? 1 : "any" });
    }
    input.dataset.param = p.name; input.dataset.kind = p.kind;
    rows.push(field(p.name, input, p.help));
  }
  $("tech-form").replaceChildren(...rows);
}

function scaledNested(canvas, w, h, side = MAX_JSON_SIDE) {
  const s = Math.min(1, side / Math.max(w, h));
  const small = document.createElement("canvas");
  small.width = Math.max(1, Math.round(w * s)); small.height = Math.max(1, Math.round(h * s));
  small.getContext("2d").drawImage(canvas, 0, 0, small.width, small.height);
  return nested(rgbOf(small), small.width, small.height);
}

function requestBody(cfg) {
  const body = { parameters: {} };
  for (const t of cfg.input) {
    if (isImage(t)) {
      const src = sourceFor(t) === "style" ? T.style : state.photo && { canvas: $("photo"), ...state.photo };
      if (!src) { if (t.optional) continue; throw new Error(`upload a ${sourceFor(t)} first (input '${t.name}')`); }
      const image = scaledNested(src.canvas, src.w, src.h);
      body[t.name] = t.dims.length === 4 ? [image] : image;
      continue;
    }
    const text = $("tech-form").querySelector(`[data-input="${t.name}"]`).value.trim();
    if (!text) { if (t.optional) continue; throw new Error(`give input '${t.name}'`); }
    const values = text.split(",").map((v) => v.trim());
    body[t.name] = t.data_type === "TYPE_STRING" ? values : values.map(Number);
  }
  for (const input of $("tech-form").querySelectorAll("[data-param]")) {
    const v = input.value;
    body.parameters[input.dataset.param] = input.dataset.kind === "str" ? v : Number(v);
  }
  return body;
}

// A gallery answer names gallery images and gives each a number (kNN distances, patch scores): one ranked
// table of the two instead of two lists.
function rankedTable(cfg, out) {
  const names = out.names;
  const numeric = cfg.output.filter((t) => t.data_type === "TYPE_FP32").map((t) => t.name).find((n) =>
    Array.isArray(out[n]) && out[n].length === (names || []).length && out[n].every((x) => typeof x === "number"));
  if (!names || !numeric || !names.length) return null;
  const table = document.createElement("table");
  table.className = "ranked"; table.dataset.output = numeric;
  table.createTHead().insertRow().append(...["#", "gallery image", numeric].map((h) => {
    const th = document.createElement("th"); th.textContent = h; return th;
  }));
  const body = table.createTBody();
  names.forEach((name, i) => {
    const row = body.insertRow();
    row.insertCell().textContent = String(i + 1);
    row.insertCell().textContent = name;
    row.insertCell().textContent = (+out[numeric][i].toFixed(4)).toString();
  });
  return { table, used: ["names", numeric] };
}

// A string output named after an image output ("label" for "image", "original_label" for "original")
// is that picture's caption, so a before / after pair reads as two labelled pictures.
const captionOf = (name) => (name === "image" ? "label" : `${name}_label`);

function imageFigure(name, pixels, caption) {
  const fig = document.createElement("figure"), c = document.createElement("canvas");
  c.dataset.output = name; paintNested(c, pixels);
  const cap = document.createElement("figcaption");
  cap.textContent = caption === undefined ? name : `${name}: ${[caption].flat()[0]}`;
  fig.append(c, cap);
  return fig;
}

function showOutputs(cfg, out) {
  const parts = [], shown = new Set(["step", "loss"]);
  const ranked = rankedTable(cfg, out);
  if (ranked) { parts.push(ranked.table); ranked.used.forEach((n) => shown.add(n)); }
  const isPicture = (v) => Array.isArray(v) && Array.isArray(v[0]) && Array.isArray(v[0][0]) && v[0][0].length === 3;
  for (const t of cfg.output) if (isPicture(out[t.name]) && out[captionOf(t.name)] !== undefined) shown.add(captionOf(t.name));
  const pictures = document.createElement("div");
  pictures.className = "pictures";
  for (const t of cfg.output) {
    const v = out[t.name];
    if (v === undefined || (shown.has(t.name) && !isPicture(v))) continue;
    if (isPicture(v)) {
      pictures.append(imageFigure(t.name, v, out[captionOf(t.name)]));
    } else if (Array.isArray(v) && Array.isArray(v[0]) && typeof v[0][0] === "number" && v.length > 8 && v[0].length > 8) {
      const c = document.createElement("canvas"); c.dataset.output = t.name; paintMap(c, v); parts.push(field(t.name, c));
    } else {
      const text = Array.isArray(v) ? v.flat().slice(0, 32).map((x) => (typeof x === "number" ? +x.toFixed(4) : x)).join(", ")
        : (typeof v === "number" ? +v.toFixed(4) : v);
      parts.push(field(t.name, Object.assign(document.createElement("code"), { textContent: String(text) })));
    }
  }
  $("tech-result").replaceChildren(pictures, ...parts);
}

function paintMap(canvas, rows) {
  // a 2-D map (attribution, mask) as grey levels, normalized to its range
  const h = rows.length, w = rows[0].length, flat = rows.flat();
  let lo = Infinity, hi = -Infinity;
  for (const x of flat) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
  const rgb = new Uint8Array(w * h * 3);
  flat.forEach((x, i) => { rgb.fill(Math.round(255 * (x - lo) / ((hi - lo) || 1)), 3 * i, 3 * i + 3); });
  paint(canvas, rgb, w, h);
}

// One run of a technique into a panel ({progress, status, result, cancel, run}: elements): a decoupled one
// streams its steps and previews with a progress bar and can be cancelled; the answer goes to show(out).
async function runInto(name, body, ui, show) {
  const cfg = T.configs[name];
  const streamed = cfg.model_transaction_policy && cfg.model_transaction_policy.decoupled;
  const steps = body.parameters.steps, controller = new AbortController();
  ui.cancel.onclick = () => controller.abort();
  ui.cancel.disabled = !streamed; ui.run.disabled = true;
  ui.progress.value = 0; ui.progress.hidden = !streamed;
  ui.status.textContent = "working…";
  const t0 = performance.now();
  try {
    const route = streamed ? "generate_stream" : "generate";
    const r = await api(`/v2/models/${encodeURIComponent(name)}/${route}`, {
      method: "POST", body: JSON.stringify(body), signal: controller.signal,
      headers: { "Content-Type": "application/json" } });
    let answer = null;
    if (!streamed) answer = await r.json();
    else {
      await readEvents(r, (event) => {
        if (event.error) throw new Error(event.error);
        if (event.step === undefined) { answer = event; return; }
        if (steps) ui.progress.value = event.step / steps;
        ui.status.textContent = `step ${event.step}${steps ? ` / ${steps}` : ""}, loss ${Number(event.loss).toFixed(3)}`;
        if (event.image) { const c = document.createElement("canvas"); paintNested(c, event.image); ui.result.replaceChildren(c); }
      });
    }
    if (!answer) throw new Error("the stream ended without an answer");
    await show(answer);
    ui.status.textContent = `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    ui.progress.value = 1;
    return answer;
  } catch (e) {
    ui.status.textContent = e.name === "AbortError" ? "cancelled" : `error: ${e.message}`;
    return null;
  } finally {
    ui.run.disabled = false; ui.cancel.disabled = true;
  }
}

const techPanel = () => ({ progress: $("tech-progress"), status: $("tech-status"), result: $("tech-result"),
                           cancel: $("tech-cancel"), run: $("tech-run") });

async function runTechnique() {
  const name = $("tech").value, cfg = T.configs[name];
  let body;
  try { body = requestBody(cfg); } catch (e) { $("tech-status").textContent = `error: ${e.message}`; return; }
  await runInto(name, body, techPanel(), async (out) => {
    showOutputs(cfg, out);
    if (name === "learn_style") await loadModels();  // the new style appears among the sliders
  });
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    text += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = text.indexOf("\n\n")) >= 0) {
      const line = text.slice(0, cut); text = text.slice(cut + 2);
      if (line.startsWith("data: ")) onEvent(JSON.parse(line.slice(6)));
    }
  }
}

$("tech").addEventListener("change", renderForm);
$("tech-run").addEventListener("click", runTechnique);
