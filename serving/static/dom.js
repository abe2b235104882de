// authlens pages' shared helpers: element lookup, percentages, element building. Loaded first.
"use strict";

const $ = (id) => document.getElementById(id);
const pct = (p) => `${(p * 100).toFixed(1)} %`;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
