// The marketplace's search page: GET /v1/assets with facets, as you type; the URL holds the search.

import { startActivity } from './activity.js';
import { ApiError, getJSON } from './api.js';
import { $, assetPath, debounce, fill, h, parseUri, price, shortDid } from './dom.js';

const PAGE = 20;
const FACETS = [
  // [facet name in the API answer, query parameter, legend, several at once?]
  ['license', 'license', 'License', false],
  ['tag', 'tag', 'Tag', true],
  ['media_type', 'media_type', 'Media type', false],
  ['creator', 'creator', 'Creator', false],
];
const SINGLE = ['q', 'sort', 'license', 'creator', 'media_type', 'min_price', 'max_price'];

const els = {
  form: $('#search'), q: $('#q'), sort: $('#sort'), min: $('#min_price'), max: $('#max_price'),
  facets: $('#facets'), status: $('#status'), error: $('#error'), results: $('#results'),
  more: $('#more'), clear: $('#clear'),
};

// What is searched: read from the URL at start, written back on every search.
const state = { tag: [] };
let generation = 0; // a newer search makes the answers of older ones moot
let next = null; // the cursor of the next page
let total = 0;
const shown = new Set(); // uris on the page

function readUrl() {
  const p = new URLSearchParams(location.search);
  for (const k of SINGLE) state[k] = p.get(k) || '';
  state.tag = p.getAll('tag').filter(Boolean);
  els.q.value = state.q;
  els.sort.value = state.sort;
  els.min.value = state.min_price;
  els.max.value = state.max_price;
}

function params() {
  const p = new URLSearchParams();
  for (const k of SINGLE) if (state[k]) p.set(k, state[k]);
  for (const t of state.tag) p.append('tag', t);
  return p;
}

function writeUrl() {
  const qs = params().toString();
  history.replaceState(null, '', qs ? `/?${qs}` : '/');
}

async function search() {
  const my = ++generation;
  writeUrl();
  const p = params();
  p.set('facets', 'true');
  p.set('limit', String(PAGE));
  els.results.setAttribute('aria-busy', 'true');
  try {
    const page = await getJSON('/v1/assets', p);
    if (my !== generation) return;
    hideError();
    shown.clear();
    fill(els.results, page.items.map((item) => { shown.add(item.uri); return card(item); }));
    total = page.total;
    next = page.next_cursor;
    renderFacets(page.facets || {});
    renderStatus();
    if (!performance.getEntriesByName('results-rendered').length) performance.mark('results-rendered');
  } catch (e) {
    if (my !== generation) return;
    showError(e);
  } finally {
    if (my === generation) els.results.removeAttribute('aria-busy');
  }
}

async function more() {
  if (!next) return;
  const my = generation;
  const p = params();
  p.set('limit', String(PAGE));
  p.set('cursor', next);
  els.more.disabled = true;
  try {
    const page = await getJSON('/v1/assets', p);
    if (my !== generation) return;
    const first = els.results.children.length;
    for (const item of page.items) {
      if (shown.has(item.uri)) continue; // already here (it arrived live)
      shown.add(item.uri);
      els.results.append(card(item));
    }
    next = page.next_cursor;
    renderStatus();
    const link = els.results.children[first] && els.results.children[first].querySelector('a');
    if (link) link.focus({ preventScroll: false }); // keyboard users continue where the new page starts
  } catch (e) {
    if (my === generation) showError(e);
  } finally {
    els.more.disabled = false;
  }
}

function card(item, fresh = false) {
  const a = item.did && item.key ? { did: item.did, key: item.key } : parseUri(item.uri);
  const title = item.title || (a ? a.key : item.uri);
  const meta = [
    item.media_type,
    item.license,
    item.license || item.price ? price(item.price, item.currency) : null,
  ].filter(Boolean).join(' · ');
  return h('li', { class: 'card', dataset: { uri: item.uri } },
    h('h3', {}, a ? h('a', { href: assetPath(a.did, a.key) }, title) : title, fresh ? h('span', { class: 'badge' }, 'new') : null),
    h('p', { class: 'creator' }, 'by ', h('span', { title: item.did || '' }, shortDid(item.did))),
    meta ? h('p', { class: 'meta' }, meta) : null,
    item.tags && item.tags.length ? h('ul', { class: 'tags', 'aria-label': 'Tags' }, item.tags.map((t) => h('li', {}, t))) : null);
}

function renderStatus() {
  const n = els.results.children.length;
  fill(els.status, total === 0 ? 'No assets match.' : `${total} ${total === 1 ? 'asset matches' : 'assets match'}; showing ${n}.`);
  els.status.dataset.total = String(total);
  els.status.dataset.shown = String(n);
  els.more.hidden = !next;
}

function renderFacets(facets) {
  const groups = [];
  for (const [name, param, legend, multi] of FACETS) {
    const chosen = multi ? state[param] : state[param] ? [state[param]] : [];
    const buckets = [...(facets[name] || [])];
    for (const v of chosen) if (!buckets.some((b) => b.value === v)) buckets.push({ value: v, count: 0 });
    if (!buckets.length) continue;
    groups.push(h('fieldset', { class: 'facet', dataset: { facet: name } },
      h('legend', {}, legend),
      h('ul', {}, buckets.map((b, i) => {
        const id = `f-${name}-${i}`;
        const label = name === 'creator' ? shortDid(b.value) : b.value;
        return h('li', {},
          h('input', {
            type: 'checkbox', id, name: param, value: b.value, checked: chosen.includes(b.value),
            onchange: (ev) => choose(param, multi, b.value, ev.target.checked),
          }),
          h('label', { for: id, title: name === 'creator' ? b.value : null },
            h('span', { class: 'facet-value' }, label), ' ', h('span', { class: 'count' }, String(b.count))));
      }))));
  }
  fill(els.facets, groups);
}

function choose(param, multi, value, on) {
  if (multi) state[param] = on ? [...new Set([...state[param], value])] : state[param].filter((v) => v !== value);
  else state[param] = on ? value : '';
  search().then(() => {
    // the facet list was rebuilt: keep keyboard focus on the same checkbox
    const again = [...els.facets.querySelectorAll('input')].find((i) => i.name === param && i.value === value);
    if (again) again.focus();
  });
}

function showError(e) {
  const detail = e instanceof ApiError ? e.message : 'the marketplace cannot be reached; try again in a moment';
  fill(els.error, `Search failed: ${detail}`);
  els.error.hidden = false;
  if (e instanceof ApiError && e.status === 400) {
    // this search has no answer: show none rather than the previous search's results
    els.results.replaceChildren();
    shown.clear();
    next = null;
    total = 0;
    fill(els.status, '');
    els.more.hidden = true;
  }
}

function hideError() { els.error.hidden = true; }

// -- live: a delete or a moderation removes the asset, a new one is shown once search has it -----

function onEvent(kind, row) {
  if (kind === 'deleted' || kind === 'moderated') {
    const li = [...els.results.children].find((el) => el.dataset.uri === row.uri);
    if (li) {
      li.remove();
      shown.delete(row.uri);
      total = Math.max(0, total - 1);
      renderStatus();
    }
  } else if (kind === 'published' || kind === 'updated') {
    // A burst (a catalogue of a thousand) is one wait and one refresh, not one per event.
    waiting.set(row.did, Math.max(waiting.get(row.did) || 0, row.seq || 0));
    if (kind === 'updated') updatedUris.add(row.uri);
    if (!draining) drain();
  }
}

const waiting = new Map(); // creator -> the highest seq an event named, not yet searched for
const updatedUris = new Set();
let draining = false;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function drain() {
  draining = true;
  try {
    while (waiting.size) {
      await sleep(200); // let a burst gather
      const batch = [...waiting].slice(0, 10); // a few creators waited for; the refresh shows everyone's
      waiting.clear();
      for (const [did, seq] of batch) await whenSearchable(did, seq);
      const updated = new Set(updatedUris);
      updatedUris.clear();
      await refresh(updated);
    }
  } finally {
    draining = false;
  }
}

/** Resolves once this API server's search reflects the creator's log up to `seq` (or gives up). */
async function whenSearchable(did, seq) {
  for (let i = 0; i < 40; i++) {
    try {
      const c = await getJSON(`/v1/creators/${encodeURIComponent(did)}`);
      if (c.searchable !== false && c.head && c.head.seq >= seq) return;
    } catch { /* try again */ }
    await sleep(250);
  }
}

/** The first page again: new matches go on top (marked), updated ones are redrawn in place. */
async function refresh(updated) {
  const my = generation;
  const p = params();
  p.set('limit', String(PAGE));
  try {
    const page = await getJSON('/v1/assets', p);
    if (my !== generation) return;
    const fresh = [];
    for (const item of page.items) {
      const old = [...els.results.children].find((el) => el.dataset.uri === item.uri);
      if (old && updated.has(item.uri)) old.replaceWith(card(item));
      else if (!old) { shown.add(item.uri); fresh.push(card(item, true)); }
    }
    els.results.prepend(...fresh);
    total = page.total;
    renderStatus();
  } catch { /* the next event or search tries again */ }
}

// -- wiring --------------------------------------------------------------------------------------

const typed = debounce(() => search(), 200);
els.form.addEventListener('submit', (ev) => { ev.preventDefault(); state.q = els.q.value.trim(); search(); });
els.q.addEventListener('input', () => { state.q = els.q.value.trim(); typed(); });
els.sort.addEventListener('change', () => { state.sort = els.sort.value; search(); });
for (const [el, k] of [[els.min, 'min_price'], [els.max, 'max_price']]) {
  el.addEventListener('input', () => { state[k] = el.validity.valid ? el.value : ''; typed(); });
}
els.more.addEventListener('click', more);
els.clear.addEventListener('click', () => {
  for (const k of SINGLE) if (k !== 'q' && k !== 'sort') state[k] = '';
  state.tag = [];
  els.min.value = els.max.value = '';
  search();
});

// On a phone the filters start folded (results first); from 40rem up they are always open.
const wide = matchMedia('(min-width: 40.01rem)');
const filterBox = $('#filter-box');
const fold = () => { filterBox.open = wide.matches || filterBox.dataset.touched === 'yes'; };
filterBox.querySelector('summary').addEventListener('click', () => { filterBox.dataset.touched = 'yes'; });
wide.addEventListener('change', fold);
fold();

readUrl();
search();
startActivity(onEvent);
