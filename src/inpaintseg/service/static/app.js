// The analyst page: upload one image; see the verdict (with how often untouched photos score as high), the
// marked region over the image (or the probability map beside it), zoom and pan at native resolution, and
// re-threshold in the browser. No libraries, nothing loaded from elsewhere. The server computes the probability
// map at the image's native size and returns it as an 8-bit PNG (value = round(p x 255)) with its own mask and
// the mask's area; at the server's threshold every number and download shown is the server's.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "inpaintseg-token";
const MAX_VIEW_HEIGHT = 0.72;   // of the window height
const MAX_ZOOM = 16;
const OUTLINE = [255, 255, 255];  // white with a dark edge: visible on photos and on every viridis colour
const LEVEL_CLASS = { "likely untouched": "ok", "untouched": "ok", "uncertain": "unsure",
  "likely manipulated": "bad", "manipulated": "bad" };
// viridis, 256 RGB entries: the colour map of the report and the overlays (inference/overlays.py; a test
// compares this table with viridis_lut()).
const VIRIDIS_HEX =
  "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769" +
  "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a" +
  "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85" +
  "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b" +
  "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d" +
  "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e" +
  "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e" +
  "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d" +
  "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88" +
  "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81" +
  "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74" +
  "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863" +
  "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d" +
  "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32" +
  "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a" +
  "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725";

const LUT = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < lut.length; i++) lut[i] = parseInt(VIRIDIS_HEX.substr(i * 2, 2), 16);
  return lut;
})();

const $ = (id) => document.getElementById(id);
const state = { model: null, limits: null, result: null, busy: false, zoom: 1, layout: "overlay" };

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

// "name: message", unless the server's message already names the file.
function fileError(name, message) {
  return message.includes(name) ? message : `${name}: ${message}`;
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
function pct(x, digits = 1) { return `${(100 * x).toFixed(digits)}%`; }

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

function facts(list, rows) {
  list.textContent = "";
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    list.append(dt, dd);
  }
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
    `${+(model.limits.max_pixels / 1e6).toFixed(1)} megapixels. The mask is computed at the image's native size.`;
  const banner = $("quality-banner");
  banner.textContent = model.quality && model.quality.warning ? model.quality.warning : "";
  banner.hidden = !banner.textContent;
  facts($("model-info"), [...(model.card || []), ["Device", model.device]]);
  setStatus("Ready: choose or drop an image.");
}

$("token-box").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  showError("");
  loadModel();
});

// ---- upload --------------------------------------------------------------------------------------------

function clearResult() {
  state.result = null;
  $("result").hidden = true;
  $("file-name").textContent = "";
}

async function handleFile(file) {
  if (!file || state.busy) return;
  showError("");
  clearResult();  // a new upload never shows the previous image's result, whatever happens next
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
      showError(fileError(file.name, await errorMessage(response)) + (retry ? ` (retry in ${retry} s)` : ""));
      setStatus("");
      return;
    }
    const body = await response.json();
    await showResult(body, await picture, file.name);
  } catch (err) {
    clearResult();
    showError(fileError(file.name, String(err.message || err)));
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
  return grey;
}

// The zoom that fits the whole image in the viewer (small images: enlarged by a whole factor, at most 8).
function fitZoom(width, height) {
  const viewer = $("viewer");
  const side = state.layout === "side";
  const avail = $("views").clientWidth / (side ? 2 : 1) - (side ? 8 : 0);
  const maxH = Math.max(200, window.innerHeight * MAX_VIEW_HEIGHT);
  let zoom = Math.min(Math.max(120, avail || viewer.clientWidth) / width, maxH / height);
  if (zoom > 1) zoom = Math.min(Math.floor(zoom), 8);
  return zoom;
}

async function showResult(body, picture, fileName) {
  const { width, height } = body;
  const [grey, serverGrey] = await Promise.all([decodeGreyPng(body.probability_png, width, height),
    decodeGreyPng(body.mask_png, width, height)]);
  const serverMask = new Uint8Array(serverGrey.length);
  for (let i = 0; i < serverMask.length; i++) serverMask[i] = serverGrey[i] > 127 ? 1 : 0;

  for (const id of ["image-canvas", "overlay-canvas", "heat-canvas"]) { $(id).width = width; $(id).height = height; }
  const ictx = $("image-canvas").getContext("2d");
  ictx.fillStyle = "#777";
  ictx.fillRect(0, 0, width, height);
  let pictureNote = "";
  if (picture && picture.img.naturalWidth === width && picture.img.naturalHeight === height) {
    ictx.drawImage(picture.img, 0, 0);
  } else if (picture) {
    pictureNote = " The browser shows this image rotated (EXIF); the marks follow the stored pixels, so they are drawn on grey.";
  } else {
    pictureNote = " This browser cannot display the image format; the marks are drawn on grey.";
  }
  if (picture) { URL.revokeObjectURL(picture.url); picture.img.remove(); }

  state.result = { body, grey, serverMask, serverCut: cutFor(body.threshold) };
  $("threshold").value = String(body.threshold);
  $("result").hidden = false;
  $("file-name").textContent = fileName;
  $("fact-post").textContent = `TTA ${body.tta}, CRF ${body.crf}`;
  const t = body.timings || {};
  $("fact-time").textContent = `${fmt(t.total || 0, 2)} s (model ${fmt(t.model || 0, 2)} s)`;
  showVerdict(body);
  drawHeat();
  setZoom(fitZoom(width, height));
  setStatus(`${body.image_id}: done.${pictureNote}`);
}

// The server's verdict: level, score, and how often untouched validation images score this high.
function showVerdict(body) {
  const v = body.verdict || { level: body.label ? "manipulated" : "untouched", false_alarm_rate: null, note: "" };
  const label = $("label");
  label.textContent = v.level;
  label.className = `label ${LEVEL_CLASS[v.level] || ""}`;
  $("score").textContent = fmt(body.score, 3);
  const n = v.n_untouched;
  $("far").textContent = v.false_alarm_rate === null
    ? ""
    : `False-alarm rate at this score: ${pct(v.false_alarm_rate, 0)}. ${Math.round(v.false_alarm_rate * n)} of ` +
      `the ${n} untouched validation images score ${fmt(body.score, 3)} or higher` +
      (n < 10 ? " (few untouched validation images: a coarse estimate)." : ".");
  $("verdict-note").textContent = v.false_alarm_rate === null ? `Note: ${v.note}`
    : "Image score = mean of the top 1% pixel probabilities; the verdict levels were chosen on validation images.";
}

function drawHeat() {
  const r = state.result;
  const { width, height } = r.body;
  const ctx = $("heat-canvas").getContext("2d");
  const img = ctx.createImageData(width, height);
  const px = img.data;
  for (let i = 0; i < r.grey.length; i++) {
    const v = r.grey[i] * 3;
    px[i * 4] = LUT[v]; px[i * 4 + 1] = LUT[v + 1]; px[i * 4 + 2] = LUT[v + 2]; px[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// The region at the current threshold: the server's mask at the server's threshold, else the 8-bit map
// re-thresholded here.
function region() {
  const r = state.result;
  const cut = cutFor(Number($("threshold").value));
  if (cut === r.serverCut) return r.serverMask;
  const mask = new Uint8Array(r.grey.length);
  for (let i = 0; i < mask.length; i++) mask[i] = r.grey[i] >= cut ? 1 : 0;
  return mask;
}

// Outline width in image pixels: about one screen pixel at the current zoom.
function outlineWidth() { return Math.max(1, Math.ceil(1 / state.zoom - 1e-6)); }

// The overlay: translucent viridis fill and an outline only where the region is; elsewhere transparent.
function render() {
  const r = state.result;
  if (!r) return;
  const threshold = Number($("threshold").value);
  const opacity = Number($("opacity").value);
  const outline = $("outline").checked;
  const { width: w, height: h } = r.body;
  const mask = region();
  const g = r.grey;
  const ctx = $("overlay-canvas").getContext("2d");
  const out = ctx.createImageData(w, h);
  const px = out.data;
  const alpha = Math.round(opacity * 255);
  const k = outlineWidth();
  let count = 0;
  for (let y = 0, i = 0; y < h; y++) {
    for (let x = 0; x < w; x++, i++) {
      if (!mask[i]) continue;
      count++;
      const edge = outline && (x < k || y < k || x >= w - k || y >= h - k ||
        !mask[i - k] || !mask[i + k] || !mask[i - k * w] || !mask[i + k * w]);
      const o = i * 4;
      if (edge) {
        px[o] = OUTLINE[0]; px[o + 1] = OUTLINE[1]; px[o + 2] = OUTLINE[2]; px[o + 3] = 255;
      } else {
        const v = g[i] * 3;
        px[o] = LUT[v]; px[o + 1] = LUT[v + 1]; px[o + 2] = LUT[v + 2]; px[o + 3] = alpha;
      }
    }
  }
  ctx.putImageData(out, 0, 0);
  $("overlay-canvas").dataset.outlineWidth = String(k);

  const atServer = cutFor(threshold) === r.serverCut;
  $("threshold-value").textContent = fmt(threshold);
  $("opacity-value").textContent = `${Math.round(opacity * 100)}%`;
  const area = $("fact-area");
  if (atServer) {  // the server's own numbers
    area.textContent = `${pct(r.body.manipulated_fraction, 2)} of the image (${r.body.manipulated_pixels.toLocaleString("en")} px)`;
  } else {
    area.textContent = `${pct(count / g.length, 2)} of the image (${count.toLocaleString("en")} px), re-thresholded here`;
  }
  area.dataset.pixels = String(count);
  const gated = r.body.gated ? ` The server's mask is empty: the image score ${fmt(r.body.score, 3)} is below ` +
    `the image gate ${r.body.gate}, chosen so that few untouched images get a region.` : "";
  $("threshold-note").textContent = atServer
    ? `The server's threshold (${r.body.threshold}): the region, its area and the downloads are the server's mask.${gated}`
    : `Re-thresholded here on the 8-bit map (the server used ${r.body.threshold}); pixels within 1/510 of ` +
      "the threshold may differ from a new request. The verdict does not change: it comes from the image score.";
  $("overlay-canvas").setAttribute("aria-label",
    `Marked region of ${r.body.image_id}: ${pct(count / g.length)} of pixels at or above threshold ${fmt(threshold)}`);
}

for (const id of ["threshold", "opacity", "outline"]) $(id).addEventListener("input", render);

// ---- zoom, pan and layout ------------------------------------------------------------------------------

function viewers() { return state.layout === "side" ? [$("viewer"), $("viewer-side")] : [$("viewer")]; }

function setZoom(zoom, anchor) {
  const r = state.result;
  if (!r) return;
  const { width, height } = r.body;
  const min = Math.min(fitZoom(width, height), 1);
  const old = state.zoom;
  state.zoom = Math.min(MAX_ZOOM, Math.max(min, zoom));
  const viewer = $("viewer");
  // keep the image point under the anchor (default: the view's centre) where it is
  const ax = anchor ? anchor.x : viewer.clientWidth / 2;
  const ay = anchor ? anchor.y : viewer.clientHeight / 2;
  const ix = (viewer.scrollLeft + ax) / old;
  const iy = (viewer.scrollTop + ay) / old;
  for (const id of ["box-main", "box-side"]) {
    const box = $(id);
    box.style.width = `${Math.round(width * state.zoom)}px`;
    box.style.height = `${Math.round(height * state.zoom)}px`;
    box.classList.toggle("pixelated", state.zoom >= 2);
  }
  for (const v of viewers()) {
    v.scrollLeft = ix * state.zoom - ax;
    v.scrollTop = iy * state.zoom - ay;
  }
  $("zoom-value").textContent = `${Math.round(state.zoom * 100)}%`;
  $("fact-size").textContent = `${width} x ${height} px, shown at ${Math.round(state.zoom * 100)}%`;
  render();
}

$("zoom-fit").addEventListener("click", () => state.result && setZoom(fitZoom(state.result.body.width, state.result.body.height)));
$("zoom-native").addEventListener("click", () => setZoom(1));
$("zoom-in").addEventListener("click", () => setZoom(state.zoom * 1.5));
$("zoom-out").addEventListener("click", () => setZoom(state.zoom / 1.5));

for (const viewer of [$("viewer"), $("viewer-side")]) {
  let drag = null;
  viewer.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY };
    viewer.setPointerCapture(event.pointerId);
    viewer.classList.add("panning");
  });
  viewer.addEventListener("pointermove", (event) => {
    if (!drag) return;
    viewer.scrollLeft -= event.clientX - drag.x;
    viewer.scrollTop -= event.clientY - drag.y;
    drag = { x: event.clientX, y: event.clientY };
  });
  const end = () => { drag = null; viewer.classList.remove("panning"); };
  viewer.addEventListener("pointerup", end);
  viewer.addEventListener("pointercancel", end);
  viewer.addEventListener("wheel", (event) => {
    if (!event.ctrlKey) return;
    event.preventDefault();
    const rect = viewer.getBoundingClientRect();
    setZoom(state.zoom * (event.deltaY < 0 ? 1.25 : 0.8), { x: event.clientX - rect.left, y: event.clientY - rect.top });
  }, { passive: false });
  // the two views of the side-by-side layout pan together
  viewer.addEventListener("scroll", () => {
    for (const other of viewers()) {
      if (other === viewer) continue;
      if (other.scrollLeft !== viewer.scrollLeft) other.scrollLeft = viewer.scrollLeft;
      if (other.scrollTop !== viewer.scrollTop) other.scrollTop = viewer.scrollTop;
    }
  });
}

for (const radio of document.querySelectorAll("input[name=layout]")) {
  radio.addEventListener("change", () => {
    state.layout = radio.value;
    $("viewer-side").hidden = state.layout !== "side";
    $("views").classList.toggle("side", state.layout === "side");
    if (state.result) setZoom(fitZoom(state.result.body.width, state.result.body.height));
  });
}

function setControls(enabled) {
  $("file").disabled = !enabled;
  for (const id of ["dl-mask", "dl-heatmap", "dl-rle", "threshold", "opacity", "outline", "zoom-fit",
    "zoom-native", "zoom-in", "zoom-out"]) {
    $(id).disabled = !enabled || !state.result;
  }
}

// ---- downloads (native size, current threshold) --------------------------------------------------------

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
    download(await canvasBlob(greyCanvas(region(), (v) => (v ? [255, 255, 255] : [0, 0, 0]))), name);
  }
});

$("dl-heatmap").addEventListener("click", async () => {
  const r = state.result;
  const canvas = greyCanvas(r.grey, (v) => [LUT[v * 3], LUT[v * 3 + 1], LUT[v * 3 + 2]]);
  download(await canvasBlob(canvas), `${r.body.image_id}_heatmap.png`);
});

$("dl-rle").addEventListener("click", () => {
  const r = state.result;
  const text = atServerThreshold() ? r.body.rle : rleEncode(region());
  download(new Blob([text + "\n"], { type: "text/plain" }), `${r.body.image_id}_rle${suffix()}.txt`);
});

(function drawLegend() {
  const ctx = $("legend").getContext("2d");
  const img = ctx.createImageData(256, 1);
  for (let v = 0; v < 256; v++) {
    img.data[v * 4] = LUT[v * 3]; img.data[v * 4 + 1] = LUT[v * 3 + 1]; img.data[v * 4 + 2] = LUT[v * 3 + 2];
    img.data[v * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
})();

setControls(true);
loadModel().catch((err) => showError(`cannot reach the server: ${err.message || err}`));
