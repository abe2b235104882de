// authlens review queue: rank, open, decide, export case files. Everything comes from this server.
"use strict";

const state = { key: "", cursor: null, item: null, urls: [] };
// $, pct and el come from dom.js, loaded before this file.

function showError(message) { $("error").textContent = message; $("error").hidden = false; }
function hideError() { $("error").hidden = true; $("error").textContent = ""; }

async function api(path, options = {}) {
  const headers = { "X-API-Key": state.key, ...(options.headers || {}) };
  const resp = await fetch(path, { ...options, headers });
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try { const body = await resp.json(); message = body.error ? body.error.message : message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return resp;
}

async function signIn(event) {
  event.preventDefault();
  hideError();
  state.key = $("review-key").value.trim();
  try {
    const me = await (await api("/v1/review/me")).json();
    $("who").textContent = `Signed in as ${me.name} (${me.role})`;
    $("queue-panel").hidden = false;
    $("decide").hidden = me.role !== "investigator";
    await loadQueue(true);
  } catch (e) { showError(e.message); }
}

function filterParams() {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("filters")).entries()) {
    const value = String(v).trim();
    if (!value) continue;
    if (k === "since") params.set(k, `${value}T00:00:00Z`);
    else if (k === "until") {
      const d = new Date(`${value}T00:00:00Z`); d.setUTCDate(d.getUTCDate() + 1);
      params.set(k, d.toISOString());
    } else params.set(k, value);
  }
  params.set("limit", "25");
  return params;
}

async function loadQueue(reset) {
  hideError();
  const params = filterParams();
  if (!reset && state.cursor) params.set("cursor", state.cursor);
  try {
    const page = await (await api(`/v1/review/queue?${params}`)).json();
    if (reset) $("queue").replaceChildren();
    for (const it of page.items) $("queue").append(queueRow(it));
    state.cursor = page.next_cursor;
    $("more").hidden = !page.next_cursor;
    $("queue-empty").hidden = $("queue").children.length > 0;
  } catch (e) { showError(e.message); }
}

function queueRow(it) {
  const row = el("tr", { tabindex: "0", "data-id": String(it.id) },
    el("td", { text: pct(it.counterfeit_probability) }),
    el("td", {}, el("span", { class: `tag ${it.verdict}`, text: it.verdict })),
    el("td", { text: it.title || it.item_key }),
    el("td", { text: it.brand || "" }),
    el("td", { text: it.marketplace || "" }),
    el("td", { text: it.seller_id || "" }),
    el("td", { text: it.reasons.join(", ") }),
    el("td", { class: "status", text: it.status }));
  row.addEventListener("click", () => openItem(it.id));
  row.addEventListener("keydown", (e) => { if (e.key === "Enter") openItem(it.id); });
  return row;
}

function listingLink(url) {
  if (!url || !/^https?:\/\//.test(url)) return document.createTextNode(url || "-");
  return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: url });
}

function meta(item) {
  const rows = [
    ["Listing", listingLink(item.listing_url)], ["Title", item.title], ["Seller", item.seller_id],
    ["Marketplace", item.marketplace], ["Brand", item.brand], ["Category", item.category],
    ["Price", item.price != null ? `${item.price} ${item.currency || ""}` : null],
    ["Crawled", item.crawled_at], ["Scored", item.scored_at], ["Crawler", item.client_id],
    ["Model", item.model_sha256.slice(0, 16)], ["Status", item.status],
  ];
  const out = [];
  for (const [k, v] of rows) {
    out.push(el("dt", { text: k }));
    out.push(v instanceof Node ? el("dd", {}, v) : el("dd", { text: v == null || v === "" ? "-" : String(v) }));
  }
  return out;
}

async function photoCard(item, photo, result) {
  const frame = el("div", { class: "photo-frame" });
  if (photo.url) {
    const blob = await (await api(photo.url)).blob();
    const url = URL.createObjectURL(blob);
    state.urls.push(url);
    frame.append(el("img", { src: url, alt: `Photo ${photo.position + 1}` }));
  }
  if (result && result.explanation) {
    frame.append(el("img", { class: "overlay", alt: "", src: `data:image/png;base64,${result.explanation.overlay_png_base64}` }));
  }
  const flags = (result && result.flagged_features) || [];
  for (const f of flags) {
    if (!result.width || !result.height) continue;
    const b = f.box;
    const box = el("div", { class: "box" }, el("span", { text: f.title || f.name }));
    box.style.left = `${(100 * b.x0) / result.width}%`; box.style.top = `${(100 * b.y0) / result.height}%`;
    box.style.width = `${(100 * (b.x1 - b.x0)) / result.width}%`; box.style.height = `${(100 * (b.y1 - b.y0)) / result.height}%`;
    frame.append(box);
  }
  const caption = el("p", {}, el("span", { class: `tag ${result ? result.verdict : "inconclusive"}`, text: result ? result.verdict : "?" }),
    ` ${photo.sha256.slice(0, 12)}…` + (photo.reference_id != null ? ` · reused (gallery #${photo.reference_id})` : ""));
  return el("li", { class: "photo-card" }, frame, caption);
}

async function openItem(id) {
  hideError();
  for (const u of state.urls) URL.revokeObjectURL(u);
  state.urls = [];
  try {
    const item = await (await api(`/v1/review/items/${id}`)).json();
    state.item = item;
    for (const tr of $("queue").children) tr.classList.toggle("current", tr.dataset.id === String(id));
    const answerItem = item.answer.items[0].result;
    $("item-heading").textContent = `Item ${item.id}: ${item.title || item.item_key}`;
    const v = $("item-verdict");
    v.dataset.verdict = item.verdict;
    v.replaceChildren(el("p", { class: "verdict-label" }, el("strong", { text: item.verdict }),
      ` · counterfeit probability ${pct(item.counterfeit_probability)}` + (item.reasons.length ? ` · ${item.reasons.join(", ")}` : "")));
    $("item-meta").replaceChildren(...meta(item));
    const cards = await Promise.all(item.photos.map((p) => photoCard(item, p, (item.answer.results[p.position] || {}).result)));
    $("item-photos").replaceChildren(...cards);
    $("item-flags").replaceChildren(...(answerItem.flagged_features.length
      ? answerItem.flagged_features.map((f) => el("li", { text: `${f.title}: ${pct(f.score)} (photo ${f.image_index + 1})` }))
      : [el("li", { text: "No tell raised." })]));
    $("item-receipt").textContent = JSON.stringify(item.receipt, null, 2);
    renderHistory(item.decisions);
    $("note").value = "";
    $("saved").textContent = "";
    $("item").hidden = false;
    $("item-heading").focus();
  } catch (e) { showError(e.message); }
}

function renderHistory(decisions) {
  $("history").replaceChildren(...(decisions.length ? decisions.map((d) => el("li", {
    text: `${d.decided_at}: ${d.reviewer} (${d.role}) ${d.previous_status} → ${d.status}${d.note ? ` “${d.note}”` : ""}`,
  })) : [el("li", { text: "No decision yet." })]));
}

async function decide(event) {
  event.preventDefault();
  hideError();
  const choice = new FormData($("decide")).get("status");
  if (!choice) { showError("Choose confirmed counterfeit, confirmed genuine or unsure."); return; }
  try {
    const resp = await api(`/v1/review/items/${state.item.id}/decisions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ status: choice, note: $("note").value }),
    });
    const d = await resp.json();
    state.item.decisions.push(d);
    renderHistory(state.item.decisions);
    $("saved").textContent = `Saved: ${d.status}`;
    const row = $("queue").querySelector(`tr[data-id="${state.item.id}"] .status`);
    if (row) row.textContent = d.status;
  } catch (e) { showError(e.message); }
}

async function download(path, name) {
  hideError();
  try {
    const blob = await (await api(path)).blob();
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { showError(e.message); }
}

async function openSeller() {
  hideError();
  const seller = state.item && state.item.seller_id;
  if (!seller) { showError("This listing names no seller."); return; }
  try {
    const s = await (await api(`/v1/review/sellers/${encodeURIComponent(seller)}`)).json();
    $("seller-heading").textContent = `Seller ${s.seller_id}`;
    const t = s.totals;
    $("seller-totals").textContent = `${t.listings} listings, ${t.suspect} suspect, ${t.confirmed_counterfeit} confirmed counterfeit, ${t.confirmed_genuine} confirmed genuine.`;
    $("seller-series").replaceChildren(...s.series.map((p) => el("tr", {},
      ...[p.period, p.listings, p.suspect, p.confirmed_counterfeit, p.confirmed_genuine].map((x) => el("td", { text: String(x) })))));
    $("seller-linked").replaceChildren(...(s.linked.length ? s.linked.map((l) => el("li", {
      text: `${l.seller_id}: ${l.shared_photos} shared photo(s) (${l.via.join(", ")})`,
    })) : [el("li", { text: "None found." })]));
    $("seller").hidden = false;
    $("seller").dataset.seller = s.seller_id;
  } catch (e) { showError(e.message); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", signIn);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadQueue(true); });
  $("more").addEventListener("click", () => loadQueue(false));
  $("decide").addEventListener("submit", decide);
  $("show-maps").addEventListener("change", (e) => $("item-photos").classList.toggle("hide-maps", !e.target.checked));
  $("case-item").addEventListener("click", () => download(`/v1/review/items/${state.item.id}/case`, `case-item-${state.item.id}.zip`));
  $("open-seller").addEventListener("click", openSeller);
  $("case-seller").addEventListener("click", () => {
    const s = $("seller").dataset.seller;
    download(`/v1/review/sellers/${encodeURIComponent(s)}/case`, `case-seller-${s}.zip`);
  });
});
