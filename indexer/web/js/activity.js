// The live activity strip: GET /v1/events (Server-Sent Events), the newest few shown at the top.
// The browser's EventSource reconnects by itself and resumes with Last-Event-ID.

import { $, assetPath, fill, h, parseUri } from './dom.js';

export const KINDS = ['published', 'updated', 'deleted', 'registered', 'licensed', 'moderated'];
const SHOWN = ['published', 'updated', 'deleted', 'registered', 'licensed'];
const KEEP = 6;

/** Start the stream; `onEvent(kind, row)` is called for every activity row of KINDS. */
export function startActivity(onEvent = () => {}) {
  const list = $('#activity-list');
  const state = $('#activity-state');
  if (!('EventSource' in window)) {
    fill(state, 'live activity needs a newer browser');
    return null;
  }
  const es = new EventSource('/v1/events');
  es.onopen = () => { fill(state, 'live'); state.dataset.state = 'live'; };
  es.onerror = () => { fill(state, 'reconnecting…'); state.dataset.state = 'down'; };
  for (const kind of KINDS) {
    es.addEventListener(kind, (ev) => {
      let row;
      try { row = JSON.parse(ev.data); } catch { return; }
      if (SHOWN.includes(kind)) show(list, kind, row);
      onEvent(kind, row);
    });
  }
  addEventListener('pagehide', () => es.close());
  return es;
}

function show(list, kind, row) {
  const a = parseUri(row.uri);
  const name = (row.data && row.data.title) || (a ? a.key : row.uri || '');
  const item = h('li', { class: `ev ev-${kind}`, dataset: { kind } },
    h('span', { class: 'ev-kind' }, kind),
    ' ',
    a ? h('a', { href: assetPath(a.did, a.key) }, name) : name);
  list.prepend(item);
  while (list.children.length > KEEP) list.lastElementChild.remove();
}
