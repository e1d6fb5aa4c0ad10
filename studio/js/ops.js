// Operations: jobs (by status, retry dead ones, cron schedule), files, users with their
// sessions, and cache keys.

import { api, enc } from "./api.js";
import { bytes, cell, dialog, errorSlot, field, fill, h, header, pre, showError, table, toast, truncate, when } from "./ui.js";
import { sessions } from "./live.js";

const STATUSES = ["", "pending", "running", "succeeded", "dead"];
const REFRESH_MS = 2000;

export function jobs(root, { params }) {
  const status = STATUSES.includes(params[0]) ? params[0] : "";
  const listSlot = h("div", { "aria-live": "polite" });
  const cronSlot = h("div");
  root.append(
    header("Jobs", h("button.quiet", { type: "button", onclick: () => load() }, "Refresh")),
    h("nav.tabs", { "aria-label": "Job status" }, h("ul", {}, STATUSES.map((s) =>
      h("li", {}, h("a", { href: `#/jobs/${s}`, "aria-current": s === status ? "page" : false }, s || "all"))))),
    listSlot,
    h("h2", {}, "Cron schedule"), cronSlot);

  async function load() {
    try {
      const r = await api(`/api/jobs?limit=200${status ? `&status=${status}` : ""}`);
      fill(listSlot, table(`${status || "All"} jobs, newest first`, [
        { label: "id", get: (j) => h("code.id", {}, j.id) },
        { label: "name", get: (j) => j.name },
        { label: "status", get: (j) => h(`span.status.${j.status}`, {}, j.status) },
        { label: "attempts", get: (j) => `${j.attempts}/${j.max_attempts}` },
        { label: "run at", get: (j) => j.run_at },
        { label: "last error", get: (j) => (j.last_error ? truncate(j.last_error, 80) : "—") },
        { label: "payload", get: (j) => cell(j.payload) },
        { label: "Actions", get: (j) => (j.status === "dead"
          ? h("button.small", { type: "button", "aria-label": `Retry job ${j.id}`, onclick: () => retry(j) }, "Retry")
          : "") },
      ], r.jobs, { empty: status ? `No ${status} jobs.` : "No jobs yet." }));
    } catch (e) {
      fill(listSlot, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
    }
    try {
      const c = await api("/api/admin/cron");
      fill(cronSlot, table("Cron entries (UTC)", [
        { label: "job", get: (x) => x.name },
        { label: "cron", get: (x) => h("code", {}, x.cron) },
        { label: "last fire", get: (x) => x.last_fire || "—" },
        { label: "next fire", get: (x) => x.next_fire || "—" },
        { label: "payload", get: (x) => cell(x.payload) },
      ], c.entries, { empty: "No cron entries." }));
    } catch (e) {
      fill(cronSlot, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
    }
  }

  async function retry(j) {
    try {
      await api(`/api/jobs/${enc(j.id)}/retry`, { method: "POST" });
      toast(`Job ${j.id} is pending again.`);
    } catch (e) {
      toast(`${e.code}: ${e.message}`, "error");
    }
    load();
  }

  // Jobs move on their own (attempts, retries, cron): keep the list current while it is open.
  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}

export function files(root) {
  const slot = h("div", { "aria-live": "polite" });
  const state = { offset: 0, limit: 100 };
  root.append(header("Files", h("button.quiet", { type: "button", onclick: () => load() }, "Refresh")), slot);

  async function load() {
    let r;
    try {
      r = await api(`/api/admin/files?limit=${state.limit}&offset=${state.offset}`);
    } catch (e) {
      fill(slot, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
      return;
    }
    fill(slot, table("Uploaded files, newest first", [
      { label: "name", get: (f) => h("a", { href: f.url, target: "_blank", rel: "noopener" }, f.name) },
      { label: "type", get: (f) => f.content_type },
      { label: "size", get: (f) => bytes(f.size) },
      { label: "owner", get: (f) => h("code", {}, f.owner) },
      { label: "uploaded", get: (f) => when(f.created_at) },
      { label: "sha256", get: (f) => h("code", { title: f.sha256 }, f.sha256.slice(0, 12) + "…") },
      { label: "Actions", get: (f) => h("button.small.danger", { type: "button", "aria-label": `Delete file ${f.name}`, onclick: () => remove(f) }, "Delete") },
    ], r.files, { empty: "No files uploaded." }),
    h("div.pager", {},
      h("button.quiet", { type: "button", disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, "‹ Previous"),
      h("button.quiet", { type: "button", disabled: r.files.length < state.limit, onclick: () => { state.offset += state.limit; load(); } }, "Next ›")));
  }

  async function remove(f) {
    if (!confirm(`Delete ${f.name}?`)) return;
    try {
      await api(`/api/files/${enc(f.id)}`, { method: "DELETE" });
      toast(`Deleted ${f.name}.`);
    } catch (e) {
      toast(`${e.code}: ${e.message}`, "error");
    }
    load();
  }

  load();
}

export function users(root) {
  const slot = h("div", { "aria-live": "polite" });
  const q = h("input", { id: "user-search", type: "search", placeholder: "part of an email", autocomplete: "off" });
  const sessionsSlot = h("section", { "aria-labelledby": "sessions-title" });
  root.append(
    header("Users"),
    h("form.toolbar", { role: "search", onsubmit: (ev) => { ev.preventDefault(); load(); } },
      h("label", { for: "user-search" }, "Email"), q, h("button", { type: "submit" }, "Search")),
    slot, sessionsSlot);
  let reloadSessions = () => {};

  async function load() {
    let r;
    try {
      r = await api(`/api/admin/users?limit=200${q.value ? `&q=${enc(q.value)}` : ""}`);
    } catch (e) {
      fill(slot, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
      return;
    }
    fill(slot, table("Accounts, newest first", [
      { label: "id", get: (u) => h("code.id", {}, u.id) },
      { label: "email", get: (u) => u.email ?? "—" },
      { label: "verified", get: (u) => (u.verified ? "yes" : "no") },
      { label: "sign-in", get: (u) => [u.has_password ? "password" : "provider", u.totp_enabled ? "TOTP" : null].filter(Boolean).join(" + ") },
      { label: "created", get: (u) => when(u.created_at) },
      { label: "last login", get: (u) => when(u.last_login_at) },
      { label: "Actions", get: (u) => h("button.small", { type: "button", "aria-label": `Sessions of ${u.email || u.id}`, onclick: () => {
        document.getElementById("sessions-user").value = u.id;
        reloadSessions();
      } }, "Sessions") },
    ], r.users, { empty: "No accounts. Sessions below also include magic-code, guest and admin-issued sign-ins." }));
  }

  load();
  reloadSessions = sessions(sessionsSlot);
}

export function cache(root) {
  const prefix = h("input", { id: "cache-prefix", type: "search", placeholder: "key prefix", autocomplete: "off" });
  const slot = h("div", { "aria-live": "polite" });
  const value = h("section.detail", { "aria-live": "polite" });
  root.append(
    header("Cache", h("button", { type: "button", onclick: setForm }, "Set a key")),
    h("form.toolbar", { role: "search", onsubmit: (ev) => { ev.preventDefault(); load(); } },
      h("label", { for: "cache-prefix" }, "Prefix"), prefix, h("button", { type: "submit" }, "List")),
    h("div.split.wide", {}, slot, value));

  async function load() {
    let r;
    try {
      r = await api(`/api/admin/cache?limit=500&prefix=${enc(prefix.value)}`);
    } catch (e) {
      fill(slot, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
      return;
    }
    fill(slot,
      h("p.muted", {}, `${r.total} keys${r.total > r.keys.length ? `, first ${r.keys.length} shown` : ""}.`),
      table("Cache keys in key order", [
        { label: "key", get: (k) => h("button.link", { type: "button", onclick: () => show(k.key) }, k.key) },
        { label: "size", get: (k) => bytes(k.bytes) },
        { label: "expires", get: (k) => (k.expires_at ? when(k.expires_at) : "never") },
        { label: "Actions", get: (k) => h("button.small.danger", { type: "button", "aria-label": `Delete key ${k.key}`, onclick: () => del(k.key) }, "Delete") },
      ], r.keys, { empty: "No keys." }));
  }

  async function show(key) {
    try {
      const r = await api(`/api/cache/${enc(key)}`);
      fill(value, h("h2", {}, key), pre(r.result));
    } catch (e) {
      fill(value, h("h2", {}, key), h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
    }
  }

  async function del(key) {
    try {
      await api(`/api/cache/${enc(key)}`, { method: "DELETE" });
      toast(`Deleted ${key}.`);
    } catch (e) {
      toast(`${e.code}: ${e.message}`, "error");
    }
    fill(value);
    load();
  }

  function setForm() {
    const key = h("input", { required: true, autocomplete: "off" });
    const val = h("textarea.json", { rows: "4", spellcheck: "false", placeholder: '{"any": "JSON"}' });
    const ttl = h("input", { type: "number", min: "0", step: "any", placeholder: "no expiry" });
    const err = errorSlot("cache-json-error");
    dialog("Set a cache key", (form) => {
      form.append(field("Key", key), field("Value (JSON)", val), err, field("TTL (seconds)", ttl, "optional"));
    }, async () => {
      showError(err, null);
      let parsed;
      try {
        parsed = JSON.parse(val.value);
      } catch (e) {
        throw new Error(`Value is not JSON: ${e.message}`);
      }
      const body = { cmd: "SET", key: key.value, value: parsed };
      if (ttl.value) body.ttl = Number(ttl.value);
      await api("/api/cache", { method: "POST", body });
      toast(`Set ${key.value}.`);
      load();
    }, { submitLabel: "Set" });
  }

  load();
}
