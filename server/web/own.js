// Your own style: a painting of the user's (uploaded or dropped) is previewed at once on the current photo
// with Gatys, streamed; where the server serves learn_style, it then becomes a real-time style of the current
// model and appears among the sliders. The painting also feeds every technique's style or painting input.
"use strict";

const ownPanel = (run) => ({ progress: $("own-progress"), status: $("own-status"), result: $("own-result"),
                             cancel: $("own-cancel"), run });
const stepsDefault = (name) => (paramSpecs(T.configs[name]).find((p) => p.name === "steps") || {}).def;

function ownOffer() {
  // what this server allows: a Gatys preview, and learning into the current model when it holds several styles
  const multi = (state.models[$("model").value] || []).length > 1;
  $("own-preview").disabled = !(T.style && T.configs.gatys);
  $("own-learn").disabled = !(T.style && T.configs.learn_style && multi);
  $("own-learn").title = T.configs.learn_style ? (multi ? `add it to ${$("model").value}` : "pick a multi-style model")
    : "this server does not serve learn_style (stylecast serve --allow-learning)";
  if (T.configs.gatys && !$("own-steps").value) $("own-steps").value = stepsDefault("gatys");
  if (T.configs.learn_style && !$("own-train-steps").value) $("own-train-steps").value = stepsDefault("learn_style");
}

function openPainting(file) {
  openImage(file, $("own-status"), (img) => {
    const c = $("style-image"), s = Math.min(1, 512 / Math.max(img.naturalWidth, img.naturalHeight));
    c.width = Math.round(img.naturalWidth * s); c.height = Math.round(img.naturalHeight * s);
    c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
    T.style = { canvas: c, w: c.width, h: c.height };
    ownOffer();
    if (T.configs.gatys) previewOwn();
  });
}

async function previewOwn() {
  if (!state.photo) { $("own-status").textContent = "upload a photo to see the painting's style on it"; return; }
  const body = { content: scaledNested($("photo"), state.photo.w, state.photo.h),
                 style: [scaledNested(T.style.canvas, T.style.w, T.style.h)],
                 parameters: { steps: Number($("own-steps").value), preview_every: 5 } };
  await runInto("gatys", body, ownPanel($("own-preview")), (out) => {
    $("own-result").replaceChildren(imageFigure("preview", out.image, "Gatys, optimized for this photo"));
  });
}

async function learnOwn() {
  const model = $("model").value, name = $("own-name").value.trim();
  const body = { painting: scaledNested(T.style.canvas, T.style.w, T.style.h, 512),
                 parameters: { model, name, steps: Number($("own-train-steps").value), preview_every: 10 } };
  await runInto("learn_style", body, ownPanel($("own-learn")), async () => {
    ownThumbs[name] = T.style.canvas.toDataURL("image/jpeg");
    await loadModels();
    for (const k of Object.keys(blend)) delete blend[k];
    blend[name] = 1;  // the new style alone, on the photo
    $("model").value = model;
    showStyles();
    stylize();
  });
  ownOffer();
}

document.addEventListener("techniques", ownOffer);
$("model").addEventListener("change", ownOffer);
$("style-file").addEventListener("change", () => openPainting($("style-file").files[0]));
$("own").addEventListener("dragover", (e) => e.preventDefault());
$("own").addEventListener("drop", (e) => { e.preventDefault(); openPainting(e.dataTransfer.files[0]); });
$("own-preview").addEventListener("click", previewOwn);
$("own-learn").addEventListener("click", learnOwn);
