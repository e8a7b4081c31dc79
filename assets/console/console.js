// The appkeys console: the "Application Keys" and "My Keys" pages, key details and the audit log,
// built on the public GraphQL API only (POST /graphql). The session token lives in sessionStorage
// (gone with the tab); a generated or renewed token is held in component state only while its
// one-time reveal is open, and leaves the page when the reveal is dismissed.
import { html, render, useState, useEffect, useRef, useCallback } from "./preact-htm.js";

const SESSION = "appkeys.session";
const PAGE_SIZE = 20;
const READ_KEYS = ["ApiKeys.View", "ApiKeys.Edit", "LicenseManager.SaveUser"];
const EDIT_KEYS = ["ApiKeys.Edit", "LicenseManager.SaveUser"];
const READ_AUDIT = ["ApiKeys.View", "LicenseManager.SaveUser"];
const READ_ROLES = ["LicenseManager.SaveUser", "LicenseManager.SaveAccessProfile", "ApiKeys.View"];

// --- The API ---------------------------------------------------------------------------------

/** A GraphQL error response: every error, and the message of each input field that caused one. */
class ApiError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join(" "));
    this.errors = errors;
  }
  get code() {
    return this.errors[0] && this.errors[0].extensions ? this.errors[0].extensions.code : undefined;
  }
  /** Messages by `extensions.field` (e.g. `input.label`), and the ones without a field. */
  byField() {
    const fields = {};
    const general = [];
    for (const e of this.errors) {
      const field = e.extensions && e.extensions.field;
      if (field) fields[field] = e.message;
      else general.push(e.message);
    }
    return { fields, general };
  }
}

let onSessionLost = () => {};

// Reads go as automatic persisted queries: the document's SHA-256 alone, and the text only when the
// server asks for it (PERSISTED_QUERY_NOT_FOUND). Without Web Crypto (a page not served over HTTPS or
// from localhost) every request carries its text.
const sha256 = async (text) => {
  if (!globalThis.crypto || !crypto.subtle) return null;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
};

async function post(headers, payload) {
  let response;
  try {
    response = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify(payload) });
  } catch (e) {
    throw new ApiError([{ message: "The server cannot be reached. Check your connection and try again." }]);
  }
  try {
    return await response.json();
  } catch (e) {
    throw new ApiError([{ message: `The server answered HTTP ${response.status}.` }]);
  }
}

async function gql(query, variables = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/graphql-response+json, application/json" };
  const token = sessionStorage.getItem(SESSION);
  if (token) headers.Authorization = "Bearer " + token;
  const hash = /^\s*mutation\b/.test(query) ? null : await sha256(query);
  let body;
  if (hash) {
    const extensions = { persistedQuery: { version: 1, sha256Hash: hash } };
    body = await post(headers, { variables, extensions });
    if (body.errors && body.errors.some((e) => e.extensions && e.extensions.code === "PERSISTED_QUERY_NOT_FOUND")) {
      body = await post(headers, { query, variables, extensions });
    }
  } else {
    body = await post(headers, { query, variables });
  }
  if (body.errors && body.errors.length) {
    const error = new ApiError(body.errors);
    if (error.code === "UNAUTHENTICATED" && token) onSessionLost();
    throw error;
  }
  return body.data;
}

const holds = (viewer, any) => viewer.resources.some((r) => any.includes(r.id));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const keyPath = (key) => "#/keys/" + encodeURIComponent(key);

// --- Routing -----------------------------------------------------------------------------------

function useRoute() {
  const read = () => (location.hash || "#/my-keys").slice(1);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

// --- Small pieces ------------------------------------------------------------------------------

/** A message next to what caused it; `role="alert"` so screen readers hear it. */
function ErrorText({ id, message }) {
  return message ? html`<p class="error" id=${id} role="alert">${message}</p>` : null;
}

/** An error's messages by input field (none for a non-API error). */
function fieldsOf(error) {
  return error && error.byField ? error.byField().fields : {};
}

/** The error when none of its messages has a field to be shown at, for a form's general slot. */
function unplaced(error) {
  return error && !Object.keys(fieldsOf(error)).length ? error : null;
}

function General({ error }) {
  if (!error) return null;
  const { general, fields } = error.byField ? error.byField() : { general: [String(error)], fields: {} };
  // Field errors are shown at their fields; a form that has no such field still shows them here.
  const messages = general.length ? general : Object.values(fields);
  return html`<div class="error" role="alert">${messages.map((m) => html`<p>${m}</p>`)}</div>`;
}

function Field({ label, name, error, children }) {
  const id = "f-" + name.replace(/\W/g, "-");
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${children({ id, "aria-invalid": error ? "true" : undefined, "aria-describedby": error ? id + "-error" : undefined })}
    <${ErrorText} id=${id + "-error"} message=${error} />
  </div>`;
}

function Status({ status }) {
  return html`<span class=${"status status-" + status.toLowerCase()}>${status.toLowerCase()}</span>`;
}

/** A modal dialog (native <dialog>: focus stays inside, Esc closes); focus returns to the opener. */
function Dialog({ title, onClose, children }) {
  const ref = useRef(null);
  useEffect(() => {
    const opener = document.activeElement;
    const dialog = ref.current;
    dialog.showModal();
    const first = dialog.querySelector("input, select, textarea, button:not(.close)");
    if (first) first.focus();
    return () => {
      if (dialog.open) dialog.close();
      if (opener && opener.focus) opener.focus();
    };
  }, []);
  return html`<dialog ref=${ref} aria-labelledby="dialog-title" onCancel=${(e) => { e.preventDefault(); onClose(); }}>
    <header>
      <h2 id="dialog-title">${title}</h2>
      <button type="button" class="close" aria-label="Close" onClick=${onClose}>×</button>
    </header>
    ${children}
  </dialog>`;
}

/** Checkboxes for the account's roles. */
function RolePicker({ roles, chosen, onChange, error }) {
  const toggle = (id) => onChange(chosen.includes(id) ? chosen.filter((r) => r !== id) : [...chosen, id]);
  return html`<fieldset class="roles" aria-describedby=${error ? "roles-error" : undefined}>
    <legend>Roles</legend>
    ${roles.map((role) => html`<label class="check">
      <input type="checkbox" name="role" value=${role.id} checked=${chosen.includes(role.id)} onChange=${() => toggle(role.id)} />
      ${role.name}
    </label>`)}
    <${ErrorText} id="roles-error" message=${error} />
  </fieldset>`;
}

function useRoles(viewer) {
  const [roles, setRoles] = useState([]);
  useEffect(() => {
    if (holds(viewer, READ_ROLES)) gql("query Roles { roles { id name } }").then((d) => setRoles(d.roles), () => {});
  }, []);
  return roles;
}

/**
 * A token shown once: the key, the token in a read-only field with a Copy button, and a warning.
 * "Done" removes it from the page for good.
 */
function TokenReveal({ appKey, token, onDone }) {
  const [copied, setCopied] = useState(false);
  const field = useRef(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(token);
    } catch (e) {
      field.current.select();
      document.execCommand("copy");
    }
    setCopied(true);
  };
  return html`<div class="reveal">
    <p class="warning" role="alert"><strong>Copy the token now.</strong> You will not see it again: appkeys keeps only its hash.</p>
    <dl><dt>Key</dt><dd><code class="key-value">${appKey}</code></dd></dl>
    <label for="token">Token</label>
    <div class="copy-row">
      <input id="token" ref=${field} class="token" readonly value=${token} onFocus=${(e) => e.target.select()} />
      <button type="button" onClick=${copy}>${copied ? "Copied" : "Copy"}</button>
    </div>
    <p class="hint" aria-live="polite">${copied ? "The token is on your clipboard." : ""}</p>
    <div class="actions"><button type="button" class="primary" onClick=${onDone}>Done, I stored it</button></div>
  </div>`;
}

// --- Login -------------------------------------------------------------------------------------

function Login({ notice, onLogin }) {
  const [form, setForm] = useState({ account: "", email: "", password: "" });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (e) => setForm({ ...form, [name]: e.target.value });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const data = await gql("mutation Login($input: LoginInput!) { login(input: $input) { token } }", { input: form });
      onLogin(data.login.token);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  const fields = fieldsOf(error);
  return html`<main class="login">
    <h1>appkeys</h1>
    <p>Sign in to manage your account's application keys.</p>
    ${notice && html`<p class="notice" role="status">${notice}</p>`}
    <form onSubmit=${submit} novalidate>
      <${Field} label="Account" name="input.account" error=${fields["input.account"]}>
        ${(a) => html`<input ...${a} name="account" autocomplete="organization" required value=${form.account} onInput=${set("account")} />`}
      <//>
      <${Field} label="Email" name="input.email" error=${fields["input.email"]}>
        ${(a) => html`<input ...${a} name="email" type="email" autocomplete="username" required value=${form.email} onInput=${set("email")} />`}
      <//>
      <${Field} label="Password" name="input.password" error=${fields["input.password"]}>
        ${(a) => html`<input ...${a} name="password" type="password" autocomplete="current-password" required value=${form.password} onInput=${set("password")} />`}
      <//>
      <${General} error=${unplaced(error)} />
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
    </form>
  </main>`;
}

// --- Listings ----------------------------------------------------------------------------------

const KEY_FIELDS = "key type account label status roles { id name } createdAt lastUsedAt renewalAlert expiresAt";

/** One page of a key listing, with search, status filter and paging both ways. */
function useKeyPage(field, filter, reload) {
  const [cursor, setCursor] = useState({ first: PAGE_SIZE });
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => setCursor({ first: PAGE_SIZE }), [JSON.stringify(filter)]);
  useEffect(() => {
    let live = true;
    const query = `query Keys($first: Int, $after: String, $last: Int, $before: String, $filter: AppKeyFilter) {
      ${field}(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
        totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } nodes { ${KEY_FIELDS} } } }`;
    gql(query, { ...cursor, filter }).then(
      (d) => live && (setPage(d[field]), setError(null)),
      (e) => live && setError(e)
    );
    return () => { live = false; };
  }, [JSON.stringify(cursor), JSON.stringify(filter), reload]);
  const next = () => setCursor({ first: PAGE_SIZE, after: page.pageInfo.endCursor });
  const previous = () => setCursor({ last: PAGE_SIZE, before: page.pageInfo.startCursor });
  return { page, error, next, previous };
}

function Pager({ page, next, previous, label }) {
  if (!page) return null;
  return html`<nav class="pager" aria-label=${label + " pages"}>
    <button type="button" onClick=${previous} disabled=${!page.pageInfo.hasPreviousPage}>← Previous</button>
    <span>${page.totalCount} ${page.totalCount === 1 ? "key" : "keys"}</span>
    <button type="button" onClick=${next} disabled=${!page.pageInfo.hasNextPage}>Next →</button>
  </nav>`;
}

function SearchBar({ onSearch, withStatus = true }) {
  const [search, setSearch] = useState("");
  const [status, setStatus] = useState("");
  const submit = (e) => {
    e.preventDefault();
    onSearch({ search: search || undefined, status: status || undefined });
  };
  return html`<form class="search" role="search" onSubmit=${submit}>
    <label for="search">Search</label>
    <input id="search" type="search" placeholder="Key or label" value=${search} onInput=${(e) => setSearch(e.target.value)} />
    ${withStatus && html`<label for="status">Status</label>
      <select id="status" value=${status} onChange=${(e) => setStatus(e.target.value)}>
        <option value="">Any</option><option value="ACTIVE">Active</option><option value="INACTIVE">Inactive</option><option value="EXPIRED">Expired</option>
      </select>`}
    <button type="submit">Search</button>
  </form>`;
}

function ExportButtons() {
  const [error, setError] = useState(null);
  const download = async (format) => {
    setError(null);
    try {
      const d = await gql("mutation Export($format: ExportFormat!) { createAppKeysExport(format: $format) { url } }", { format });
      // A single-use link: the browser downloads the file (Content-Disposition: attachment).
      location.assign(d.createAppKeysExport.url);
    } catch (e) {
      setError(e);
    }
  };
  return html`<span class="export">
    <button type="button" onClick=${() => download("CSV")}>Export CSV</button>
    <button type="button" onClick=${() => download("XLSX")}>Export XLSX</button>
    <${General} error=${error} />
  </span>`;
}

function MyKeys({ viewer }) {
  const [filter, setFilter] = useState({});
  const [reload, setReload] = useState(0);
  const [generating, setGenerating] = useState(false);
  const { page, error, next, previous } = useKeyPage("myKeys", filter, reload);
  return html`<section aria-labelledby="page-title">
    <div class="title-row">
      <h1 id="page-title">My Keys</h1>
      <div class="tools">
        ${holds(viewer, EDIT_KEYS) && html`<button type="button" class="primary" onClick=${() => setGenerating(true)}>Generate New</button>`}
        <${ExportButtons} />
      </div>
    </div>
    <p class="lead">Keys generated in <strong>${viewer.account}</strong>. Only keys that are active and hold a role can call APIs.</p>
    <${SearchBar} onSearch=${setFilter} />
    <${General} error=${error} />
    ${page && html`<table>
      <caption class="visually-hidden">Keys generated in this account</caption>
      <thead><tr><th scope="col">Label</th><th scope="col">Key</th><th scope="col">Status</th><th scope="col">Roles</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Renewal</th></tr></thead>
      <tbody>
        ${page.nodes.length === 0 && html`<tr><td colspan="7" class="empty">No keys yet.</td></tr>`}
        ${page.nodes.map((k) => html`<tr>
          <td><a href=${keyPath(k.key)}>${k.label}</a></td>
          <td><code class="key-value">${k.key}</code></td>
          <td><${Status} status=${k.status} /></td>
          <td>${k.roles.map((r) => r.name).join(", ") || "—"}</td>
          <td>${when(k.createdAt)}</td>
          <td>${when(k.lastUsedAt)}</td>
          <td>${k.renewalAlert === "DUE" ? html`<span class="alert">renewal due</span>` : "ok"}</td>
        </tr>`)}
      </tbody>
    </table>`}
    <${Pager} page=${page} next=${next} previous=${previous} label="My Keys" />
    ${generating && html`<${GenerateDialog} viewer=${viewer} onClose=${() => { setGenerating(false); setReload(reload + 1); }} />`}
  </section>`;
}

function AppKeys({ viewer }) {
  const [filter, setFilter] = useState({});
  const [reload, setReload] = useState(0);
  const [adding, setAdding] = useState(false);
  const { page, error, next, previous } = useKeyPage("appKeys", filter, reload);
  return html`<section aria-labelledby="page-title">
    <div class="title-row">
      <h1 id="page-title">Application Keys</h1>
      <div class="tools">
        ${holds(viewer, EDIT_KEYS) && html`<button type="button" class="primary" onClick=${() => setAdding(true)}>Add 3rd Party Key</button>`}
      </div>
    </div>
    <p class="lead">Every key that holds roles in <strong>${viewer.account}</strong>: its own, and other accounts' keys it granted roles to.</p>
    <${SearchBar} onSearch=${setFilter} />
    <${General} error=${error} />
    ${page && html`<table>
      <caption class="visually-hidden">Keys with access to this account</caption>
      <thead><tr><th scope="col">Key</th><th scope="col">Type</th><th scope="col">Managing account</th><th scope="col">Status</th><th scope="col">Roles</th></tr></thead>
      <tbody>
        ${page.nodes.length === 0 && html`<tr><td colspan="5" class="empty">No keys.</td></tr>`}
        ${page.nodes.map((k) => html`<tr>
          <td><a href=${keyPath(k.key)}><code class="key-value">${k.key}</code></a></td>
          <td>${k.type === "INTERNAL" ? "generated here" : "3rd party"}</td>
          <td>${k.account}</td>
          <td><${Status} status=${k.status} /></td>
          <td>${k.roles.map((r) => r.name).join(", ") || "—"}</td>
        </tr>`)}
      </tbody>
    </table>`}
    <${Pager} page=${page} next=${next} previous=${previous} label="Application Keys" />
    ${adding && html`<${AddExternalDialog} viewer=${viewer} onClose=${() => { setAdding(false); setReload(reload + 1); }} />`}
  </section>`;
}

// --- Dialogs -----------------------------------------------------------------------------------

function GenerateDialog({ viewer, onClose }) {
  const roles = useRoles(viewer);
  const [label, setLabel] = useState("");
  const [chosen, setChosen] = useState([]);
  const [expires, setExpires] = useState("");
  const [error, setError] = useState(null);
  const [generated, setGenerated] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const input = { label: label || null, roleIds: chosen, expiresAt: expires ? new Date(expires + "T23:59:59Z").toISOString() : null };
    try {
      const d = await gql("mutation Generate($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appKey { key } appToken } }", { input });
      setGenerated({ key: d.generateAppKey.appKey.key, token: d.generateAppKey.appToken });
    } catch (err) {
      setError(err);
    }
  };
  const fields = fieldsOf(error);
  if (generated) {
    return html`<${Dialog} title="Key generated" onClose=${onClose}>
      <${TokenReveal} appKey=${generated.key} token=${generated.token} onDone=${onClose} />
    <//>`;
  }
  return html`<${Dialog} title="Generate New key" onClose=${onClose}>
    <form onSubmit=${submit} novalidate>
      <${Field} label="Label" name="input.label" error=${fields["input.label"]}>
        ${(a) => html`<input ...${a} value=${label} maxlength="200" placeholder="e.g. ERP integration" onInput=${(e) => setLabel(e.target.value)} />`}
      <//>
      <${RolePicker} roles=${roles} chosen=${chosen} onChange=${setChosen} error=${fields["input.roleIds"] || fields["roleIds"]} />
      <${Field} label="Expires on (optional)" name="input.expiresAt" error=${fields["input.expiresAt"]}>
        ${(a) => html`<input ...${a} type="date" value=${expires} onInput=${(e) => setExpires(e.target.value)} />`}
      <//>
      <${General} error=${unplaced(error)} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary">Generate</button>
      </div>
    </form>
  <//>`;
}

function AddExternalDialog({ viewer, onClose }) {
  const roles = useRoles(viewer);
  const [key, setKey] = useState("");
  const [chosen, setChosen] = useState([]);
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await gql("mutation AddExternal($input: AddExternalAppKeyInput!) { addExternalAppKey(input: $input) { key } }", { input: { key: key.trim(), roleIds: chosen } });
      onClose();
    } catch (err) {
      setError(err);
    }
  };
  const fields = fieldsOf(error);
  return html`<${Dialog} title="Add 3rd Party Key" onClose=${onClose}>
    <p>Give another account's key roles in <strong>${viewer.account}</strong>. Its token stays with its owner.</p>
    <form onSubmit=${submit} novalidate>
      <${Field} label="Key" name="input.key" error=${fields["input.key"]}>
        ${(a) => html`<input ...${a} value=${key} placeholder="appkey-partner-ABCDEF" onInput=${(e) => setKey(e.target.value)} />`}
      <//>
      <${RolePicker} roles=${roles} chosen=${chosen} onChange=${setChosen} error=${fields["input.roleIds"] || fields["roleIds"]} />
      <${General} error=${unplaced(error)} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary">Add key</button>
      </div>
    </form>
  <//>`;
}

function RolesDialog({ viewer, appKey, onClose }) {
  const roles = useRoles(viewer);
  const [chosen, setChosen] = useState(appKey.roles.map((r) => r.id));
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await gql("mutation SetRoles($key: String!, $roleIds: [ID!]!) { setAppKeyRoles(key: $key, roleIds: $roleIds) { key } }", { key: appKey.key, roleIds: chosen });
      onClose();
    } catch (err) {
      setError(err);
    }
  };
  const fields = fieldsOf(error);
  return html`<${Dialog} title="Edit roles" onClose=${onClose}>
    <form onSubmit=${submit} novalidate>
      <${RolePicker} roles=${roles} chosen=${chosen} onChange=${setChosen} error=${fields["roleIds"]} />
      <${General} error=${error && !fields["roleIds"] ? error : null} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary">Save roles</button>
      </div>
    </form>
  <//>`;
}

function ConfirmDialog({ title, children, confirmWord, action, danger, onDone, onClose }) {
  const [typed, setTyped] = useState("");
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    try {
      await action();
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <form onSubmit=${submit}>
      ${children}
      ${confirmWord && html`<${Field} label=${"Type " + confirmWord + " to confirm"} name="confirm">
        ${(a) => html`<input ...${a} value=${typed} autocomplete="off" onInput=${(e) => setTyped(e.target.value)} />`}
      <//>`}
      <${General} error=${error} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class=${danger ? "danger" : "primary"} disabled=${confirmWord && typed !== confirmWord}>${title}</button>
      </div>
    </form>
  <//>`;
}

function RenewDialog({ appKey, onClose }) {
  const [hours, setHours] = useState("24");
  const [error, setError] = useState(null);
  const [renewed, setRenewed] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const input = { oldTokenValidFor: hours === "" ? null : Math.round(Number(hours) * 3600) };
    try {
      const d = await gql("mutation Renew($key: String!, $input: RenewAppKeyTokenInput) { renewAppKeyToken(key: $key, input: $input) { appToken } }", { key: appKey.key, input });
      setRenewed(d.renewAppKeyToken.appToken);
    } catch (err) {
      setError(err);
    }
  };
  if (renewed) {
    return html`<${Dialog} title="Token renewed" onClose=${onClose}>
      <${TokenReveal} appKey=${appKey.key} token=${renewed} onDone=${onClose} />
    <//>`;
  }
  const fields = fieldsOf(error);
  return html`<${Dialog} title="Renew token" onClose=${onClose}>
    <form onSubmit=${submit} novalidate>
      <p>A new token is made; the current one keeps working for the overlap you choose, so you can roll it out without downtime.</p>
      <${Field} label="Hours the current token keeps working (empty: until you finish)" name="input.oldTokenValidFor" error=${fields["input.oldTokenValidFor"]}>
        ${(a) => html`<input ...${a} type="number" min="0" step="1" value=${hours} onInput=${(e) => setHours(e.target.value)} />`}
      <//>
      <${General} error=${unplaced(error)} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary">Renew</button>
      </div>
    </form>
  <//>`;
}

// --- Key details -------------------------------------------------------------------------------

const DETAIL_FIELDS = `key type account label status hasAccess roles { id name } createdAt createdBy tokenCreatedAt
  renewal { startedAt oldTokenExpiresAt } renewalAlert expiresAt lastUsedAt lastUsedIp lastUsedUserAgent updatedAt`;

function KeyDetails({ viewer, keyValue }) {
  const [appKey, setAppKey] = useState(null);
  const [error, setError] = useState(null);
  const [dialog, setDialog] = useState(null);
  const [actionError, setActionError] = useState(null);
  const load = useCallback(() => {
    gql(`query Key($key: String!) { appKey(key: $key) { ${DETAIL_FIELDS} } }`, { key: keyValue }).then(
      (d) => { setAppKey(d.appKey); setError(d.appKey ? null : new ApiError([{ message: "This account does not know that key." }])); },
      setError
    );
  }, [keyValue]);
  useEffect(load, [keyValue]);
  const run = async (mutation) => {
    setActionError(null);
    try {
      await gql(mutation, { key: keyValue });
      load();
    } catch (e) {
      setActionError(e);
    }
  };
  const close = () => { setDialog(null); load(); };
  if (error) return html`<section><h1 id="page-title">Key</h1><${General} error=${error} /><p><a href="#/my-keys">Back to My Keys</a></p></section>`;
  if (!appKey) return html`<p class="loading">Loading…</p>`;
  const internal = appKey.type === "INTERNAL";
  const canEdit = holds(viewer, EDIT_KEYS);
  const canRenew = internal && holds(viewer, ["ApiKeys.RenewToken"]);
  const active = appKey.status === "ACTIVE";
  return html`<section aria-labelledby="page-title">
    <p class="crumbs"><a href=${internal ? "#/my-keys" : "#/app-keys"}>← ${internal ? "My Keys" : "Application Keys"}</a></p>
    <div class="title-row">
      <h1 id="page-title">${appKey.label || appKey.key}</h1>
      <${Status} status=${appKey.status} />
    </div>
    <dl class="details">
      <dt>Key</dt><dd><code class="key-value">${appKey.key}</code></dd>
      <dt>Type</dt><dd>${internal ? "Generated in this account" : "3rd party key of " + appKey.account}</dd>
      <dt>Roles</dt><dd>${appKey.roles.map((r) => r.name).join(", ") || "none (the key cannot call APIs here)"}</dd>
      <dt>Can call APIs</dt><dd>${appKey.hasAccess ? "yes" : "no"}</dd>
      <dt>Created</dt><dd>${when(appKey.createdAt)}${appKey.createdBy ? " by " + appKey.createdBy : ""}</dd>
      ${internal && html`<dt>Token made</dt><dd>${when(appKey.tokenCreatedAt)} ${appKey.renewalAlert === "DUE" ? html`<span class="alert">renewal due</span>` : ""}</dd>`}
      ${appKey.renewal && html`<dt>Renewal</dt><dd>pending since ${when(appKey.renewal.startedAt)}; the old token works ${appKey.renewal.oldTokenExpiresAt ? "until " + when(appKey.renewal.oldTokenExpiresAt) : "until you finish or undo"}</dd>`}
      <dt>Expires</dt><dd>${appKey.expiresAt ? when(appKey.expiresAt) : "never"}</dd>
      <dt>Last used</dt><dd>${appKey.lastUsedAt ? `${when(appKey.lastUsedAt)} from ${appKey.lastUsedIp || "?"} (${appKey.lastUsedUserAgent || "no user agent"})` : "never"}</dd>
    </dl>
    <${General} error=${actionError} />
    <div class="actions left">
      ${canEdit && html`<button type="button" onClick=${() => setDialog("roles")}>Edit roles</button>`}
      ${canEdit && !active && html`<button type="button" onClick=${() => run("mutation Activate($key: String!) { activateAppKey(key: $key) { status } }")}>Activate</button>`}
      ${canEdit && active && internal && html`<button type="button" onClick=${() => run("mutation Deactivate($key: String!) { deactivateAppKey(key: $key) { status } }")}>Deactivate</button>`}
      ${canEdit && active && !internal && html`<button type="button" class="danger" onClick=${() => setDialog("remove")}>Remove from this account</button>`}
      ${canRenew && !appKey.renewal && html`<button type="button" onClick=${() => setDialog("renew")}>Renew token</button>`}
      ${canRenew && appKey.renewal && html`<button type="button" onClick=${() => run("mutation Finish($key: String!) { finishAppKeyRenewal(key: $key) { key } }")}>Finish renewal</button>
        <button type="button" onClick=${() => run("mutation Undo($key: String!) { undoAppKeyRenewal(key: $key) { key } }")}>Undo renewal</button>`}
      ${canEdit && internal && html`<button type="button" class="danger" onClick=${() => setDialog("delete")}>Delete</button>`}
    </div>
    ${dialog === "roles" && html`<${RolesDialog} viewer=${viewer} appKey=${appKey} onClose=${close} />`}
    ${dialog === "renew" && html`<${RenewDialog} appKey=${appKey} onClose=${close} />`}
    ${dialog === "remove" && html`<${ConfirmDialog} title="Remove key" danger=${true} onClose=${close} onDone=${close}
        action=${() => gql("mutation Remove($key: String!) { deactivateAppKey(key: $key) { status } }", { key: appKey.key })}>
        <p>The key loses its access to this account and its roles here. Its owner keeps the key; you can add it again later.</p>
      <//>`}
    ${dialog === "delete" && html`<${ConfirmDialog} title="Delete key" danger=${true} confirmWord=${appKey.key} onClose=${close}
        onDone=${() => { location.hash = "#/my-keys"; }}
        action=${() => gql("mutation Delete($key: String!) { deleteAppKey(key: $key) }", { key: appKey.key })}>
        <p>Deleting stops the key everywhere, at once, and for good. Systems using it will get 401.</p>
      <//>`}
  </section>`;
}

// --- Audit log ---------------------------------------------------------------------------------

function AuditLog() {
  const [cursor, setCursor] = useState({ first: PAGE_SIZE });
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    gql(`query Audit($first: Int, $after: String, $last: Int, $before: String) {
      auditEvents(first: $first, after: $after, last: $last, before: $before) {
        totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } nodes { id at actor action target before after } } }`, cursor)
      .then((d) => setPage(d.auditEvents), setError);
  }, [JSON.stringify(cursor)]);
  const show = (v) => (v ? JSON.stringify(v) : "—");
  return html`<section aria-labelledby="page-title">
    <h1 id="page-title">Audit log</h1>
    <p class="lead">Every change in this account: who, what, before and after. Never a token or password.</p>
    <${General} error=${error} />
    ${page && html`<table class="audit">
      <caption class="visually-hidden">Audit events, newest first</caption>
      <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Before</th><th scope="col">After</th></tr></thead>
      <tbody>${page.nodes.map((e) => html`<tr>
        <td>${when(e.at)}</td><td>${e.actor}</td><td><code>${e.action}</code></td><td><code>${e.target}</code></td>
        <td class="json">${show(e.before)}</td><td class="json">${show(e.after)}</td>
      </tr>`)}</tbody>
    </table>`}
    ${page && html`<nav class="pager" aria-label="Audit log pages">
      <button type="button" disabled=${!page.pageInfo.hasPreviousPage} onClick=${() => setCursor({ last: PAGE_SIZE, before: page.pageInfo.startCursor })}>← Newer</button>
      <span>${page.totalCount} events</span>
      <button type="button" disabled=${!page.pageInfo.hasNextPage} onClick=${() => setCursor({ first: PAGE_SIZE, after: page.pageInfo.endCursor })}>Older →</button>
    </nav>`}
  </section>`;
}

// --- The shell ---------------------------------------------------------------------------------

function App() {
  const [session, setSession] = useState(() => sessionStorage.getItem(SESSION));
  const [viewer, setViewer] = useState(null);
  const [notice, setNotice] = useState(null);
  const route = useRoute();
  const main = useRef(null);
  onSessionLost = () => {
    sessionStorage.removeItem(SESSION);
    setViewer(null);
    setSession(null);
    setNotice("Your session ended. Please sign in again.");
  };
  useEffect(() => {
    if (!session) return;
    gql("query Viewer { viewer { account user { email } resources { id } } }").then((d) => setViewer(d.viewer), () => {});
  }, [session]);
  // Move focus to the page's heading after navigating, so keyboard and screen reader users land there.
  useEffect(() => {
    const heading = main.current && main.current.querySelector("h1");
    if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
  }, [route, viewer]);
  if (!session) {
    return html`<${Login} notice=${notice} onLogin=${(token) => { sessionStorage.setItem(SESSION, token); setNotice(null); setSession(token); }} />`;
  }
  if (!viewer) return html`<p class="loading">Loading…</p>`;
  const logout = async () => {
    try { await gql("mutation Logout { logout }"); } catch (e) { /* the session is dropped either way */ }
    sessionStorage.removeItem(SESSION);
    setViewer(null);
    setSession(null);
    setNotice("You signed out.");
  };
  let page;
  if (route.startsWith("/keys/")) page = html`<${KeyDetails} viewer=${viewer} keyValue=${decodeURIComponent(route.slice(6))} />`;
  else if (route === "/app-keys") page = html`<${AppKeys} viewer=${viewer} />`;
  else if (route === "/audit") page = html`<${AuditLog} />`;
  else page = html`<${MyKeys} viewer=${viewer} />`;
  const link = (href, text) => html`<a href=${href} aria-current=${"#" + route === href ? "page" : undefined}>${text}</a>`;
  if (!holds(viewer, READ_KEYS)) {
    page = html`<section><h1>No access</h1><p>Your roles in ${viewer.account} do not include reading keys.</p></section>`;
  }
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <span class="brand">appkeys</span>
      <nav aria-label="Pages">
        ${link("#/my-keys", "My Keys")}
        ${link("#/app-keys", "Application Keys")}
        ${holds(viewer, READ_AUDIT) && link("#/audit", "Audit log")}
        <a href="/">GraphiQL</a>
      </nav>
      <span class="who">${viewer.user ? viewer.user.email : "key"} · <strong>${viewer.account}</strong></span>
      <button type="button" onClick=${logout}>Sign out</button>
    </header>
    <main id="main" ref=${main}>${page}</main>
  </div>`;
}

const root = document.getElementById("console");
root.textContent = ""; // the "Loading… (it needs JavaScript)" placeholder
render(html`<${App} />`, root);
