// The analyst page: upload one image, show the heat map and the mask outline, re-threshold in the browser.
// No libraries, nothing loaded from elsewhere. The server computes the probability map at the image's native
// size and returns it as an 8-bit PNG (value = round(p x 255)); moving the threshold re-thresholds that map
// here, without a new request. At the server's threshold the downloads are the server's exact mask and RLE.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "inpaintseg-token";
const MAX_VIEW_HEIGHT = 0.75;   // of the window height
const MAX_UPSCALE = 8;          // small images are shown larger, pixel by pixel
// Heat-map colours (inferno-like) from probability 0 to 1.
const STOPS = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
const OUTLINE = [0, 255, 255];  // cyan: visible on photos and on every heat-map colour

const $ = (id) => document.getElementById(id);
const state = { model: null, limits: null, result: null, busy: false };

const LUT = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const x = (v / 255) * (STOPS.length - 1);
    const i = Math.min(Math.floor(x), STOPS.length - 2);
    const f = x - i;
    for (let c = 0; c < 3; c++) lut[v * 3 + c] = Math.round(STOPS[i][c] * (1 - f) + STOPS[i + 1][c] * f);
  }
  return lut;
})();

// ---- small helpers -------------------------------------------------------------------------------------

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  const el = $("error");
  el.textContent = text || "";
  el.hidden = !text;
}

function base64ToBytes(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

// The cut-off on the 8-bit map: value / 255 >= threshold (the server's rule, on the rounded map).
function cutFor(threshold) { return Math.ceil(threshold * 255 - 1e-6); }

function fmt(x, digits = 2) { return Number(x).toFixed(digits); }

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function canvasBlob(canvas) {
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png"));
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.message) return body.message;
  } catch (e) { /* not JSON */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

// ---- model and token -----------------------------------------------------------------------------------

async function loadModel() {
  const response = await fetch(`${API}/model`, { headers: authHeaders() });
  if (response.status === 401) {
    $("token-box").hidden = false;
    setStatus("This server needs an access token.");
    return;
  }
  if (!response.ok) { showError(await errorMessage(response)); return; }
  $("token-box").hidden = true;
  const model = await response.json();
  state.model = model;
  state.limits = model.limits;
  const mb = model.limits.max_upload_bytes / 1048576;
  $("limits").textContent = `PNG, JPEG, BMP, TIFF or WebP; up to ${+mb.toFixed(1)} MB and ` +
    `${+(model.limits.max_pixels / 1e6).toFixed(1)} megapixels. Large images are shown scaled; ` +
    "the mask is computed at the image's native size.";
  const info = $("model-info");
  info.textContent = "";
  const arch = model.architecture || {};
  const rows = [
    ["Network", `${arch.name || "?"} (width ${arch.base_channels}, depth ${arch.depth})`],
    ["Input", `${model.input.mode} ${model.input.size}`],
    ["Post-processing", `threshold ${model.postprocess.threshold}, TTA ${model.postprocess.tta}, CRF ${model.postprocess.crf}`],
    ["Device", model.device],
  ];
  for (const [key, value] of Object.entries(model.metrics || {})) {
    if (typeof value === "number") rows.push([key, Number.isInteger(value) ? String(value) : fmt(value, 3)]);
  }
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    info.append(dt, dd);
  }
  setStatus("Ready: choose or drop an image.");
}

$("token-box").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  showError("");
  loadModel();
});

// ---- upload --------------------------------------------------------------------------------------------

async function handleFile(file) {
  if (!file || state.busy) return;
  showError("");
  if (state.limits && file.size > state.limits.max_upload_bytes) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB, above this server's limit of ` +
      `${(state.limits.max_upload_bytes / 1048576).toFixed(1)} MB.`);
    return;
  }
  state.busy = true;
  setControls(false);
  setStatus(`Computing the mask for ${file.name} at its native size...`);
  const picture = loadPicture(file);   // decode for display while the server works
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const response = await fetch(`${API}/predict`, { method: "POST", body: form, headers: authHeaders() });
    if (response.status === 401) { $("token-box").hidden = false; }
    if (!response.ok) {
      const retry = response.headers.get("Retry-After");
      showError(`${file.name}: ${await errorMessage(response)}` + (retry ? ` (retry in ${retry} s)` : ""));
      setStatus("");
      return;
    }
    const body = await response.json();
    await showResult(body, await picture);
  } catch (err) {
    showError(`${file.name}: ${err.message || err}`);
    setStatus("");
  } finally {
    state.busy = false;
    setControls(true);
  }
}

// The uploaded image for display, with pixels as stored (the server ignores EXIF orientation too).
function loadPicture(file) {
  return new Promise((resolve) => {
    const img = new Image();
    img.style.imageOrientation = "none";
    img.className = "visually-hidden";
    img.alt = "";
    const url = URL.createObjectURL(file);
    img.onload = () => resolve({ img, url });
    img.onerror = () => { URL.revokeObjectURL(url); img.remove(); resolve(null); };
    document.body.appendChild(img);
    img.src = url;
  });
}

$("file").addEventListener("change", async (event) => {
  await handleFile(event.target.files[0]);
  event.target.value = "";  // choosing the same file again is a new upload
});
// A file dropped next to the drop zone must not make the browser navigate away from the page.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  handleFile(event.dataTransfer.files[0]);
});

// ---- result --------------------------------------------------------------------------------------------

async function decodeGreyPng(b64, width, height) {
  const blob = new Blob([base64ToBytes(b64)], { type: "image/png" });
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const grey = new Uint8Array(width * height);
  for (let i = 0; i < grey.length; i++) grey[i] = rgba[i * 4];
  return { grey, bitmap };
}

function viewSize(width, height) {
  const main = document.querySelector("main").clientWidth;
  const maxW = Math.max(200, window.innerWidth > 900 ? main - 20 * 16 - 24 : main);
  const maxH = Math.max(200, window.innerHeight * MAX_VIEW_HEIGHT);
  let scale = Math.min(maxW / width, maxH / height);
  if (scale > 1) scale = Math.min(Math.floor(scale), MAX_UPSCALE);
  return { w: Math.max(1, Math.round(width * scale)), h: Math.max(1, Math.round(height * scale)), scale };
}

async function showResult(body, picture) {
  const { width, height } = body;
  const { grey, bitmap } = await decodeGreyPng(body.probability_png, width, height);
  const view = viewSize(width, height);
  // The probability map at display size (area-averaged when shrunk, pixel by pixel when enlarged).
  const small = document.createElement("canvas");
  small.width = view.w;
  small.height = view.h;
  const sctx = small.getContext("2d", { willReadFrequently: true });
  sctx.imageSmoothingEnabled = view.scale < 1;
  sctx.imageSmoothingQuality = "high";
  sctx.drawImage(bitmap, 0, 0, view.w, view.h);
  const rgba = sctx.getImageData(0, 0, view.w, view.h).data;
  const viewGrey = new Uint8Array(view.w * view.h);
  for (let i = 0; i < viewGrey.length; i++) viewGrey[i] = rgba[i * 4];

  const imageCanvas = $("image-canvas");
  const overlay = $("overlay-canvas");
  for (const c of [imageCanvas, overlay]) { c.width = view.w; c.height = view.h; }
  const ictx = imageCanvas.getContext("2d");
  ictx.fillStyle = "#777";
  ictx.fillRect(0, 0, view.w, view.h);
  let pictureNote = "";
  if (picture && picture.img.naturalWidth === width && picture.img.naturalHeight === height) {
    ictx.imageSmoothingEnabled = view.scale < 1;
    ictx.drawImage(picture.img, 0, 0, view.w, view.h);
  } else if (picture) {
    pictureNote = " The browser shows this image rotated (EXIF); the heat map follows the stored pixels, so it is drawn on grey.";
  } else {
    pictureNote = " This browser cannot display the image format; the heat map is drawn on grey.";
  }
  if (picture) { URL.revokeObjectURL(picture.url); picture.img.remove(); }

  state.result = { body, grey, viewGrey, view, serverCut: cutFor(body.threshold), serverMask: null };
  const slider = $("threshold");
  slider.value = String(body.threshold);
  $("result").hidden = false;
  $("fact-size").textContent = `${width} x ${height}` + (view.scale !== 1 ? ` (shown at ${Math.round(view.scale * 100)}%)` : "");
  $("fact-post").textContent = `TTA ${body.tta}, CRF ${body.crf}`;
  const t = body.timings || {};
  $("fact-time").textContent = Object.entries(t).map(([k, v]) => `${k} ${fmt(v, 2)} s`).join(", ");
  setStatus(`${body.image_id}: done.${pictureNote}`);
  render();
}

// The overlay: heat map (alpha grows with the probability) and the mask outline at the current threshold.
function render() {
  const r = state.result;
  if (!r) return;
  const threshold = Number($("threshold").value);
  const opacity = Number($("opacity").value);
  const outline = $("outline").checked;
  const cut = cutFor(threshold);
  const { w, h } = r.view;
  const g = r.viewGrey;
  const ctx = $("overlay-canvas").getContext("2d");
  const out = ctx.createImageData(w, h);
  const px = out.data;
  for (let i = 0; i < g.length; i++) {
    const v = g[i];
    px[i * 4] = LUT[v * 3]; px[i * 4 + 1] = LUT[v * 3 + 1]; px[i * 4 + 2] = LUT[v * 3 + 2];
    px[i * 4 + 3] = Math.round(opacity * v);
  }
  if (outline) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (g[i] < cut) continue;
        const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
          g[i - 1] < cut || g[i + 1] < cut || g[i - w] < cut || g[i + w] < cut;
        if (edge) { px[i * 4] = OUTLINE[0]; px[i * 4 + 1] = OUTLINE[1]; px[i * 4 + 2] = OUTLINE[2]; px[i * 4 + 3] = 255; }
      }
    }
  }
  ctx.putImageData(out, 0, 0);

  let count = 0;
  const full = r.grey;
  for (let i = 0; i < full.length; i++) if (full[i] >= cut) count++;
  const fraction = count / full.length;
  const atServer = cut === r.serverCut;
  const manipulated = r.body.score >= threshold;
  $("threshold-value").textContent = fmt(threshold);
  $("opacity-value").textContent = `${Math.round(opacity * 100)}%`;
  $("score").textContent = fmt(r.body.score, 3);
  const label = $("label");
  label.textContent = manipulated ? "manipulated" : "original";
  label.className = `label ${manipulated ? "manipulated" : "original"}`;
  $("verdict-note").textContent = `score = mean of the top 1% pixel probabilities; ` +
    `${manipulated ? ">=" : "<"} threshold ${fmt(threshold)}`;
  $("fact-area").textContent = `${(fraction * 100).toFixed(2)}% of pixels (${count.toLocaleString("en")})`;
  $("fact-area").dataset.pixels = String(count);
  $("threshold-note").textContent = atServer
    ? `The server's threshold (${r.body.threshold}): downloads are the server's exact mask and RLE.`
    : `Re-thresholded here on the 8-bit map (the server used ${r.body.threshold}); pixels within 1/510 of ` +
      "the threshold may differ from a new request.";
  $("overlay-canvas").setAttribute("aria-label",
    `Heat map of ${r.body.image_id}: ${(fraction * 100).toFixed(1)}% of pixels at or above threshold ${fmt(threshold)}`);
}

for (const id of ["threshold", "opacity", "outline"]) $(id).addEventListener("input", render);

function setControls(enabled) {
  $("file").disabled = !enabled;
  for (const id of ["dl-mask", "dl-heatmap", "dl-rle", "threshold", "opacity", "outline"]) {
    $(id).disabled = !enabled || !state.result;
  }
}

// ---- downloads (native size, current threshold) --------------------------------------------------------

function currentMask() {
  const r = state.result;
  const cut = cutFor(Number($("threshold").value));
  const mask = new Uint8Array(r.grey.length);
  for (let i = 0; i < mask.length; i++) mask[i] = r.grey[i] >= cut ? 1 : 0;
  return mask;
}

function atServerThreshold() {
  return cutFor(Number($("threshold").value)) === state.result.serverCut;
}

function greyCanvas(values, lutFn) {
  const { width, height } = state.result.body;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(width, height);
  const px = img.data;
  for (let i = 0; i < values.length; i++) {
    const [r, g, b] = lutFn(values[i]);
    px[i * 4] = r; px[i * 4 + 1] = g; px[i * 4 + 2] = b; px[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

// Row-major run-length encoding, 1-based starts: "start length start length ..." (the submission format).
function rleEncode(mask) {
  const parts = [];
  let i = 0;
  const n = mask.length;
  while (i < n) {
    if (mask[i]) {
      const start = i;
      while (i < n && mask[i]) i++;
      parts.push(start + 1, i - start);
    } else {
      i++;
    }
  }
  return parts.join(" ");
}

function suffix() {
  return atServerThreshold() ? "" : `_t${fmt(Number($("threshold").value))}`;
}

$("dl-mask").addEventListener("click", async () => {
  const r = state.result;
  const name = `${r.body.image_id}_mask${suffix()}.png`;
  if (atServerThreshold()) {
    download(new Blob([base64ToBytes(r.body.mask_png)], { type: "image/png" }), name);
  } else {
    download(await canvasBlob(greyCanvas(currentMask(), (v) => (v ? [255, 255, 255] : [0, 0, 0]))), name);
  }
});

$("dl-heatmap").addEventListener("click", async () => {
  const r = state.result;
  const canvas = greyCanvas(r.grey, (v) => [LUT[v * 3], LUT[v * 3 + 1], LUT[v * 3 + 2]]);
  download(await canvasBlob(canvas), `${r.body.image_id}_heatmap.png`);
});

$("dl-rle").addEventListener("click", () => {
  const r = state.result;
  const text = atServerThreshold() ? r.body.rle : rleEncode(currentMask());
  download(new Blob([text + "\n"], { type: "text/plain" }), `${r.body.image_id}_rle${suffix()}.txt`);
});

setControls(true);
loadModel().catch((err) => showError(`cannot reach the server: ${err.message || err}`));
