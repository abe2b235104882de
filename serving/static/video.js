// authlens recorded-stream page: upload a recording, poll its job, jump to suspect moments.
"use strict";

const POLL_MS = 400;
const state = { file: null, url: null, report: null, lastSuspect: -1 };
// $, pct and el come from dom.js, loaded before this file.

function clock(s) {
  const m = Math.floor(s / 60);
  const sec = (s - 60 * m).toFixed(1).padStart(4, "0");
  return `${m}:${sec}`;
}

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function showError(message) { $("error").textContent = message; $("error").hidden = false; }
function hideError() { $("error").hidden = true; $("error").textContent = ""; }

function choose(file) {
  hideError();
  if (!file) return;
  state.file = file;
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = URL.createObjectURL(file);
  $("player").src = state.url;
  $("player-panel").hidden = false;
  $("chosen").textContent = `${file.name} · ${(file.size / 1e6).toFixed(1)} MB`;
  $("score-button").disabled = false;
  $("report").hidden = true;
}

async function errorText(r) {
  try {
    const body = await r.json();
    const retry = r.headers.get("Retry-After");
    return `${body.error.message}${retry ? ` (retry in ${retry} s)` : ""} [${body.error.code}]`;
  } catch (e) {
    return `HTTP ${r.status}`;
  }
}

async function submit() {
  hideError();
  $("score-button").disabled = true;
  $("busy").textContent = "Uploading…";
  $("progress").hidden = false;
  $("progress").value = 0;
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  try {
    const r = await fetch("/v1/score/video", { method: "POST", body: form, headers: headers() });
    if (r.status === 401) $("key-row").hidden = false;
    if (r.status !== 202) { showError(await errorText(r)); return; }
    const job = await r.json();
    await poll(job.status_url);
  } catch (e) {
    showError(`The server could not be reached: ${e.message}`);
  } finally {
    $("busy").textContent = "";
    $("progress").hidden = true;
    $("score-button").disabled = !state.file;
  }
}

async function poll(url) {
  for (;;) {
    const r = await fetch(url, { headers: headers() });
    if (!r.ok) { showError(await errorText(r)); return; }
    const job = await r.json();
    $("progress").value = job.progress;
    if (job.status === "queued") $("busy").textContent = `Waiting for a free slot (${job.queue_position} ahead)…`;
    if (job.status === "running") $("busy").textContent = `Scoring: ${clock(job.processed_s)} of ${clock(job.duration_s)}`;
    if (job.status === "failed") { showError(`${job.error.message} [${job.error.code}]`); return; }
    if (job.status === "done") { render(job.report); return; }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function jump(seconds) {
  const player = $("player");
  player.currentTime = seconds;
  player.dataset.jumped = String(seconds);
  player.scrollIntoView({ block: "nearest" });
}

function render(report) {
  state.report = report;
  state.lastSuspect = -1;
  const suspects = report.suspect_segments.length;
  $("summary").textContent =
    `${report.segments.length} segments in ${clock(report.video.duration_s)} (${report.video.container}, `
    + `${report.video.width}×${report.video.height}); ${suspects} judged counterfeit. `
    + `${report.sampling.frames_scored} frames scored at ${report.sampling.sample_fps} per second, `
    + `${report.processing.realtime_factor.toFixed(1)}× real time. Model ${report.model.name} ${report.model.version}.`;
  $("stopped").hidden = report.complete;
  $("stopped").textContent = report.complete ? "" : `Stopped at ${clock(report.stopped_at_s)}: ${report.stop_reason}. The segments before it were scored.`;
  $("next-suspect").disabled = suspects === 0;
  $("timeline").src = `data:image/png;base64,${report.timeline_png_base64}`;
  $("segments").replaceChildren(...report.segments.map(segmentRow));
  $("report").hidden = false;
  $("report-heading").focus();
}

function segmentRow(seg) {
  const button = el("button", { type: "button", class: "secondary jump", text: `Jump to ${clock(seg.start_s)}` });
  button.addEventListener("click", () => jump(seg.start_s));
  const flags = seg.flagged_features.map((f) => `${f.title} ${pct(f.score)} at ${clock(f.time_s)}`).join("; ");
  const lines = [
    el("p", {}, el("span", { class: `tag ${seg.verdict}`, text: seg.verdict }),
      ` ${clock(seg.start_s)}–${clock(seg.end_s)} · authenticity ${pct(seg.authenticity_score)}`),
    el("p", { class: "hint", text: `${seg.frames_usable} of ${seg.frames_scored} frames voted`
      + (seg.inconclusive_reasons.length ? ` · why: ${seg.inconclusive_reasons.join(", ").replaceAll("_", " ")}` : "")
      + (flags ? ` · flags: ${flags}` : "") }),
    button,
  ];
  const thumb = el("img", { src: `data:image/jpeg;base64,${seg.thumbnail_jpeg_base64}`,
    alt: `Most suspect frame of segment ${seg.index + 1}, at ${clock(seg.suspect_frame_s)}` });
  return el("li", { class: `segment ${seg.verdict}`, "data-start": String(seg.start_s) }, thumb, el("div", {}, ...lines));
}

function nextSuspect() {
  const r = state.report;
  if (!r || r.suspect_segments.length === 0) return;
  state.lastSuspect = (state.lastSuspect + 1) % r.suspect_segments.length;
  jump(r.segments[r.suspect_segments[state.lastSuspect]].start_s);
}

function timelineClick(e) {
  const r = state.report;
  if (!r) return;
  const img = $("timeline");
  const frac = (e.offsetX / img.clientWidth - 4 / 960) / (952 / 960);
  const span = Math.max(r.video.duration_s, ...r.timeline.map((p) => p.time_s), 1e-3);
  jump(Math.min(span, Math.max(0, frac * span)));
}

function setup() {
  const zone = $("drop-zone");
  $("video-input").addEventListener("change", (e) => choose(e.target.files[0]));
  for (const type of ["dragenter", "dragover"]) zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); choose(e.dataTransfer.files[0]); });
  $("score-button").addEventListener("click", submit);
  $("next-suspect").addEventListener("click", nextSuspect);
  $("timeline").addEventListener("click", timelineClick);
}

document.addEventListener("DOMContentLoaded", setup);
