// The appkeys console: the "Application Keys" and "My Keys" pages, a key's details (its policy, usage
// and permissions), users, roles, settings, webhooks and the audit log, built on the public GraphQL
// API only (POST /graphql). The session token lives in sessionStorage
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

/** A refusal to grant or take away roles (FORBIDDEN: the caller lacks resources they carry) is about
 * the roles chosen: shown at the role picker. */
function rolesRefusal(error) {
  return error && error.code === "FORBIDDEN" ? error.message : null;
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

/** A form's submit: runs `action`, keeping its error (an ApiError, most often) for the form to show. */
function useSubmit(action) {
  const [error, setError] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(err);
    }
  };
  return [submit, error];
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
  const [generated, setGenerated] = useState(null);
  const [submit, error] = useSubmit(async () => {
    const input = { label: label || null, roleIds: chosen, expiresAt: expires ? new Date(expires + "T23:59:59Z").toISOString() : null };
    const d = await gql("mutation Generate($input: GenerateAppKeyInput!) { generateAppKey(input: $input) { appKey { key } appToken } }", { input });
    setGenerated({ key: d.generateAppKey.appKey.key, token: d.generateAppKey.appToken });
  });
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
  const [submit, error] = useSubmit(async () => {
    await gql("mutation AddExternal($input: AddExternalAppKeyInput!) { addExternalAppKey(input: $input) { key } }", { input: { key: key.trim(), roleIds: chosen } });
    onClose();
  });
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

/** Choosing the roles of a key or a user: `save` sends the ids chosen. */
function RoleChangeDialog({ viewer, title, current, save, onClose }) {
  const roles = useRoles(viewer);
  const [chosen, setChosen] = useState(current.map((r) => r.id));
  const [submit, error] = useSubmit(async () => {
    await save(chosen);
    onClose();
  });
  const fields = fieldsOf(error);
  const atRoles = fields["roleIds"] || rolesRefusal(error);
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <form onSubmit=${submit} novalidate>
      <${RolePicker} roles=${roles} chosen=${chosen} onChange=${setChosen} error=${atRoles} />
      <${General} error=${error && !atRoles ? error : null} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary">Save roles</button>
      </div>
    </form>
  <//>`;
}

function RolesDialog({ viewer, appKey, onClose }) {
  const save = (roleIds) =>
    gql("mutation SetRoles($key: String!, $roleIds: [ID!]!) { setAppKeyRoles(key: $key, roleIds: $roleIds) { key } }", { key: appKey.key, roleIds });
  return html`<${RoleChangeDialog} viewer=${viewer} title="Edit roles" current=${appKey.roles} save=${save} onClose=${onClose} />`;
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
  const [renewed, setRenewed] = useState(null);
  const [submit, error] = useSubmit(async () => {
    const input = { oldTokenValidFor: hours === "" ? null : Math.round(Number(hours) * 3600) };
    const d = await gql("mutation Renew($key: String!, $input: RenewAppKeyTokenInput) { renewAppKeyToken(key: $key, input: $input) { appToken } }", { key: appKey.key, input });
    setRenewed(d.renewAppKeyToken.appToken);
  });
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
  renewal { startedAt oldTokenExpiresAt } renewalAlert expiresAt lastUsedAt lastUsedIp lastUsedUserAgent updatedAt
  deactivationReason leak { at url source }
  policy { allowedIps rateLimits { name limit periodSeconds } credits { remaining refill { amount interval day } } }`;

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
      ${appKey.deactivationReason && html`<dt>Switched off</dt><dd>${{ MANUAL: "by a person or a key", INACTIVITY: "unused for too long", LEAKED: "its token leaked" }[appKey.deactivationReason]}</dd>`}
    </dl>
    <${LeakBanner} appKey=${appKey} />
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
    <${UsageChart} appKey=${appKey} />
    <${PolicyEditor} key=${appKey.key} appKey=${appKey} canEdit=${canEdit} onSaved=${load} />
    <${PermissionHints} appKey=${appKey} canEdit=${canEdit} onChanged=${load} />
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

// --- A key's gate: leak, policy, usage, permissions ----------------------------------------------

/** Where a leaked key stands and the way back: renew the token (no overlap), then activate. */
function LeakBanner({ appKey }) {
  if (appKey.deactivationReason !== "LEAKED" || !appKey.leak) return null;
  const leak = appKey.leak;
  return html`<div class="banner danger-banner" role="alert">
    <p><strong>This key's token leaked.</strong> ${"It was reported " + (leak.source === "self-revocation" ? "and revoked by whoever held it" : "by GitHub secret scanning (" + (leak.source || "unknown source") + ")") + " on " + when(leak.at) + " and stopped working everywhere at once."}
      ${leak.url && html` Found at <a href=${leak.url} rel="noreferrer noopener">${leak.url}</a>.`}</p>
    <p>To use the key again: <strong>renew its token</strong> (the leaked one gets no overlap), update your systems, then <strong>activate</strong> it.</p>
  </div>`;
}

/** The editable form of a policy: addresses one per line; limits and credits as text until saved. */
function policyForm(policy) {
  return {
    allowedIps: policy.allowedIps.join("\n"),
    rateLimits: policy.rateLimits.map((l) => ({ name: l.name, limit: String(l.limit), periodSeconds: String(l.periodSeconds) })),
    credits: policy.credits
      ? { on: true, remaining: String(policy.credits.remaining), interval: policy.credits.refill ? policy.credits.refill.interval : "", amount: policy.credits.refill ? String(policy.credits.refill.amount) : "", day: policy.credits.refill && policy.credits.refill.day ? String(policy.credits.refill.day) : "" }
      : { on: false, remaining: "1000", interval: "", amount: "", day: "" },
  };
}

const number = (text) => (text === "" || text === undefined ? null : Number(text));

function PolicyEditor({ appKey, canEdit, onSaved }) {
  const [form, setForm] = useState(() => policyForm(appKey.policy));
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  const [suggestion, setSuggestion] = useState(null);
  const fields = fieldsOf(error);
  const at = (prefix) => Object.entries(fields).filter(([f]) => f === prefix || f.startsWith(prefix + "[") || f.startsWith(prefix + ".")).map(([, m]) => m).join(" ");
  const setLimit = (i, name, value) => setForm({ ...form, rateLimits: form.rateLimits.map((l, j) => (j === i ? { ...l, [name]: value } : l)) });
  const setCredits = (name, value) => setForm({ ...form, credits: { ...form.credits, [name]: value } });
  const suggest = async () => {
    try {
      const d = await gql("query Addresses($key: String!) { appKey(key: $key) { clientAddresses(days: 30) { address count } } }", { key: appKey.key });
      const seen = d.appKey.clientAddresses.filter((a) => a.address !== "other").map((a) => a.address);
      setSuggestion(seen);
    } catch (e) {
      setError(e);
    }
  };
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setSaved(false);
    const c = form.credits;
    const input = {
      allowedIps: form.allowedIps.split(/[\s,]+/).filter(Boolean),
      rateLimits: form.rateLimits.map((l) => ({ name: l.name, limit: number(l.limit), periodSeconds: number(l.periodSeconds) })),
      credits: c.on ? { remaining: number(c.remaining), refill: c.interval ? { interval: c.interval, amount: number(c.amount), day: c.interval === "MONTHLY" ? number(c.day) : null } : null } : null,
    };
    try {
      const d = await gql(`mutation SetPolicy($key: String!, $input: AppKeyPolicyInput!) { setAppKeyPolicy(key: $key, input: $input) {
        policy { allowedIps rateLimits { name limit periodSeconds } credits { remaining refill { amount interval day } } } } }`, { key: appKey.key, input });
      setForm(policyForm(d.setAppKeyPolicy.policy));
      setSaved(true);
      onSaved();
    } catch (err) {
      setError(err);
    }
  };
  const disabled = !canEdit;
  return html`<section class="panel" aria-labelledby="policy-title">
    <h2 id="policy-title">Policy in this account</h2>
    <p class="lead">Checked on every request of the key here, in this order: address, rate limits, credits.</p>
    <form onSubmit=${submit} novalidate>
      <${Field} label="Allowed addresses (IPs or CIDR ranges, one per line; empty: any address)" name="input.allowedIps" error=${at("input.allowedIps")}>
        ${(a) => html`<textarea ...${a} rows="3" disabled=${disabled} value=${form.allowedIps} onInput=${(e) => setForm({ ...form, allowedIps: e.target.value })}></textarea>`}
      <//>
      ${canEdit && html`<div class="inline-tools">
        <button type="button" onClick=${suggest}>Suggest from the last 30 days</button>
        ${suggestion && (suggestion.length
          ? html`<span>Used from ${suggestion.join(", ")}. <button type="button" onClick=${() => { setForm({ ...form, allowedIps: suggestion.join("\n") }); setSuggestion(null); }}>Use these</button></span>`
          : html`<span>No valid request in the last 30 days to learn from.</span>`)}
      </div>`}
      <fieldset class="group">
        <legend>Rate limits (every one must admit a request)</legend>
        ${form.rateLimits.length === 0 && html`<p class="hint-text">None: no limit on how often.</p>`}
        ${form.rateLimits.map((l, i) => html`<div class="limit-row">
          <${Field} label="Name" name=${"input.rateLimits[" + i + "].name"} error=${fields["input.rateLimits[" + i + "].name"]}>
            ${(a) => html`<input ...${a} disabled=${disabled} value=${l.name} onInput=${(e) => setLimit(i, "name", e.target.value)} />`}
          <//>
          <${Field} label="Requests" name=${"input.rateLimits[" + i + "].limit"} error=${fields["input.rateLimits[" + i + "].limit"]}>
            ${(a) => html`<input ...${a} type="number" min="1" disabled=${disabled} value=${l.limit} onInput=${(e) => setLimit(i, "limit", e.target.value)} />`}
          <//>
          <${Field} label="Per seconds" name=${"input.rateLimits[" + i + "].periodSeconds"} error=${fields["input.rateLimits[" + i + "].periodSeconds"]}>
            ${(a) => html`<input ...${a} type="number" min="1" disabled=${disabled} value=${l.periodSeconds} onInput=${(e) => setLimit(i, "periodSeconds", e.target.value)} />`}
          <//>
          ${canEdit && html`<button type="button" class="remove" aria-label=${"Remove the limit " + (l.name || i + 1)} onClick=${() => setForm({ ...form, rateLimits: form.rateLimits.filter((_, j) => j !== i) })}>Remove</button>`}
        </div>`)}
        ${canEdit && html`<button type="button" onClick=${() => setForm({ ...form, rateLimits: [...form.rateLimits, { name: "limit" + (form.rateLimits.length + 1), limit: "100", periodSeconds: "60" }] })}>Add a rate limit</button>`}
      </fieldset>
      <fieldset class="group">
        <legend>Credits</legend>
        <label class="check"><input type="checkbox" disabled=${disabled} checked=${form.credits.on} onChange=${() => setCredits("on", !form.credits.on)} /> Limit the key to a number of requests</label>
        ${form.credits.on && html`<div class="limit-row">
          <${Field} label="Remaining" name="input.credits.remaining" error=${fields["input.credits.remaining"]}>
            ${(a) => html`<input ...${a} type="number" min="0" disabled=${disabled} value=${form.credits.remaining} onInput=${(e) => setCredits("remaining", e.target.value)} />`}
          <//>
          <${Field} label="Refill" name="input.credits.refill.interval" error=${fields["input.credits.refill.interval"]}>
            ${(a) => html`<select ...${a} disabled=${disabled} value=${form.credits.interval} onChange=${(e) => setCredits("interval", e.target.value)}>
              <option value="">Never</option><option value="DAILY">Daily (00:00 UTC)</option><option value="MONTHLY">Monthly</option>
            </select>`}
          <//>
          ${form.credits.interval && html`<${Field} label="Refill to" name="input.credits.refill.amount" error=${fields["input.credits.refill.amount"]}>
            ${(a) => html`<input ...${a} type="number" min="0" disabled=${disabled} value=${form.credits.amount} onInput=${(e) => setCredits("amount", e.target.value)} />`}
          <//>`}
          ${form.credits.interval === "MONTHLY" && html`<${Field} label="On day (1–31)" name="input.credits.refill.day" error=${fields["input.credits.refill.day"]}>
            ${(a) => html`<input ...${a} type="number" min="1" max="31" disabled=${disabled} value=${form.credits.day} onInput=${(e) => setCredits("day", e.target.value)} />`}
          <//>`}
        </div>`}
      </fieldset>
      <${General} error=${unplaced(error)} />
      <p class="hint" role="status">${saved ? "Policy saved." : ""}</p>
      ${canEdit && html`<div class="actions left"><button type="submit" class="primary">Save policy</button></div>`}
    </form>
  </section>`;
}

const OUTCOMES = [
  ["valid", "Valid", "var(--c-valid)"],
  ["forbidden", "Forbidden", "var(--c-forbidden)"],
  ["ipNotAllowed", "Address not allowed", "var(--c-ip)"],
  ["rateLimited", "Rate limited", "var(--c-limited)"],
  ["usageExceeded", "Credits used up", "var(--c-credits)"],
  ["disabled", "Disabled", "var(--c-disabled)"],
  ["invalidToken", "Wrong token", "var(--c-token)"],
];

/** Requests per day (30 days) or per hour (48 hours) by outcome, as stacked bars drawn in SVG. */
function UsageChart({ appKey }) {
  const [points, setPoints] = useState(null);
  const [error, setError] = useState(null);
  const [granularity, setGranularity] = useState("DAY");
  useEffect(() => {
    const to = new Date();
    const from = new Date(to.getTime() - (granularity === "DAY" ? 29 * 86400000 : 47 * 3600000));
    gql(`query Usage($key: String!, $from: DateTime!, $to: DateTime!, $granularity: UsageGranularity) { appKey(key: $key) {
      usage(from: $from, to: $to, granularity: $granularity) { at ${OUTCOMES.map(([o]) => o).join(" ")} } } }`,
      { key: appKey.key, from: from.toISOString(), to: to.toISOString(), granularity }).then((d) => setPoints(d.appKey.usage), setError);
  }, [appKey.key, granularity]);
  if (error) return html`<${General} error=${error} />`;
  if (!points) return html`<p class="loading">Loading usage…</p>`;
  const totals = OUTCOMES.map(([o]) => points.reduce((sum, p) => sum + p[o], 0));
  const max = Math.max(1, ...points.map((p) => OUTCOMES.reduce((sum, [o]) => sum + p[o], 0)));
  const width = 600, height = 160, gap = 2;
  const bar = width / points.length;
  const all = totals.reduce((a, b) => a + b, 0);
  const daily = granularity === "DAY";
  const span = daily ? "per day over the last 30 days" : "per hour over the last 48 hours";
  const summary = `Requests ${span}: ${all} in all, ` + OUTCOMES.map(([, label], i) => `${totals[i]} ${label.toLowerCase()}`).join(", ") + ".";
  const tick = (at) => (daily ? new Date(at).toLocaleDateString() : new Date(at).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit" }));
  return html`<section class="panel" aria-labelledby="usage-title">
    <div class="title-row">
      <h2 id="usage-title">Usage, ${daily ? "last 30 days" : "last 48 hours"}</h2>
      <div class="tools" role="group" aria-label="Usage by">
        <button type="button" aria-pressed=${daily ? "true" : "false"} onClick=${() => setGranularity("DAY")}>By day</button>
        <button type="button" aria-pressed=${daily ? "false" : "true"} onClick=${() => setGranularity("HOUR")}>By hour</button>
      </div>
    </div>
    <svg class="chart" viewBox=${`0 0 ${width} ${height + 18}`} role="img" aria-label=${summary}>
      <line x1="0" y1=${height} x2=${width} y2=${height} class="axis" />
      ${points.map((p, i) => {
        let y = height;
        return html`<g>${OUTCOMES.map(([o, label, color]) => {
          const h = (p[o] / max) * (height - 4);
          y -= h;
          return p[o] ? html`<rect x=${i * bar + gap / 2} y=${y} width=${Math.max(1, bar - gap)} height=${h} style=${"fill:" + color}><title>${tick(p.at)}: ${p[o]} ${label.toLowerCase()}</title></rect>` : null;
        })}</g>`;
      })}
      <text x="0" y=${height + 14} class="tick">${tick(points[0].at)}</text>
      <text x=${width} y=${height + 14} class="tick" text-anchor="end">${tick(points[points.length - 1].at)}</text>
      <text x="4" y="12" class="tick">max ${max} ${daily ? "a day" : "an hour"}</text>
    </svg>
    <ul class="legend">${OUTCOMES.map(([, label, color], i) => html`<li><span class="swatch" style=${"background:" + color}></span>${label}: ${totals[i]}</li>`)}</ul>
  </section>`;
}

/** Which resources the key never needed lately, and the role change that would drop them. */
function PermissionHints({ appKey, canEdit, onChanged }) {
  const [usage, setUsage] = useState(null);
  const [confirming, setConfirming] = useState(false);
  useEffect(() => {
    gql("query Permissions($key: String!) { appKey(key: $key) { permissionUsage { resource { id name } lastUsedAt grantedBy { id name } } } }", { key: appKey.key })
      .then((d) => setUsage(d.appKey.permissionUsage), () => setUsage([]));
  }, [appKey.key, appKey.roles.map((r) => r.id).join()]);
  if (!usage || usage.length === 0) return null;
  const since = Date.now() - 90 * 86400000;
  const unused = usage.filter((u) => !u.lastUsedAt || new Date(u.lastUsedAt).getTime() < since);
  // A role can go when none of the resources it grants here was needed in 90 days.
  const needed = new Set(usage.filter((u) => !unused.includes(u)).flatMap((u) => u.grantedBy.map((r) => r.id)));
  const kept = appKey.roles.filter((r) => needed.has(r.id));
  const dropped = appKey.roles.filter((r) => !needed.has(r.id));
  return html`<section class="panel" aria-labelledby="permissions-title">
    <h2 id="permissions-title">Permissions</h2>
    <p><strong>${unused.length} of ${usage.length}</strong> permissions unused for 90 days.</p>
    <table>
      <caption class="visually-hidden">Resources the key holds here and when each was last needed</caption>
      <thead><tr><th scope="col">Resource</th><th scope="col">Last needed</th><th scope="col">Granted by</th></tr></thead>
      <tbody>${usage.map((u) => html`<tr class=${unused.includes(u) ? "unused" : ""}>
        <td><code>${u.resource.id}</code></td><td>${u.lastUsedAt ? when(u.lastUsedAt) : "never"}</td><td>${u.grantedBy.map((r) => r.name).join(", ")}</td>
      </tr>`)}</tbody>
    </table>
    ${canEdit && dropped.length > 0 && html`<p>Removing ${dropped.map((r) => html`<strong>${r.name}</strong> `)} would take away only unused permissions${kept.length ? "" : " (and leave the key no role here)"}.
      <button type="button" onClick=${() => setConfirming(true)}>Remove unused roles</button></p>`}
    ${confirming && html`<${ConfirmDialog} title="Remove unused roles" onClose=${() => setConfirming(false)} onDone=${() => { setConfirming(false); onChanged(); }}
        action=${() => gql("mutation SetRoles($key: String!, $roleIds: [ID!]!) { setAppKeyRoles(key: $key, roleIds: $roleIds) { key } }", { key: appKey.key, roleIds: kept.map((r) => r.id) })}>
        <p>The key keeps ${kept.length ? kept.map((r) => r.name).join(", ") : "no role"} and loses ${dropped.map((r) => r.name).join(", ")}.</p>
      <//>`}
  </section>`;
}

// --- Users -------------------------------------------------------------------------------------

const SAVE_USER = ["LicenseManager.SaveUser"];
const EDIT_ROLES = ["LicenseManager.SaveAccessProfile"];
const READ_SETTINGS = ["ApiKeys.View", "ApiKeys.Edit", "ApiKeys.EditSettings", "LicenseManager.SaveUser"];
const EDIT_SETTINGS = ["ApiKeys.EditSettings"];

/** A page of a connection with paging both ways; `variables` restart it from the first page. */
function usePaged(query, field, variables, reload) {
  const [cursor, setCursor] = useState({ first: PAGE_SIZE });
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => setCursor({ first: PAGE_SIZE }), [JSON.stringify(variables)]);
  useEffect(() => {
    let live = true;
    gql(query, { ...variables, ...cursor }).then(
      (d) => live && (setPage(d[field]), setError(null)),
      (e) => live && setError(e)
    );
    return () => { live = false; };
  }, [JSON.stringify(cursor), JSON.stringify(variables), reload]);
  const next = () => setCursor({ first: PAGE_SIZE, after: page.pageInfo.endCursor });
  const previous = () => setCursor({ last: PAGE_SIZE, before: page.pageInfo.startCursor });
  return { page, error, next, previous };
}

function Pages({ page, next, previous, label, noun }) {
  if (!page) return null;
  return html`<nav class="pager" aria-label=${label + " pages"}>
    <button type="button" onClick=${previous} disabled=${!page.pageInfo.hasPreviousPage}>← Previous</button>
    <span>${page.totalCount} ${page.totalCount === 1 ? noun[0] : noun[1]}</span>
    <button type="button" onClick=${next} disabled=${!page.pageInfo.hasNextPage}>Next →</button>
  </nav>`;
}

const USERS = `query Users($first: Int, $after: String, $last: Int, $before: String, $search: String) {
  users(first: $first, after: $after, last: $last, before: $before, search: $search) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } nodes { id email createdAt roles { id name } } } }`;

function UsersPage({ viewer }) {
  const [search, setSearch] = useState("");
  const [filter, setFilter] = useState({});
  const [reload, setReload] = useState(0);
  const [dialog, setDialog] = useState(null);
  const { page, error, next, previous } = usePaged(USERS, "users", filter, reload);
  const close = () => { setDialog(null); setReload(reload + 1); };
  return html`<section aria-labelledby="page-title">
    <div class="title-row">
      <h1 id="page-title">Users</h1>
      <div class="tools"><button type="button" class="primary" onClick=${() => setDialog({ kind: "add" })}>Add user</button></div>
    </div>
    <p class="lead">The people who can sign in to <strong>${viewer.account}</strong>, and the roles that say what each may do.</p>
    <form class="search" role="search" onSubmit=${(e) => { e.preventDefault(); setFilter(search ? { search } : {}); }}>
      <label for="user-search">Search</label>
      <input id="user-search" type="search" placeholder="Email" value=${search} onInput=${(e) => setSearch(e.target.value)} />
      <button type="submit">Search</button>
    </form>
    <${General} error=${error} />
    ${page && html`<table>
      <caption class="visually-hidden">Users of this account</caption>
      <thead><tr><th scope="col">Email</th><th scope="col">Roles</th><th scope="col">Added</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${page.nodes.length === 0 && html`<tr><td colspan="4" class="empty">No users match.</td></tr>`}
        ${page.nodes.map((u) => html`<tr>
          <td>${u.email}</td>
          <td>${u.roles.map((r) => r.name).join(", ") || "—"}</td>
          <td>${when(u.createdAt)}</td>
          <td class="row-actions">
            <button type="button" aria-label=${"Change roles of " + u.email} onClick=${() => setDialog({ kind: "roles", user: u })}>Roles</button>
            ${!(viewer.user && viewer.user.email === u.email) && html`<button type="button" class="danger" aria-label=${"Remove " + u.email} onClick=${() => setDialog({ kind: "remove", user: u })}>Remove</button>`}
          </td>
        </tr>`)}
      </tbody>
    </table>`}
    <${Pages} page=${page} next=${next} previous=${previous} label="Users" noun=${["user", "users"]} />
    ${dialog && dialog.kind === "add" && html`<${AddUserDialog} viewer=${viewer} onClose=${close} />`}
    ${dialog && dialog.kind === "roles" && html`<${UserRolesDialog} viewer=${viewer} user=${dialog.user} onClose=${close} />`}
    ${dialog && dialog.kind === "remove" && html`<${ConfirmDialog} title="Remove user" danger=${true} confirmWord=${dialog.user.email} onClose=${close} onDone=${close}
        action=${() => gql("mutation RemoveUser($userId: ID!) { removeUser(userId: $userId) }", { userId: dialog.user.id })}>
        <p>${dialog.user.email} can no longer sign in to ${viewer.account}; their sessions end at once.</p>
      <//>`}
  </section>`;
}

function AddUserDialog({ viewer, onClose }) {
  const roles = useRoles(viewer);
  const [email, setEmail] = useState("");
  const [chosen, setChosen] = useState([]);
  const [added, setAdded] = useState(null);
  const [copied, setCopied] = useState(false);
  const [submit, error] = useSubmit(async () => {
    const d = await gql("mutation AddUser($input: AddUserInput!) { addUser(input: $input) { user { email } oneTimePassword } }", { input: { email, roleIds: chosen } });
    setAdded(d.addUser);
  });
  if (added) {
    return html`<${Dialog} title="User added" onClose=${onClose}>
      <div class="reveal">
        <p class="warning" role="alert"><strong>Give this one-time password to ${added.user.email} now.</strong> You will not see it again.</p>
        <label for="one-time-password">One-time password</label>
        <div class="copy-row">
          <input id="one-time-password" class="token" readonly value=${added.oneTimePassword} onFocus=${(e) => e.target.select()} />
          <button type="button" onClick=${async () => { try { await navigator.clipboard.writeText(added.oneTimePassword); } catch (e) { /* select and copy by hand */ } setCopied(true); }}>${copied ? "Copied" : "Copy"}</button>
        </div>
        <div class="actions"><button type="button" class="primary" onClick=${onClose}>Done</button></div>
      </div>
    <//>`;
  }
  const fields = fieldsOf(error);
  return html`<${Dialog} title="Add user" onClose=${onClose}>
    <form onSubmit=${submit} novalidate>
      <${Field} label="Email" name="input.email" error=${fields["input.email"]}>
        ${(a) => html`<input ...${a} type="email" autocomplete="off" value=${email} onInput=${(e) => setEmail(e.target.value)} />`}
      <//>
      <${RolePicker} roles=${roles} chosen=${chosen} onChange=${setChosen} error=${fields["input.roleIds"] || fields["roleIds"] || rolesRefusal(error)} />
      <${General} error=${rolesRefusal(error) ? null : unplaced(error)} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary">Create user</button>
      </div>
    </form>
  <//>`;
}

function UserRolesDialog({ viewer, user, onClose }) {
  const save = (roleIds) =>
    gql("mutation SetUserRoles($userId: ID!, $roleIds: [ID!]!) { setUserRoles(userId: $userId, roleIds: $roleIds) { id } }", { userId: user.id, roleIds });
  return html`<${RoleChangeDialog} viewer=${viewer} title=${"Roles of " + user.email} current=${user.roles} save=${save} onClose=${onClose} />`;
}

// --- Roles -------------------------------------------------------------------------------------

function RolesPage({ viewer }) {
  const [roles, setRoles] = useState(null);
  const [catalogue, setCatalogue] = useState([]);
  const [error, setError] = useState(null);
  const [dialog, setDialog] = useState(null);
  const load = () => {
    gql("query RolesPage { roles { id name predefined resources { id name } heldBy { users keys } } resources { id name } }").then(
      (d) => { setRoles(d.roles); setCatalogue(d.resources); setError(null); },
      setError
    );
  };
  useEffect(load, []);
  const close = () => { setDialog(null); load(); };
  const canEdit = holds(viewer, EDIT_ROLES);
  return html`<section aria-labelledby="page-title">
    <div class="title-row">
      <h1 id="page-title">Roles</h1>
      <div class="tools">${canEdit && html`<button type="button" class="primary" onClick=${() => setDialog({ kind: "edit", role: null })}>New role</button>`}</div>
    </div>
    <p class="lead">A role is a set of resources. Predefined roles come with appkeys and cannot change; custom roles are yours.</p>
    <${General} error=${error} />
    ${roles && html`<table>
      <caption class="visually-hidden">Roles of this account</caption>
      <thead><tr><th scope="col">Role</th><th scope="col">Kind</th><th scope="col">Resources</th><th scope="col">Held by</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${roles.map((r) => html`<tr>
        <td>${r.name}</td>
        <td>${r.predefined ? "predefined" : "custom"}</td>
        <td class="resources">${r.resources.map((x) => x.id).join(", ") || "—"}</td>
        <td class="holders">${r.heldBy.users.length + r.heldBy.keys.length === 0 ? "nobody" : html`<details>
          <summary>${r.heldBy.users.length} ${r.heldBy.users.length === 1 ? "user" : "users"}, ${r.heldBy.keys.length} ${r.heldBy.keys.length === 1 ? "key" : "keys"}</summary>
          <ul>${r.heldBy.users.map((u) => html`<li>${u}</li>`)}${r.heldBy.keys.map((k) => html`<li><a href=${keyPath(k)}><code>${k}</code></a></li>`)}</ul>
        </details>`}</td>
        <td class="row-actions">${canEdit && !r.predefined && html`
          <button type="button" aria-label=${"Edit " + r.name} onClick=${() => setDialog({ kind: "edit", role: r })}>Edit</button>
          <button type="button" class="danger" aria-label=${"Delete " + r.name} onClick=${() => setDialog({ kind: "delete", role: r })}>Delete</button>`}</td>
      </tr>`)}</tbody>
    </table>`}
    ${dialog && dialog.kind === "edit" && html`<${RoleDialog} role=${dialog.role} catalogue=${catalogue} onClose=${close} />`}
    ${dialog && dialog.kind === "delete" && html`<${ConfirmDialog} title="Delete role" danger=${true} confirmWord=${dialog.role.name} onClose=${close} onDone=${close}
        action=${() => gql("mutation DeleteRole($id: ID!) { deleteRole(id: $id) }", { id: dialog.role.id })}>
        <p>Keys and users lose what this role gave them, at once.</p>
      <//>`}
  </section>`;
}

/** The catalogue as checkboxes grouped by the part of the id before the dot (ApiKeys, LicenseManager, …). */
function ResourcePicker({ catalogue, chosen, onChange, error }) {
  const groups = {};
  for (const r of catalogue) (groups[r.id.split(".")[0]] = groups[r.id.split(".")[0]] || []).push(r);
  const toggle = (id) => onChange(chosen.includes(id) ? chosen.filter((x) => x !== id) : [...chosen, id]);
  return html`<div class="resource-groups" aria-describedby=${error ? "resources-error" : undefined}>
    ${Object.entries(groups).map(([group, resources]) => html`<fieldset class="roles">
      <legend>${group}</legend>
      ${resources.map((r) => html`<label class="check">
        <input type="checkbox" name="resource" value=${r.id} checked=${chosen.includes(r.id)} onChange=${() => toggle(r.id)} />
        ${r.name} <code>${r.id}</code>
      </label>`)}
    </fieldset>`)}
    <${ErrorText} id="resources-error" message=${error} />
  </div>`;
}

function RoleDialog({ role, catalogue, onClose }) {
  const [name, setName] = useState(role ? role.name : "");
  const [chosen, setChosen] = useState(role ? role.resources.map((r) => r.id) : []);
  const [submit, error] = useSubmit(async () => {
    if (role) {
      await gql("mutation UpdateRole($id: ID!, $input: UpdateRoleInput!) { updateRole(id: $id, input: $input) { id } }", { id: role.id, input: { name, resourceIds: chosen } });
    } else {
      await gql("mutation CreateRole($input: CreateRoleInput!) { createRole(input: $input) { id } }", { input: { name, resourceIds: chosen } });
    }
    onClose();
  });
  const fields = fieldsOf(error);
  return html`<${Dialog} title=${role ? "Edit role" : "New role"} onClose=${onClose}>
    <form onSubmit=${submit} novalidate>
      <${Field} label="Name" name="input.name" error=${fields["input.name"]}>
        ${(a) => html`<input ...${a} value=${name} onInput=${(e) => setName(e.target.value)} />`}
      <//>
      <${ResourcePicker} catalogue=${catalogue} chosen=${chosen} onChange=${setChosen} error=${fields["input.resourceIds"]} />
      <${General} error=${unplaced(error)} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary">${role ? "Save role" : "Create role"}</button>
      </div>
    </form>
  <//>`;
}

// --- Settings ----------------------------------------------------------------------------------

const SETTINGS = [
  ["renewalPeriodDays", "Renewal period (days)", "A token older than this is flagged for renewal (renewalAlert) and announced once as app_key.renewal_due.", true],
  ["maxLifetimeDays", "Maximum lifetime (days)", "New keys and renewals expire at most this many days ahead; empty: keys may live for ever.", false],
  ["deactivateUnusedAfterDays", "Deactivate unused keys after (days)", "Keys with no valid use for this long are deactivated by appkeys (reason INACTIVITY); empty: never.", false],
  ["expiryWarningDays", "Expiry warning (days)", "app_key.expiring is announced this many days before a key expires.", true],
];

function SettingsPage({ viewer }) {
  const [values, setValues] = useState(null);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  const canEdit = holds(viewer, EDIT_SETTINGS);
  const fields = SETTINGS.map(([name]) => name).join(" ");
  useEffect(() => {
    gql(`query Settings { appKeySettings { ${fields} } }`).then(
      (d) => setValues(Object.fromEntries(Object.entries(d.appKeySettings).map(([k, v]) => [k, v === null ? "" : String(v)]))),
      setError
    );
  }, []);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setSaved(false);
    const input = Object.fromEntries(SETTINGS.map(([name, , , required]) => [name, values[name] === "" ? (required ? undefined : null) : Number(values[name])]));
    try {
      await gql(`mutation SaveSettings($input: AppKeySettingsInput!) { updateAppKeySettings(input: $input) { ${fields} } }`, { input });
      setSaved(true);
    } catch (err) {
      setError(err);
    }
  };
  const errors = fieldsOf(error);
  return html`<section aria-labelledby="page-title">
    <h1 id="page-title">Settings</h1>
    <p class="lead">How keys of <strong>${viewer.account}</strong> age: renewal, lifetime, inactivity and warnings.</p>
    ${!values && html`<${General} error=${error} />`}
    ${values && html`<form class="settings" onSubmit=${submit} novalidate>
      ${SETTINGS.map(([name, label, effect]) => html`<${Field} label=${label} name=${"input." + name} error=${errors["input." + name] || errors[name]}>
        ${(a) => html`<input ...${a} type="number" min="0" step="1" disabled=${!canEdit} value=${values[name]} aria-describedby=${a["aria-describedby"] || "f-input-" + name + "-effect"}
          onInput=${(e) => setValues({ ...values, [name]: e.target.value })} />
          <p class="hint-text" id=${"f-input-" + name + "-effect"}>${effect}</p>`}
      <//>`)}
      <${General} error=${unplaced(error)} />
      <p class="hint" role="status">${saved ? "Saved." : ""}</p>
      ${canEdit ? html`<div class="actions left"><button type="submit" class="primary">Save settings</button></div>`
        : html`<p class="notice">Changing settings needs ApiKeys.EditSettings.</p>`}
    </form>`}
  </section>`;
}

// --- Webhooks ----------------------------------------------------------------------------------

const EVENT_TYPES = ["app_key.generated", "app_key.renewed", "app_key.renewal_finished", "app_key.renewal_undone",
  "app_key.activated", "app_key.deactivated", "app_key.deleted", "app_key.roles_changed", "app_key.external_added",
  "app_key.external_removed", "app_key.expiring", "app_key.expired", "app_key.renewal_due", "app_key.auto_deactivated",
  "app_key.credits_low", "app_key.credits_exhausted", "app_key.leaked"];

const DELIVERIES = `query Deliveries($first: Int, $after: String, $last: Int, $before: String, $filter: WebhookDeliveryFilter) {
  webhookDeliveries(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { id endpointId eventType key status attempts nextAttemptAt lastAttemptAt lastStatusCode lastError createdAt } } }`;

function WebhooksPage({ viewer }) {
  const [endpoints, setEndpoints] = useState(null);
  const [error, setError] = useState(null);
  const [dialog, setDialog] = useState(null);
  const [filter, setFilter] = useState({});
  const [reload, setReload] = useState(0);
  const [actionError, setActionError] = useState(null);
  const canEdit = holds(viewer, EDIT_SETTINGS);
  const load = () => gql("query Endpoints { webhookEndpoints { id url events createdAt createdBy } }").then((d) => setEndpoints(d.webhookEndpoints), setError);
  useEffect(load, []);
  const { page, error: pageError, next, previous } = usePaged(DELIVERIES, "webhookDeliveries", { filter }, reload);
  const close = () => { setDialog(null); load(); setReload(reload + 1); };
  const redeliver = async (id) => {
    setActionError(null);
    try {
      await gql("mutation Redeliver($id: ID!) { redeliverWebhook(id: $id) { id } }", { id });
      setReload(reload + 1);
    } catch (e) {
      setActionError(e);
    }
  };
  const urlOf = (id) => (endpoints || []).find((e) => e.id === id)?.url || "deleted endpoint";
  return html`<section aria-labelledby="page-title">
    <div class="title-row">
      <h1 id="page-title">Webhooks</h1>
      <div class="tools">${canEdit && html`<button type="button" class="primary" onClick=${() => setDialog({ kind: "add" })}>Add endpoint</button>`}</div>
    </div>
    <p class="lead">Key events, signed (Standard Webhooks) and sent to your endpoints, retried for 24 hours.</p>
    <${General} error=${error} />
    <h2>Endpoints</h2>
    ${endpoints && html`<table>
      <caption class="visually-hidden">Webhook endpoints</caption>
      <thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Added</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${endpoints.length === 0 && html`<tr><td colspan="4" class="empty">No endpoints yet.</td></tr>`}
        ${endpoints.map((e) => html`<tr>
          <td><code>${e.url}</code></td>
          <td>${e.events ? e.events.join(", ") : "every event"}</td>
          <td>${when(e.createdAt)} by ${e.createdBy}</td>
          <td class="row-actions">${canEdit && html`<button type="button" class="danger" aria-label=${"Delete endpoint " + e.url} onClick=${() => setDialog({ kind: "delete", endpoint: e })}>Delete</button>`}</td>
        </tr>`)}
      </tbody>
    </table>`}
    <h2>Deliveries</h2>
    <form class="search" onSubmit=${(e) => e.preventDefault()}>
      <label for="delivery-endpoint">Endpoint</label>
      <select id="delivery-endpoint" value=${filter.endpointId || ""} onChange=${(e) => setFilter({ ...filter, endpointId: e.target.value || undefined })}>
        <option value="">Any</option>
        ${(endpoints || []).map((e) => html`<option value=${e.id}>${e.url}</option>`)}
      </select>
      <label for="delivery-status">Status</label>
      <select id="delivery-status" value=${filter.status || ""} onChange=${(e) => setFilter({ ...filter, status: e.target.value || undefined })}>
        <option value="">Any</option><option value="PENDING">Pending</option><option value="DELIVERED">Delivered</option><option value="FAILED">Failed</option>
      </select>
    </form>
    <${General} error=${pageError || actionError} />
    ${page && html`<table>
      <caption class="visually-hidden">Webhook deliveries, newest first</caption>
      <thead><tr><th scope="col">Event</th><th scope="col">Key</th><th scope="col">Endpoint</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Next retry</th><th scope="col">Last response</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${page.nodes.length === 0 && html`<tr><td colspan="8" class="empty">No deliveries.</td></tr>`}
        ${page.nodes.map((d) => html`<tr>
          <td><code>${d.eventType}</code></td>
          <td><code class="key-value">${d.key}</code></td>
          <td>${urlOf(d.endpointId)}</td>
          <td><span class=${"status status-" + d.status.toLowerCase()}>${d.status.toLowerCase()}</span></td>
          <td>${d.attempts}</td>
          <td>${d.nextAttemptAt ? when(d.nextAttemptAt) : "—"}</td>
          <td>${d.lastStatusCode ? "HTTP " + d.lastStatusCode : ""} ${d.lastError || (d.lastAttemptAt ? "" : "not tried yet")}</td>
          <td class="row-actions">${canEdit && d.status !== "PENDING" && html`<button type="button" aria-label=${"Redeliver " + d.eventType + " for " + d.key} onClick=${() => redeliver(d.id)}>Redeliver</button>`}</td>
        </tr>`)}
      </tbody>
    </table>`}
    <${Pages} page=${page} next=${next} previous=${previous} label="Deliveries" noun=${["delivery", "deliveries"]} />
    ${dialog && dialog.kind === "add" && html`<${EndpointDialog} onClose=${close} />`}
    ${dialog && dialog.kind === "delete" && html`<${ConfirmDialog} title="Delete endpoint" danger=${true} onClose=${close} onDone=${close}
        action=${() => gql("mutation DeleteEndpoint($id: ID!) { deleteWebhookEndpoint(id: $id) }", { id: dialog.endpoint.id })}>
        <p>${dialog.endpoint.url} stops receiving events; its pending deliveries are not sent.</p>
      <//>`}
  </section>`;
}

function EndpointDialog({ onClose }) {
  const [url, setUrl] = useState("");
  const [every, setEvery] = useState(true);
  const [events, setEvents] = useState([]);
  const [created, setCreated] = useState(null);
  const [submit, error] = useSubmit(async () => {
    const d = await gql("mutation CreateEndpoint($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { url } secret } }",
      { input: { url, events: every ? null : events } });
    setCreated(d.createWebhookEndpoint);
  });
  if (created) {
    return html`<${Dialog} title="Endpoint added" onClose=${onClose}>
      <div class="reveal">
        <p class="warning" role="alert"><strong>Copy the signing secret now.</strong> You will not see it again.</p>
        <label for="webhook-secret">Signing secret for ${created.endpoint.url}</label>
        <div class="copy-row"><input id="webhook-secret" class="token" readonly value=${created.secret} onFocus=${(e) => e.target.select()} /></div>
        <div class="actions"><button type="button" class="primary" onClick=${onClose}>Done, I stored it</button></div>
      </div>
    <//>`;
  }
  const fields = fieldsOf(error);
  const toggle = (type) => setEvents(events.includes(type) ? events.filter((t) => t !== type) : [...events, type]);
  return html`<${Dialog} title="Add endpoint" onClose=${onClose}>
    <form onSubmit=${submit} novalidate>
      <${Field} label="URL (https)" name="input.url" error=${fields["input.url"]}>
        ${(a) => html`<input ...${a} type="url" value=${url} placeholder="https://hooks.example.com/appkeys" onInput=${(e) => setUrl(e.target.value)} />`}
      <//>
      <label class="check"><input type="checkbox" checked=${every} onChange=${() => setEvery(!every)} /> Every event</label>
      ${!every && html`<fieldset class="roles" aria-describedby=${fields["input.events"] ? "events-error" : undefined}>
        <legend>Events</legend>
        ${EVENT_TYPES.map((type) => html`<label class="check"><input type="checkbox" checked=${events.includes(type)} onChange=${() => toggle(type)} /> <code>${type}</code></label>`)}
        <${ErrorText} id="events-error" message=${fields["input.events"]} />
      </fieldset>`}
      <${General} error=${unplaced(error)} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary">Save endpoint</button>
      </div>
    </form>
  <//>`;
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
  else if (route === "/users" && holds(viewer, SAVE_USER)) page = html`<${UsersPage} viewer=${viewer} />`;
  else if (route === "/roles" && holds(viewer, READ_ROLES)) page = html`<${RolesPage} viewer=${viewer} />`;
  else if (route === "/settings" && holds(viewer, READ_SETTINGS)) page = html`<${SettingsPage} viewer=${viewer} />`;
  else if (route === "/webhooks" && holds(viewer, READ_SETTINGS)) page = html`<${WebhooksPage} viewer=${viewer} />`;
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
        ${holds(viewer, SAVE_USER) && link("#/users", "Users")}
        ${holds(viewer, READ_ROLES) && link("#/roles", "Roles")}
        ${holds(viewer, READ_SETTINGS) && link("#/settings", "Settings")}
        ${holds(viewer, READ_SETTINGS) && link("#/webhooks", "Webhooks")}
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
