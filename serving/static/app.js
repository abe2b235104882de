// authlens investigator page: no framework, no external asset. Talks to /v1/model and /v1/score.
"use strict";

const MAX_PHOTOS = 8;
const VERDICT_TEXT = {
  genuine: "The photos support a genuine item: the calibrated counterfeit probability is at or below the genuine threshold.",
  counterfeit: "The photos support a counterfeit: the calibrated counterfeit probability is at or above the counterfeit threshold.",
  inconclusive: "Neither answer is supported. This is not an accusation and not a clearance: see why below, then retake or add photos, or refer the item to an expert.",
};

const NO_TELL_TEXT = "No counterfeit tell was raised on the usable photos.";
// Said here too for servers whose /v1/model does not explain it yet.
const REUSED_TEXT = "The photo matches the reference gallery (a brand catalogue photo or another listing's photo): it shows an item, not necessarily the one for sale, so it does not vote.";

const state = { files: [], model: null, flagInfo: {}, reasons: {}, receiptUrl: null, previews: [] };
// $, pct and el come from dom.js, loaded before this file.

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function loadModel() {
  try {
    const r = await fetch("/v1/model", { headers: headers() });
    if (r.status === 401) {
      $("key-row").hidden = false;
      $("model-line").textContent = "This server needs an API key: enter it below.";
      return;
    }
    if (!r.ok) throw new Error((await r.json()).error.message);
    const m = await r.json();
    state.model = m;
    state.reasons = m.reasons;
    for (const f of m.flags) state.flagInfo[f.name] = f;
    $("model-line").textContent =
      `Model ${m.model.name} ${m.model.version} · bundle ${m.model.bundle_sha256.slice(0, 12)}… · ${m.served_graph}`
      + (m.flags.length === 0 ? " · raises no flags (trained without flag labels)" : "")
      + (m.receipt_key_ephemeral ? " · receipts signed with a temporary key" : "");
    $("model-line").title = `bundle sha256 ${m.model.bundle_sha256}`;
  } catch (e) {
    $("model-line").textContent = `Model information unavailable: ${e.message}`;
  }
}

function renderSelected() {
  const list = $("selected");
  list.replaceChildren();
  state.previews.forEach((u) => URL.revokeObjectURL(u));
  state.previews = [];
  state.files.forEach((file, i) => {
    const url = URL.createObjectURL(file);
    state.previews.push(url);
    const remove = el("button", { type: "button", "aria-label": `Remove ${file.name}`, text: "×" });
    remove.addEventListener("click", () => { state.files.splice(i, 1); renderSelected(); });
    list.append(el("li", {}, el("img", { src: url, alt: "" }), el("span", { text: `${i + 1}. ${file.name}` }), remove));
  });
  $("score-button").disabled = state.files.length === 0;
  $("clear-button").disabled = state.files.length === 0;
}

function addFiles(fileList) {
  hideError();
  const incoming = Array.from(fileList);
  const room = MAX_PHOTOS - state.files.length;
  if (incoming.length > room) showError(`An item takes at most ${MAX_PHOTOS} photos; ${incoming.length - Math.max(room, 0)} were not added.`);
  state.files.push(...incoming.slice(0, Math.max(room, 0)));
  renderSelected();
}

function showError(message) { $("error").textContent = message; $("error").hidden = false; }
function hideError() { $("error").hidden = true; $("error").textContent = ""; }

async function score() {
  hideError();
  $("score-button").disabled = true;
  $("busy").textContent = `Scoring ${state.files.length} photo(s)…`;
  const form = new FormData();
  for (const f of state.files) form.append("files", f, f.name);
  try {
    const r = await fetch("/v1/score?explain=true", { method: "POST", body: form, headers: headers() });
    const body = await r.json();
    if (!r.ok) {
      if (r.status === 401) $("key-row").hidden = false;
      const retry = r.headers.get("Retry-After");
      showError(`${body.error.message}${retry ? ` (retry in ${retry} s)` : ""} [${body.error.code}]`);
      return;
    }
    if (!state.model) await loadModel();
    renderResult(body);
  } catch (e) {
    showError(`The server could not be reached: ${e.message}`);
  } finally {
    $("busy").textContent = "";
    $("score-button").disabled = state.files.length === 0;
  }
}

function reasonText(code) {
  const text = state.reasons[code];
  if (code === "reused_photo" && (!text || text === code)) return REUSED_TEXT;
  return text || code.replaceAll("_", " ");
}

function renderResult(body) {
  const item = body.item;
  $("result").hidden = false;
  $("verdict").dataset.verdict = item.verdict;
  $("verdict-text").textContent = item.verdict.toUpperCase();
  $("verdict-explain").textContent = VERDICT_TEXT[item.verdict];
  $("auth-meter").value = item.authenticity_score;
  const noUsable = item.inconclusive_reasons.includes("no_usable_image");
  $("auth-score").textContent = pct(item.authenticity_score) + (noUsable ? " (from unusable photos only: do not rely on it)" : "");
  $("cf-score").textContent = pct(item.counterfeit_probability);
  if (state.model) {
    const d = state.model.decision;
    $("thresholds").textContent =
      `genuine if counterfeit probability ≤ ${pct(d.genuine_threshold)}, counterfeit if ≥ ${pct(d.counterfeit_threshold)}`;
  }
  const reasons = $("reasons");
  reasons.replaceChildren(...item.inconclusive_reasons.map((r) => el("li", {}, el("strong", { text: r.replaceAll("_", " ") }), `: ${reasonText(r)}`)));
  $("reasons-block").hidden = item.inconclusive_reasons.length === 0;

  const flags = $("flags");
  flags.replaceChildren(...item.flagged_features.map((f) => {
    const info = state.flagInfo[f.name];
    return el("li", {}, el("strong", { text: f.title }), ` ${pct(f.score)} on photo ${f.image_index + 1}`,
      info ? el("span", { class: "hint", text: ` · ${info.description}` }) : "");
  }));
  // A model trained without flag labels raises none: say so rather than "no tell was raised".
  const raisesNoFlags = state.model && state.model.flags.length === 0;
  $("no-flags").textContent = raisesNoFlags ? state.model.flags_note : NO_TELL_TEXT;
  $("no-flags").hidden = item.flagged_features.length !== 0;

  const reused = item.reused_images || [];
  $("reuse-note").hidden = reused.length === 0;
  $("reuse-note").textContent = reused.length === 0 ? "" :
    `Photo${reused.length > 1 ? "s" : ""} ${reused.map((i) => i + 1).join(", ")} ${reused.length > 1 ? "match" : "matches"} the reference gallery `
    + "(a catalogue or another listing's photo) and did not vote: they prove nothing about the item shipped.";
  const photos = $("photos");
  photos.replaceChildren(...body.images.map((im) => photoCard(im, item)));
  photos.classList.toggle("hide-maps", !$("show-maps").checked);

  const meta = $("answer-meta");
  const rows = [
    ["model", `${body.model.name} ${body.model.version}`],
    ["bundle sha256", body.model.bundle_sha256],
    ["request id", body.request_id],
    ["receipt key", item.receipt ? item.receipt.key_id : "none"],
    ["issued", item.receipt ? item.receipt.payload.issued_at : ""],
    ...body.images.map((im, i) => [`photo ${i + 1} sha256`, im.sha256]),
    ["time", `${body.timings.total_ms.toFixed(0)} ms`],
  ];
  meta.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  if (state.receiptUrl) URL.revokeObjectURL(state.receiptUrl);
  state.receiptUrl = URL.createObjectURL(new Blob([JSON.stringify(item.receipt, null, 2)], { type: "application/json" }));
  $("receipt-link").href = state.receiptUrl;
  $("result-heading").focus({ preventScroll: false });
}

function photoCard(im, item) {
  const ex = im.explanation;
  const frame = el("div", { class: "photo-frame" });
  const name = im.filename || `photo ${im.index + 1}`;
  if (ex) {
    frame.append(el("img", { src: `data:image/jpeg;base64,${ex.preview_jpeg_base64}`, alt: `Photo ${im.index + 1}: ${name}`, width: ex.width, height: ex.height }));
    frame.append(el("img", { class: "overlay", src: `data:image/png;base64,${ex.overlay_png_base64}`, alt: `Counterfeit-evidence map over photo ${im.index + 1}` }));
  }
  const boxes = item.flagged_features.filter((f) => f.image_index === im.index);
  for (const f of boxes) {
    const b = f.box;
    const box = el("div", { class: "box", title: `${f.title} ${pct(f.score)}` }, el("span", { text: f.title }));
    box.style.left = `${(100 * b.x0) / im.width}%`;
    box.style.top = `${(100 * b.y0) / im.height}%`;
    box.style.width = `${(100 * (b.x1 - b.x0)) / im.width}%`;
    box.style.height = `${(100 * (b.y1 - b.y0)) / im.height}%`;
    frame.append(box);
  }
  const lines = [
    el("p", {}, `Photo ${im.index + 1}: `, el("span", { class: `tag ${im.verdict}`, text: im.verdict }),
      ` · authenticity ${pct(im.authenticity_score)}`),
    el("p", { class: "hint", text: `${name} · ${im.width}×${im.height} ${im.format}${im.usable ? "" : " · not used for the item verdict"}` }),
  ];
  if (im.inconclusive_reasons.length) lines.push(el("p", { class: "hint", text: `Why: ${im.inconclusive_reasons.map(reasonText).join(" ")}` }));
  const reuse = im.reused_photo;
  if (reuse) {
    const how = reuse.similarity !== null ? `similarity ${reuse.similarity.toFixed(2)}` : `hash distance ${reuse.hash_distance}`;
    const seen = reuse.listings_seen > 1 ? ` Seen in ${reuse.listings_seen} listings by ${reuse.sellers_seen} seller(s)${reuse.widely_reused ? ": widely reused" : ""}.` : "";
    lines.push(el("p", { class: "reuse", "data-reference": String(reuse.reference_id),
      text: `Reused photo: matches gallery reference #${reuse.reference_id} (${reuse.kind}: ${reuse.source}${reuse.label ? `, ${reuse.label}` : ""}; ${how}).${seen}` }));
  }
  return el("li", { class: "photo-card" }, frame, ...lines);
}

function setup() {
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); addFiles(e.dataTransfer.files); });
  $("score-button").addEventListener("click", score);
  $("clear-button").addEventListener("click", () => { state.files = []; renderSelected(); $("result").hidden = true; hideError(); });
  $("show-maps").addEventListener("change", (e) => $("photos").classList.toggle("hide-maps", !e.target.checked));
  $("api-key").addEventListener("change", loadModel);
  $("result-heading").setAttribute("tabindex", "-1");
  loadModel();
}

document.addEventListener("DOMContentLoaded", setup);
