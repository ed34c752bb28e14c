// The JSON API this page shares with everyone else (/v1/…), on the page's own origin.

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `the server answered ${status}`);
    this.status = status;
    this.code = problem && problem.code;
  }
}

/**
 * GET a JSON resource; a problem+json answer becomes an ApiError carrying its detail.
 * A plain fetch (no extra headers), so the browser can answer it from the page's
 * <link rel=preload as=fetch> when the server named the same URL there.
 */
export async function getJSON(path, params, init = {}) {
  const url = params && [...params].length ? `${path}?${params}` : path;
  const r = await fetch(url, init);
  let body = null;
  try { body = await r.json(); } catch { /* not JSON */ }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

export const assetUrl = (did, key) => `/v1/assets/${encodeURIComponent(did)}/${encodeURIComponent(key)}`;
