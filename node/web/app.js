// My Library: the creator's own page, served by their node. Plain ES module, no build step.
// Every value from the node (titles of replicated assets included) goes into the DOM with
// textContent, never as markup.

const FIELDS = ["key", "title", "description", "tags", "license", "price", "currency", "terms",
  "cid", "mime", "size", "duration_ms", "payout_evm", "payout_stellar"];
const NUMBERS = new Set(["size", "duration_ms"]);

const $ = (id) => document.getElementById(id);
// confirming: the key whose Delete was pressed once and now asks "Really delete?"; kept here, not
// on the button, so a live update that re-renders the list keeps the question (and the focus).
const state = { csrf: null, did: null, items: [], editing: null, all: false, confirming: null };

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!r.ok) throw Object.assign(new Error(`${path}: ${r.status}`), { status: r.status });
  return r.json();
}

async function send(method, path, body) {
  const headers = { "X-CSRF-Token": state.csrf || "" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let doc = {};
  try { doc = await r.json(); } catch { doc = {}; }
  return { ok: r.ok, status: r.status, doc };
}

function say(text) { $("notice").textContent = text; }

// -- the session ------------------------------------------------------------------------------

async function loadSession() {
  const s = await getJSON("/v1/local/session").catch(() => ({}));
  if (s.csrf) {
    state.csrf = s.csrf;
    state.did = s.did;
    $("session").textContent = "Signed in: you can publish, edit and delete.";
    $("session").className = "banner ok";
    $("new-asset").hidden = false;
  } else {
    state.csrf = null;
    $("session").textContent = "Read only. To publish, edit or delete, run: empressa node open";
    $("session").className = "banner";
  }
}

// -- node state -------------------------------------------------------------------------------

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return new Date(ms).toLocaleString();
}

async function loadStatus() {
  try {
    const st = await getJSON("/v1/status");
    state.did = state.did || st.did;
    $("whoami").textContent = st.did;
    $("st-peers").textContent = String(st.peers.length);
    $("st-entries").textContent = String(st.entries);
    $("st-sync").textContent = st.peers.length || st.last_sync_ms ? ago(st.last_sync_ms) : "no peers (offline)";
  } catch {
    $("st-peers").textContent = "?";
  }
  try {
    const ix = await getJSON("/v1/local/indexer");
    const text = {
      searchable: "searchable",
      indexing: "stored, search catching up",
      behind: `${ix.behind} behind`,
      unreachable: "indexer unreachable",
      unconfigured: "no indexer configured",
    }[ix.state] || ix.state;
    $("st-indexer").textContent = text;
    $("st-indexer").dataset.state = ix.state;
  } catch {
    $("st-indexer").textContent = "?";
  }
}

// -- the library ------------------------------------------------------------------------------

function verification(item) {
  const v = item.verification;
  if (!v) return ["unregistered", "unregistered"];
  if (item.put_hash && v.subject !== item.put_hash) {
    return ["mismatch", `mismatch: ${v.chain} #${v.onchain_id} names an earlier version`];
  }
  return ["verified", `verified ${v.chain} #${v.onchain_id}`];
}

function size(n) {
  if (n === undefined || n === null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function render() {
  const list = $("items");
  const tpl = $("item-template");
  const rows = [];
  for (const item of state.items) {
    const li = tpl.content.firstElementChild.cloneNode(true);
    li.dataset.key = item.key;
    li.dataset.uri = item.uri;
    li.dataset.mine = item.mine ? "yes" : "no";
    li.querySelector(".title").textContent = item.title || "(untitled)";
    const [cls, label] = verification(item);
    const badge = li.querySelector(".status");
    badge.textContent = label;
    badge.classList.add(cls);
    li.querySelector(".by").textContent = item.mine ? "yours" : `by ${item.did}`;
    li.querySelector(".description").textContent = item.description || "";
    const tags = li.querySelector(".tags");
    for (const t of item.tags || []) {
      const tag = document.createElement("li");
      tag.textContent = t;
      tags.append(tag);
    }
    const lic = item.license || {};
    const price = lic.price ? `${lic.price.amount} ${lic.price.currency}` : "free";
    li.querySelector(".license").textContent = `${lic.type || "?"}, ${price}`;
    const m = item.media || {};
    li.querySelector(".media").textContent = [m.mime, size(m.size)].filter(Boolean).join(", ");
    li.querySelector(".versions").textContent = String(item.versions);
    li.querySelector(".key").textContent = item.key;
    if (item.mine && state.csrf) {
      const actions = li.querySelector(".item-actions");
      const edit = document.createElement("button");
      edit.type = "button";
      edit.textContent = "Edit";
      edit.setAttribute("aria-label", `Edit ${item.title}`);
      edit.addEventListener("click", () => openEditor(item));
      edit.dataset.action = "edit";
      const del = document.createElement("button");
      del.type = "button";
      del.className = "danger";
      del.dataset.action = "delete";
      const asking = state.confirming === item.key;
      if (asking) del.dataset.confirm = "yes";
      del.textContent = asking ? "Really delete?" : "Delete";
      del.setAttribute("aria-label", asking ? `Really delete ${item.title}?` : `Delete ${item.title}`);
      del.addEventListener("click", () => remove(item));
      actions.append(edit, del);
    }
    rows.push(li);
  }
  const focused = document.activeElement?.closest?.("#items > li [data-action]");
  const refocus = focused && [focused.closest("li").dataset.key, focused.dataset.action];
  list.replaceChildren(...rows);
  if (refocus) {
    const again = rows.find((li) => li.dataset.key === refocus[0])?.querySelector(`[data-action="${refocus[1]}"]`);
    if (again) again.focus();
  }
  $("empty").hidden = rows.length > 0;
  $("count").textContent = `(${rows.length})`;
}

async function loadLibrary() {
  try {
    const doc = await getJSON(`/v1/library${state.all ? "?all=true" : ""}`);
    state.items = doc.items;
    render();
  } catch (e) {
    say(`Cannot read the library: ${e.message}`);
  }
}

// -- the editor -------------------------------------------------------------------------------

function clearErrors() {
  for (const f of ["", "file", ...FIELDS]) {
    $(`err-${f}`).textContent = "";
    const input = $(`f-${f}`);
    if (input) input.removeAttribute("aria-invalid");
  }
}

function formValue(item) {
  const lic = item.license || {};
  const m = item.media || {};
  const payout = item.payout || {};
  return {
    key: item.key, title: item.title || "", description: item.description || "",
    tags: (item.tags || []).join(", "), license: lic.type || "personal",
    price: lic.price ? lic.price.amount : "", currency: lic.price ? lic.price.currency : "",
    terms: lic.terms || "", cid: m.cid || "", mime: m.mime || "",
    size: m.size === undefined ? "" : String(m.size),
    duration_ms: m.duration_ms === undefined ? "" : String(m.duration_ms),
    payout_evm: payout.evm || "", payout_stellar: payout.stellar || "",
  };
}

function openEditor(item) {
  state.editing = item || null;
  clearErrors();
  const values = item ? formValue(item) : { license: "personal" };
  for (const f of FIELDS) $(`f-${f}`).value = values[f] ?? "";
  $("f-file").value = "";
  $("f-key").readOnly = Boolean(item);
  $("editor-title").textContent = item ? `Edit “${item.title}”` : "Publish an asset";
  $("save").textContent = item ? "Save changes" : "Publish";
  $("editor").hidden = false;
  (item ? $("f-title") : $("f-key")).focus();
}

function closeEditor() {
  $("editor").hidden = true;
  state.editing = null;
  $("new-asset").focus();
}

// The CLI's fields from the form: publish sends what is filled in (and the title, always);
// edit sends what changed, as `empressa node edit` takes only the flags given.
function fields() {
  const before = state.editing ? formValue(state.editing) : null;
  const out = {};
  for (const f of FIELDS) {
    const raw = $(`f-${f}`).value;
    const text = ["title", "description", "terms"].includes(f) ? raw : raw.trim();
    if (before ? before[f] === text : text === "" && f !== "title") continue;
    if (f === "tags") out.tags = text.split(",").map((t) => t.trim()).filter(Boolean);
    else if (NUMBERS.has(f) && /^[0-9]+$/.test(text)) out[f] = Number(text);
    else out[f] = text;
  }
  return out;
}

function showErrors(doc) {
  const errors = doc.errors && doc.errors.length ? doc.errors : [{ field: "", detail: doc.detail || "refused" }];
  let first = null;
  for (const e of errors) {
    const slot = $(`err-${e.field}`) || $("err-");
    slot.textContent = e.detail;
    const input = $(`f-${e.field}`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
  }
  if (first) first.focus();
}

async function save(event) {
  event.preventDefault();
  clearErrors();
  const body = fields();
  const item = state.editing;
  const r = item
    ? await send("PATCH", `/v1/local/assets/${encodeURIComponent(item.key)}`, body)
    : await send("POST", "/v1/local/assets", body);
  if (!r.ok) {
    showErrors(r.doc);
    return;
  }
  say(item ? `Saved a new version of ${item.key}.` : `Published ${body.key}.`);
  closeEditor();
  await loadLibrary();
}

// A file chosen in the form goes to the node, which hashes it (and pins it on IPFS where set up);
// its CID, type and size then fill the media fields.
async function upload() {
  const file = $("f-file").files[0];
  if (!file) return;
  $("err-file").textContent = `Hashing ${file.name}…`;
  const r = await fetch("/v1/local/media", {
    method: "POST", credentials: "same-origin", body: file,
    headers: { "X-CSRF-Token": state.csrf || "", "Content-Type": file.type || "application/octet-stream" },
  });
  let doc = {};
  try { doc = await r.json(); } catch { doc = {}; }
  if (!r.ok) {
    $("err-file").textContent = doc.detail || `upload refused (${r.status})`;
    return;
  }
  $("f-cid").value = doc.cid;
  $("f-size").value = String(doc.size);
  if (doc.mime !== "application/octet-stream" || !$("f-mime").value) $("f-mime").value = doc.mime;
  $("err-file").textContent = doc.pinned ? "Added and pinned on IPFS." : "Hashed; push it to IPFS later with: empressa node media push";
}

async function remove(item) {
  if (state.confirming !== item.key) {
    state.confirming = item.key;
    render();
    return;
  }
  state.confirming = null;
  const r = await send("DELETE", `/v1/local/assets/${encodeURIComponent(item.key)}`);
  say(r.ok ? `Deleted ${item.key}.` : `Cannot delete ${item.key}: ${r.doc.detail || r.status}`);
  await loadLibrary();
}

// -- live updates -----------------------------------------------------------------------------

let pending = null;
function soon() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    await Promise.all([loadLibrary(), loadStatus()]);
  }, 150);
}

function listen() {
  const events = new EventSource("/v1/events");
  events.addEventListener("entry", soon);
  events.addEventListener("overflow", () => { events.close(); soon(); setTimeout(listen, 1000); });
}

// -- start ------------------------------------------------------------------------------------

async function start() {
  $("show-all").addEventListener("change", (e) => { state.all = e.target.checked; loadLibrary(); });
  $("new-asset").addEventListener("click", () => openEditor(null));
  $("cancel").addEventListener("click", closeEditor);
  $("asset-form").addEventListener("submit", save);
  $("f-file").addEventListener("change", upload);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("editor").hidden) closeEditor(); });
  await loadSession();
  await Promise.all([loadLibrary(), loadStatus()]);
  listen();
  setInterval(loadStatus, 5000);
  document.body.dataset.ready = "yes";
}

start();
