// An asset's page: /a/{did}/{key}. Its fields, creator, versions, on-chain state, files, and
// "Verify this record" (verify.js). A deleted or moderated asset shows only that it is not available.

import { startActivity } from './activity.js';
import { ApiError, assetUrl, getJSON } from './api.js';
import { $, bytes, fill, h, price, when } from './dom.js';
import { verifyEntry } from './verify.js';

const main = $('#main');
const status = $('#status');
const article = $('#asset');

function whichAsset() {
  const m = /^\/a\/([^/]+)\/([^/]+)\/?$/.exec(location.pathname);
  if (!m) return null;
  try { return { did: decodeURIComponent(m[1]), key: decodeURIComponent(m[2]) }; } catch { return null; }
}

function unavailable(title, why) {
  article.hidden = true;
  article.replaceChildren();
  document.title = `${title} · Empressa`;
  fill(status, h('strong', {}, title), ' ', why, ' ', h('a', { href: '/' }, 'Back to search'));
  status.dataset.state = 'unavailable';
}

function section(title, ...body) {
  const id = `s-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return h('section', { 'aria-labelledby': id, class: 'panel' }, h('h2', { id }, title), ...body);
}

function facts(rows) {
  return h('dl', { class: 'facts' }, rows.filter((r) => r && r[1] !== null && r[1] !== undefined && r[1] !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function table(caption, head, rows) {
  if (!rows.length) return null;
  // A table wider than a phone scrolls sideways: the region takes focus, so the keyboard can scroll it too.
  return h('div', { class: 'scroll', role: 'region', 'aria-label': caption, tabindex: '0' }, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

const code = (s) => h('code', { class: 'id' }, s);

function render(a, history) {
  document.title = `${a.title || a.key} · Empressa`;
  const lic = a.license || {};
  const creatorLink = h('a', { href: `/?creator=${encodeURIComponent(a.did)}` }, a.did);
  const verify = h('button', { type: 'button', id: 'verify', class: 'primary' }, 'Verify this record');
  const result = h('div', { id: 'verify-result', 'aria-live': 'polite' });
  verify.addEventListener('click', () => runVerify(a, verify, result));

  const onchain = (a.registrations || []).map((r) => [r.chain, r.asset_id, code(r.owner), code(r.tx), String(r.block), r.status]);
  const payments = (a.payments || []).map((p) => [p.chain, p.status, code(p.buyer), `${p.amount} ${p.asset}`, p.at || '']);
  const files = (a.media_files || []).map((f) => [
    f.role, code(f.cid), f.mime, bytes(f.size),
    f.pin_status || 'not pinned by this operator',
    h('a', { href: f.gateway_url, rel: 'noopener noreferrer' }, 'open'),
  ]);
  const versions = (history.versions || []).map((v) => h('li', {},
    h('strong', {}, `v${v.version}`), ` ${v.kind === 'asset.delete' ? 'deleted' : (v.body && v.body.title) || ''} `,
    h('span', { class: 'muted' }, `· ${when(v.ts)} · seq ${v.seq} · `), code(v.hash)));

  fill(article,
    h('header', { class: 'asset-head' },
      h('h1', {}, a.title || a.key),
      h('p', { class: 'creator' }, 'by ', creatorLink),
      a.tags && a.tags.length ? h('ul', { class: 'tags', 'aria-label': 'Tags' },
        a.tags.map((t) => h('li', {}, h('a', { href: `/?tag=${encodeURIComponent(t)}` }, t)))) : null),
    a.description ? h('p', { class: 'description' }, a.description) : null,
    section('Verify this record',
      h('p', {}, 'Check here, in your browser, that these are the creator’s own signed bytes — no need to trust this server.'),
      verify, result),
    section('Details', facts([
      ['License', lic.type || 'none'],
      ['Price', price(a.price, a.currency)],
      ['Terms', lic.terms],
      ['Media type', a.media ? a.media.mime : a.media_type],
      ['Size', a.media ? bytes(a.media.size) : null],
      ['Duration', a.media && a.media.duration_ms ? `${(a.media.duration_ms / 1000).toFixed(1)} s` : null],
      ['Published', when(a.created_ts)],
      ['Updated', when(a.updated_ts)],
      ['Versions', String(a.versions)],
      ['Asset', code(a.uri)],
      ['Entry', code(a.entry_hash)],
      ['Payout (EVM)', a.payout && a.payout.evm ? code(a.payout.evm) : null],
      ['Payout (Stellar)', a.payout && a.payout.stellar ? code(a.payout.stellar) : null],
    ])),
    section('On chain',
      facts([['Status', a.chain_status], ['Licenses sold', String(a.licenses || 0)]]),
      table('Registrations', ['Chain', 'Asset id', 'Owner', 'Transaction', 'Block', 'Status'], onchain) ||
        h('p', { class: 'muted' }, 'Not registered on any chain.'),
      table('Payments', ['Network', 'Status', 'Buyer', 'Amount', 'When'], payments)),
    section('Files', table('Media files and their pins', ['Role', 'CID', 'Type', 'Size', 'Pin', 'Gateway'], files) ||
      h('p', { class: 'muted' }, 'No files.')),
    section('Versions', h('ol', { class: 'versions' }, versions)));
  article.hidden = false;
  status.replaceChildren();
  status.dataset.state = 'ready';
  performance.mark('asset-rendered');
}

async function runVerify(a, button, out) {
  button.disabled = true;
  fill(out, 'Checking…');
  out.dataset.state = 'running';
  try {
    // no-store: check the bytes as served now, not a copy the browser kept
    const r = await fetch(`/v1/entries/${encodeURIComponent(a.entry_hash)}`, { cache: 'no-store' });
    if (!r.ok) throw new Error(`the server answered ${r.status}`);
    const raw = new Uint8Array(await r.arrayBuffer());
    const v = await verifyEntry(raw, { cid: a.entry_hash, did: a.did, key: a.key });
    const unchecked = v.checks.some((c) => c.status === 'unchecked');
    const verdict = v.ok ? 'Verified: these are the creator’s signed bytes.'
      : unchecked ? 'Not fully verified: see below.' : 'Verification FAILED: do not trust this record.';
    fill(out,
      h('p', { class: `verdict ${v.ok ? 'pass' : 'fail'}`, id: 'verdict' }, verdict),
      h('ul', { class: 'checks' }, v.checks.map((c) => h('li', { class: `check ${c.status}`, dataset: { check: c.id, status: c.status } },
        h('span', { class: 'mark', 'aria-hidden': 'true' }, c.status === 'pass' ? '✓' : c.status === 'fail' ? '✗' : '?'),
        h('strong', {}, `${c.name}: ${c.status === 'pass' ? 'pass' : c.status === 'fail' ? 'fail' : 'not checked'}`),
        ' — ', c.detail))));
    out.dataset.state = v.ok ? 'pass' : 'fail';
  } catch (e) {
    fill(out, h('p', { class: 'verdict fail', id: 'verdict' }, `Verification FAILED: cannot fetch the record (${e.message}).`));
    out.dataset.state = 'fail';
  } finally {
    button.disabled = false;
  }
}

async function load() {
  const which = whichAsset();
  if (!which) return unavailable('No such asset.', 'This address names no asset.');
  let a;
  let history;
  try {
    a = await getJSON(assetUrl(which.did, which.key));
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 400)) {
      return unavailable('Asset not found.', 'No asset by that creator and key is known here.');
    }
    return unavailable('Asset not available.', `The marketplace cannot load it now (${e.message}).`);
  }
  if (a.deleted) return unavailable('This asset is not available.', 'Its creator deleted it.');
  if (a.hidden) return unavailable('This asset is not available.', 'It was removed from the marketplace by moderation.');
  try {
    history = await getJSON(`${assetUrl(which.did, which.key)}/history`);
  } catch {
    history = { versions: [] };
  }
  render(a, history);
  shown = a;
}

let shown = null; // the asset on the page, once rendered

function onEvent(kind, row) {
  const a = shown;
  if (!a || row.uri !== a.uri) return;
  if (kind === 'deleted') unavailable('This asset is not available.', 'Its creator deleted it just now.');
  else if (kind === 'moderated') unavailable('This asset is not available.', 'It was removed from the marketplace by moderation.');
  else if (kind === 'updated') {
    const note = h('p', { class: 'notice', role: 'status' }, 'A newer version was published. ', h('a', { href: location.pathname }, 'Reload'));
    main.prepend(note);
  }
}

startActivity(onEvent);
load();
