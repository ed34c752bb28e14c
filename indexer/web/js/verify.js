// "Verify this record": check a signed entry's raw bytes here, in the browser, trusting no server.
//
//   (a) hash:      SHA-256 of the bytes equals the digest inside the entry id (CIDv1, dag-cbor,
//                  sha2-256) the indexer named;
//   (b) signature: Ed25519 over the canonical encoding without `sig`, by the `author` key inside
//                  the entry itself: WebCrypto's where the browser has it, else @noble/ed25519
//                  (../vendor/noble-ed25519.js, copied there by ./dev from the npm lock), loaded
//                  only then; where neither is here, the page says the signature was not checked;
//   (c) author:    that key, as a did:key (multicodec 0xed01 + base58btc), is the creator the page
//                  shows, and the entry's `key` is this asset's.
//
// The canonical encoding is deterministic CBOR (DESIGN.md): the bytes signed are the entry's map
// with the `sig` pair cut out and the map header's count one less. The small decoder below takes
// what entries hold (unsigned ints, byte and text strings, arrays, maps, null/true/false) and
// refuses the rest (floats, tags, indefinite lengths), as the protocol does.

export class CborError extends Error {}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function head(buf, at) {
  if (at >= buf.length) throw new CborError('truncated');
  const ib = buf[at];
  const major = ib >> 5;
  const info = ib & 31;
  let arg;
  let end = at + 1;
  if (info < 24) arg = info;
  else if (info <= 27) {
    const n = 1 << (info - 24);
    if (end + n > buf.length) throw new CborError('truncated');
    arg = 0;
    for (let i = 0; i < n; i++) arg = arg * 256 + buf[end + i];
    end += n;
  } else throw new CborError('indefinite length or reserved value');
  return { major, info, arg, end };
}

/** Decode the item at `at`: [value, end]. Maps become Maps with their pairs' byte ranges kept. */
export function decodeItem(buf, at = 0, depth = 0) {
  if (depth > 32) throw new CborError('nested too deep');
  const { major, info, arg, end } = head(buf, at);
  switch (major) {
    case 0: return [arg, end];
    case 1: return [-1 - arg, end];
    case 2:
    case 3: {
      if (end + arg > buf.length) throw new CborError('truncated');
      const s = buf.subarray(end, end + arg);
      return [major === 2 ? s : utf8.decode(s), end + arg];
    }
    case 4: {
      const out = [];
      let p = end;
      for (let i = 0; i < arg; i++) { const [v, e] = decodeItem(buf, p, depth + 1); out.push(v); p = e; }
      return [out, p];
    }
    case 5: {
      const out = new Map();
      out.pairs = [];
      let p = end;
      for (let i = 0; i < arg; i++) {
        const start = p;
        const [k, ke] = decodeItem(buf, p, depth + 1);
        const [v, ve] = decodeItem(buf, ke, depth + 1);
        out.set(k, v);
        out.pairs.push({ key: k, start, end: ve });
        p = ve;
      }
      return [out, p];
    }
    case 7:
      if (info === 20) return [false, end];
      if (info === 21) return [true, end];
      if (info === 22) return [null, end];
      throw new CborError('floats and other simple values are not allowed');
    default:
      throw new CborError('tags are not allowed');
  }
}

/** The shortest CBOR head for major type `major` and argument `n` (as deterministic CBOR wants). */
function encodeHead(major, n) {
  const mt = major << 5;
  if (n < 24) return Uint8Array.of(mt | n);
  if (n < 256) return Uint8Array.of(mt | 24, n);
  if (n < 65536) return Uint8Array.of(mt | 25, n >> 8, n & 255);
  return Uint8Array.of(mt | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255);
}

/** The entry map and the bytes its signature covers (the map without its `sig` pair). */
export function splitSigned(raw) {
  const [m, end] = decodeItem(raw, 0);
  if (end !== raw.length) throw new CborError('trailing bytes after the entry');
  if (!(m instanceof Map)) throw new CborError('the entry is not a CBOR map');
  const pairs = m.pairs.filter((p) => p.key !== 'sig');
  if (pairs.length !== m.pairs.length - 1) throw new CborError('the entry has no sig');
  const parts = [encodeHead(5, pairs.length), ...pairs.map((p) => raw.subarray(p.start, p.end))];
  const unsigned = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { unsigned.set(p, o); o += p.length; }
  return { entry: m, unsigned };
}

// -- identifiers -------------------------------------------------------------------------------

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base32Decode(s) {
  const out = [];
  let bits = 0;
  let value = 0;
  for (const ch of s) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new CborError('not base32');
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
  }
  return Uint8Array.from(out);
}

export function base58Encode(bytes) {
  let n = 0n;
  for (const b of bytes) n = n * 256n + BigInt(b);
  let s = '';
  while (n > 0n) { s = B58[Number(n % 58n)] + s; n /= 58n; }
  for (const b of bytes) { if (b !== 0) break; s = '1' + s; }
  return s;
}

/** The SHA-256 digest inside an entry id (CIDv1 base32: 0x01, dag-cbor 0x71, sha2-256 0x12, 32 bytes). */
export function cidDigest(cid) {
  if (typeof cid !== 'string' || cid[0] !== 'b') throw new CborError('not a base32 CIDv1');
  const b = base32Decode(cid.slice(1));
  if (b.length !== 36 || b[0] !== 0x01 || b[1] !== 0x71 || b[2] !== 0x12 || b[3] !== 0x20) {
    throw new CborError('not a dag-cbor sha2-256 CIDv1');
  }
  return b.subarray(4);
}

export const didOfKey = (pub) => `did:key:z${base58Encode(Uint8Array.of(0xed, 0x01, ...pub))}`;

const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Whether this browser's WebCrypto can verify Ed25519 signatures. */
export async function hasEd25519() {
  try {
    await crypto.subtle.importKey('raw', new Uint8Array(32), { name: 'Ed25519' }, false, ['verify']);
    return true;
  } catch {
    return false;
  }
}

// The fallback library, relative to this module (no import map: the CSP allows none).
export const FALLBACK_URL = new URL('../vendor/noble-ed25519.js', import.meta.url).href;

async function webCryptoVerify(pubBytes, sig, msg) {
  const pub = await crypto.subtle.importKey('raw', pubBytes, { name: 'Ed25519' }, false, ['verify']);
  return crypto.subtle.verify({ name: 'Ed25519' }, pub, sig, msg);
}

let fallback = null;

/** @noble/ed25519's verifyAsync (SHA-512 from WebCrypto), or null if this server does not ship it. */
function loadFallback() {
  fallback ??= import(FALLBACK_URL).then(
    // strict RFC 8032 checks (canonical encodings, no small-order keys), as libsodium does
    (ed) => (pub, sig, msg) => ed.verifyAsync(sig, msg, pub, { zip215: false }),
    () => { fallback = null; return null; },
  );
  return fallback;
}

/**
 * The Ed25519 verifier this browser has: {name, verify(pub, sig, msg) → Promise<boolean>},
 * WebCrypto's first, else the fallback library's; null when there is neither.
 */
export async function ed25519Verifier() {
  if (await hasEd25519()) return { name: 'WebCrypto', verify: webCryptoVerify };
  const lib = await loadFallback();
  return lib ? { name: '@noble/ed25519', verify: lib } : null;
}

/**
 * Check `raw` (the bytes served for entry `cid`) against what the page shows (`did`, `key`).
 * Returns {ok, checks: [{id, name, status: 'pass'|'fail'|'unchecked', detail}]}; ok only if all pass.
 */
export async function verifyEntry(raw, { cid, did, key }) {
  const checks = [];
  const add = (id, name, status, detail) => checks.push({ id, name, status, detail });

  // (a) the bytes are the entry the indexer named
  try {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', raw));
    const want = cidDigest(cid);
    if (same(digest, want)) add('hash', 'Entry hash', 'pass', `SHA-256 of the ${raw.length} bytes is ${hex(digest)}, as the entry id ${cid} says.`);
    else add('hash', 'Entry hash', 'fail', `SHA-256 of the ${raw.length} bytes is ${hex(digest)}, but the entry id ${cid} names ${hex(want)}.`);
  } catch (e) {
    add('hash', 'Entry hash', 'fail', `cannot check: ${e.message}`);
  }

  let entry = null;
  let unsigned = null;
  try {
    ({ entry, unsigned } = splitSigned(raw));
  } catch (e) {
    add('signature', 'Creator’s signature', 'fail', `the bytes are not a signed entry: ${e.message}`);
    add('author', 'Author and asset', 'fail', 'no entry to read the author from');
    return { ok: false, checks };
  }
  const author = entry.get('author');
  const sig = entry.get('sig');

  // (b) the signature, by the key inside the entry
  if (!(author instanceof Uint8Array) || author.length !== 32 || !(sig instanceof Uint8Array) || sig.length !== 64) {
    add('signature', 'Creator’s signature', 'fail', 'the entry has no 32-byte author key or no 64-byte sig');
  } else {
    const ed = await ed25519Verifier();
    if (ed === null) {
      add('signature', 'Creator’s signature', 'unchecked', 'this browser cannot check Ed25519 signatures (WebCrypto has no Ed25519 here, and this marketplace does not serve the fallback library): the signature was NOT checked.');
    } else {
      try {
        const good = await ed.verify(author, sig, unsigned);
        add('signature', 'Creator’s signature', good ? 'pass' : 'fail', good
          ? `a valid Ed25519 signature over the ${unsigned.length} canonical bytes without sig, by the entry’s author key (checked with ${ed.name}).`
          : `the Ed25519 signature does not match these bytes and the entry’s author key (checked with ${ed.name}).`);
      } catch (e) {
        add('signature', 'Creator’s signature', 'fail', `cannot check: ${e.message}`);
      }
    }
  }

  // (c) that author is the creator shown, and the entry is about this asset
  if (author instanceof Uint8Array && author.length === 32) {
    const signer = didOfKey(author);
    const problems = [];
    if (signer !== did) problems.push(`signed by ${signer}, not by the creator shown (${did})`);
    if (entry.get('key') !== key) problems.push(`the entry is about key “${entry.get('key')}”, not “${key}”`);
    add('author', 'Author and asset', problems.length ? 'fail' : 'pass', problems.length
      ? problems.join('; ')
      : `the author key is ${signer}, the creator shown, and the entry’s key is “${key}”.`);
  } else {
    add('author', 'Author and asset', 'fail', 'the entry has no author key');
  }
  return { ok: checks.every((c) => c.status === 'pass'), checks, entry };
}
