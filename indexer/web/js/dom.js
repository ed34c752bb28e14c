// Building the page from data: every text goes in through textContent (never innerHTML), every
// link through safeHref. Titles, tags and descriptions are written by anyone; nothing here can
// turn them into markup.

/** An element: h('a', {href: '/x', class: 'c'}, 'text', child, …). Null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'href') el.setAttribute('href', safeHref(v));
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Only same-origin paths and http(s) URLs become links; anything else (javascript:, data:) is dropped. */
export function safeHref(v) {
  const s = String(v);
  if (s.startsWith('/') && !s.startsWith('//')) return s;
  try {
    const u = new URL(s);
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
  } catch { /* not a URL */ }
  return '#';
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** The page path of an asset, from its did and key. */
export const assetPath = (did, key) =>
  `/a/${encodeURIComponent(did).replace(/%3A/g, ':')}/${encodeURIComponent(key)}`;

/** {did, key} of an `empressa://{did}/{key}` URI, or null. */
export function parseUri(uri) {
  const m = /^empressa:\/\/(did:key:[1-9A-HJ-NP-Za-km-z]+)\/([A-Za-z0-9._~-]{1,64})$/.exec(uri || '');
  return m ? { did: m[1], key: m[2] } : null;
}

/** did:key:z6Mkabc…wxyz, for people; the full text stays in a title attribute. */
export const shortDid = (did) => (did && did.length > 24 ? `${did.slice(0, 16)}…${did.slice(-6)}` : did || '');

export function when(ms) {
  if (typeof ms !== 'number') return '';
  const d = new Date(ms);
  return isNaN(d) ? '' : d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

export function bytes(n) {
  if (typeof n !== 'number') return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function price(amount, currency) {
  return amount ? `${amount} ${currency || ''}`.trim() : 'free';
}

/** Call fn at most once per `ms` of quiet. */
export function debounce(fn, ms) {
  let t = 0;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}
