// Live: the change log as it happens, and every session with a revoke button.
//
// Changes come over one WebSocket (`/ws?token=`) subscribed to every entity: an SSE stream
// (`/api/events`) carries one entity, and a browser opens at most six HTTP/1.1 connections per
// server, so a stream per entity would starve Studio's other calls. Browsers' WebSocket cannot
// set headers either, hence the token in the query (Plaza logs paths, never query strings).

import { api, enc, token } from "./api.js";
import { fill, h, header, table, toast, truncate } from "./ui.js";

const KEEP = 500;
const BUFFER_MAX = 5000;
const RECONNECT_MS = 2000;
const PING_MS = 15000;

export function render(root, { manifest }) {
  const entities = (manifest.entities || []).map((e) => e.name);
  const status = h("span.badge", { id: "live-status", role: "status" }, "Connecting…");
  const pause = h("button", { type: "button", id: "pause", "aria-pressed": "false" }, "Pause");
  const entitySel = h("select", { id: "live-entity" }, h("option", { value: "" }, "All entities"),
    entities.map((e) => h("option", { value: e }, e)));
  const text = h("input", { id: "live-filter", type: "search", placeholder: "id, kind or data contains…", autocomplete: "off" });
  const pending = h("span.muted", { id: "live-pending", "aria-live": "polite" });
  const list = h("tbody", { id: "changes" });
  const sessionsSlot = h("section", { "aria-labelledby": "sessions-title" });

  root.append(
    header("Live", status),
    h("section", { "aria-labelledby": "changes-title" },
      h("h2", { id: "changes-title" }, "Change log"),
      h("div.toolbar", {},
        pause,
        h("label", { for: "live-entity" }, "Entity"), entitySel,
        h("label", { for: "live-filter" }, "Filter"), text,
        h("button.quiet", { type: "button", onclick: () => { events.length = 0; draw(); } }, "Clear"),
        pending),
      h("div.table-wrap", {}, h("table.changes", {},
        h("caption", {}, "Changes, newest first"),
        h("thead", {}, h("tr", {}, ["seq", "time", "entity", "kind", "row", "data"].map((c) => h("th", { scope: "col" }, c)))),
        list))),
    sessionsSlot,
  );

  const events = [];
  let buffered = [];
  let paused = false;
  let ws = null;
  let closed = false;
  let lastSeq = null;
  let retry = null;
  let ping = null;

  function matches(ev) {
    if (entitySel.value && ev.entity !== entitySel.value) return false;
    const q = text.value.trim().toLowerCase();
    if (!q) return true;
    return `${ev.row_id} ${ev.kind} ${JSON.stringify(ev.data ?? null)}`.toLowerCase().includes(q);
  }

  function draw() {
    const shown = events.filter(matches);
    fill(list, shown.length
      ? shown.map((ev) => h("tr", { dataset: { seq: String(ev.seq) } },
          h("td", { "data-label": "seq" }, String(ev.seq)),
          h("td", { "data-label": "time" }, ev.timestamp ? ev.timestamp.replace("T", " ") : ""),
          h("td", { "data-label": "entity" }, ev.entity),
          h("td", { "data-label": "kind" }, h(`span.kind.${ev.kind}`, {}, ev.kind)),
          h("td", { "data-label": "row" }, h("code.id", {}, ev.row_id)),
          h("td", { "data-label": "data" }, h("code", {}, truncate(JSON.stringify(ev.data ?? null), 160)))))
      : h("tr", {}, h("td.empty", { colspan: "6" }, paused ? "Paused." : "Waiting for changes…")));
    pending.textContent = paused && buffered.length ? `${buffered.length} new while paused` : "";
  }

  function add(ev) {
    if (paused) {
      buffered.push(ev);
      if (buffered.length > BUFFER_MAX) buffered.shift();
      pending.textContent = `${buffered.length} new while paused`;
      return;
    }
    events.unshift(ev);
    if (events.length > KEEP) events.length = KEEP;
    draw();
  }

  function setStatus(s, kind) {
    status.textContent = s;
    status.dataset.kind = kind;
  }

  function connect() {
    if (closed) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/ws?token=${enc(token.get() || "")}`);
    let waiting = new Set(entities);
    setStatus("Connecting…", "wait");
    ws.onopen = () => {
      for (const e of entities) {
        const frame = { type: "subscribe", id: `studio:${e}`, entity: e };
        if (lastSeq !== null) frame.since = lastSeq;
        ws.send(JSON.stringify(frame));
      }
      if (!entities.length) setStatus("Live (no entities)", "ok");
      ping = setInterval(() => ws.readyState === 1 && ws.send('{"type":"ping"}'), PING_MS);
    };
    ws.onmessage = (m) => {
      let f;
      try {
        f = JSON.parse(m.data);
      } catch {
        return;
      }
      if (f.type === "subscribed") {
        waiting.delete(String(f.id).replace(/^studio:/, ""));
        if (lastSeq === null) lastSeq = f.seq;
        if (!waiting.size) setStatus(paused ? "Paused" : "Live", paused ? "wait" : "ok");
      } else if (f.type === "change") {
        lastSeq = Math.max(lastSeq ?? 0, f.event.seq);
        add(f.event);
      } else if (f.type === "error") {
        if (f.code === "RESYNC_REQUIRED" && f.ref) {
          // Too far behind to replay: carry on from now.
          ws.send(JSON.stringify({ type: "subscribe", id: f.ref, entity: String(f.ref).replace(/^studio:/, "") }));
        } else {
          toast(`Live: ${f.code}: ${f.message}`, "error");
        }
      }
    };
    ws.onclose = (ev) => {
      clearInterval(ping);
      if (closed) return;
      setStatus(ev.code === 4001 ? "Token revoked" : "Disconnected; reconnecting…", "error");
      retry = setTimeout(connect, RECONNECT_MS);
    };
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    setStatus(paused ? "Paused" : "Live", paused ? "wait" : "ok");
    if (!paused) {
      for (const ev of buffered) events.unshift(ev);
      if (events.length > KEEP) events.length = KEEP;
      buffered = [];
    }
    draw();
  });
  entitySel.addEventListener("change", draw);
  text.addEventListener("input", draw);

  draw();
  connect();
  sessions(sessionsSlot);
  return () => {
    closed = true;
    clearTimeout(retry);
    clearInterval(ping);
    if (ws) ws.close(1000);
  };
}

/** Every session and API key, with revoke; `userId` narrows it to one user. */
export function sessions(root, userId = "") {
  const body = h("div");
  const who = h("input", { id: "sessions-user", type: "search", placeholder: "user id", value: userId, autocomplete: "off" });
  root.append(
    h("h2", { id: "sessions-title" }, "Sessions"),
    h("form.toolbar", { role: "search", onsubmit: (ev) => { ev.preventDefault(); load(); } },
      h("label", { for: "sessions-user" }, "User"), who,
      h("button", { type: "submit" }, "Show"),
      h("button.quiet", { type: "button", onclick: () => { who.value = ""; load(); } }, "All")),
    body);

  async function load() {
    let r;
    try {
      r = await api(`/api/admin/sessions?limit=200${who.value ? `&user_id=${enc(who.value)}` : ""}`);
    } catch (e) {
      fill(body, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
      return;
    }
    fill(body,
      h("p.muted", {}, `${r.total} in all${r.total > r.sessions.length ? `, newest ${r.sessions.length} shown` : ""}.`),
      table("Sessions and API keys, newest first", [
        { label: "user", get: (s) => h("code", {}, s.user_id) },
        { label: "kind", get: (s) => (s.kind === "api_key" ? `API key ${s.name || ""} (${s.scope})` : s.guest ? "guest session" : "session") },
        { label: "created", get: (s) => s.created_at },
        { label: "last used", get: (s) => s.last_used_at },
        { label: "expires", get: (s) => s.expires_at || "never" },
        { label: "from", get: (s) => [s.ip, s.user_agent && truncate(s.user_agent, 40)].filter(Boolean).join(" · ") || "—" },
        { label: "Actions", get: (s) => h("button.small.danger", { type: "button", "aria-label": `Revoke session ${s.id} of ${s.user_id}`, onclick: () => revoke(s) }, "Revoke") },
      ], r.sessions, { empty: "No sessions." }));
  }

  async function revoke(s) {
    if (!confirm(`Revoke this ${s.kind === "api_key" ? "API key" : "session"} of ${s.user_id}? Its sockets close.`)) return;
    try {
      await api(`/api/admin/sessions/${enc(s.id)}`, { method: "DELETE" });
      toast(`Revoked ${s.user_id}'s ${s.kind === "api_key" ? "API key" : "session"}.`);
    } catch (e) {
      toast(`${e.code}: ${e.message}`, "error");
    }
    load();
  }

  load();
  return load;
}
