// Rooms (members, presence, recent events, state) and shards (tick rate, lateness, players,
// latest snapshot, start/stop). Both refresh on a timer while the page is open.

import { api, enc } from "./api.js";
import { cell, dialog, field, fill, h, header, pre, svg, table, toast } from "./ui.js";

const REFRESH_MS = 2000;
const RECENT_EVENTS = 50;

function every(ms, f) {
  f();
  const t = setInterval(f, ms);
  return () => clearInterval(t);
}

export function rooms(root, { params }) {
  const selected = params[0] || null;
  const listSlot = h("div");
  const detail = h("section.detail", { "aria-live": "polite" });
  root.append(header("Rooms"), h("div.split.wide", {}, h("section", { "aria-label": "Running rooms" }, listSlot), detail));

  async function refresh() {
    try {
      const r = await api("/api/rooms");
      fill(listSlot, table("Running rooms", [
        { label: "room", get: (x) => h("a", { href: `#/rooms/${enc(x.name)}`, "aria-current": x.name === selected ? "true" : false }, x.name) },
        { label: "members", get: (x) => String(x.members) },
      ], r.rooms, { empty: "No room is running." }));
    } catch (e) {
      fill(listSlot, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
    }
    if (selected) await room(selected);
    else fill(detail, h("p.muted", {}, "Choose a room to see its members, presence, state and recent events."));
  }

  async function room(name) {
    let r;
    try {
      r = await api(`/api/rooms/${enc(name)}`);
    } catch (e) {
      fill(detail, h("h2", {}, name), h("p.error", { role: "alert" }, e.status === 404 ? "This room is not running." : `${e.code}: ${e.message}`));
      return;
    }
    let events = [];
    if (r.epoch !== null && r.epoch !== undefined && r.seq > 0) {
      const since = Math.max(0, r.seq - RECENT_EVENTS);
      try {
        const withEvents = await api(`/api/rooms/${enc(name)}?since=${since}&epoch=${enc(r.epoch)}`);
        events = withEvents.events || [];
      } catch {
        events = [];
      }
    }
    fill(detail,
      h("h2", {}, `Room ${r.name}`),
      h("dl.facts", {},
        h("dt", {}, "epoch"), h("dd", {}, r.epoch ?? "not running (saved state)"),
        h("dt", {}, "event seq"), h("dd", {}, String(r.seq ?? 0)),
        h("dt", {}, "state version"), h("dd", {}, String(r.state_version ?? 0))),
      table("Members and presence", [
        { label: "user", get: (m) => h("code", {}, m.user_id) },
        { label: "presence", get: (m) => cell(m.presence) },
      ], r.members || [], { empty: "No members." }),
      h("h3", {}, "State"), pre(r.state ?? {}),
      h("h3", {}, "Recent events"),
      table(`Last ${RECENT_EVENTS} room events, newest first`, [
        { label: "seq", get: (e) => String(e.seq) },
        { label: "from", get: (e) => e.from ?? "server" },
        { label: "event", get: (e) => e.event },
        { label: "data", get: (e) => cell(e.data) },
      ], events.slice().reverse(), { empty: "No buffered events." }));
  }

  return every(REFRESH_MS, refresh);
}

export function shards(root, { params, manifest }) {
  const selected = params[0] || null;
  const listSlot = h("div");
  const lateness = h("p.muted", { id: "shard-lateness" });
  const detail = h("section.detail", { "aria-live": "off" });
  root.append(
    header("Shards", h("button", { type: "button", onclick: start }, "Start a shard")),
    lateness,
    h("div.split.wide", {}, h("section", { "aria-label": "Running shards" }, listSlot), detail));

  async function refresh() {
    try {
      const [r, m] = await Promise.all([api("/api/shards"), api("/metrics")]);
      const late = m.shards && m.shards.tick_lateness;
      const s = m.shards || {};
      lateness.textContent = `${s.running ?? 0} running · tick lateness p99 ${fmtMs(late && late.p99_ms)}, max ${fmtMs(late && late.max_ms)} · overruns ${s.overruns ?? 0} · skipped ticks ${s.skipped_ticks ?? 0} · crashes ${s.crashes ?? 0}`;
      fill(listSlot, table("Running shards", [
        { label: "shard", get: (x) => h("a", { href: `#/shards/${enc(x.name)}`, "aria-current": x.name === selected ? "true" : false }, x.name) },
        { label: "sim", get: (x) => x.sim },
        { label: "tick rate", get: (x) => `${x.tick_hz} Hz` },
        { label: "tick", get: (x) => String(x.tick) },
        { label: "players", get: (x) => String(x.players) },
        { label: "subscribers", get: (x) => String(x.subscribers) },
        { label: "Actions", get: (x) => h("button.small.danger", { type: "button", "aria-label": `Stop shard ${x.name}`, onclick: () => stop(x.name) }, "Stop") },
      ], r.shards, { empty: "No shard is running." }));
    } catch (e) {
      fill(listSlot, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
    }
    if (selected) await snapshot(selected);
    else fill(detail, h("p.muted", {}, "Choose a shard to see its latest snapshot."));
  }

  async function snapshot(name) {
    let r;
    try {
      r = await api(`/api/shards/${enc(name)}`);
    } catch (e) {
      fill(detail, h("h2", {}, name), h("p.error", { role: "alert" }, e.status === 404 ? "This shard is not running." : `${e.code}: ${e.message}`));
      return;
    }
    fill(detail, h("h2", {}, `Shard ${r.name}`), h("p", {}, `${r.sim}, tick ${r.tick}`), arena(r.state), h("h3", {}, "Latest snapshot"), pre(r.state));
  }

  async function stop(name) {
    if (!confirm(`Stop shard ${name}? Its subscribers get SHARD_STOPPED.`)) return;
    try {
      await api(`/api/shards/${enc(name)}`, { method: "DELETE" });
      toast(`Stopped ${name}.`);
    } catch (e) {
      toast(`${e.code}: ${e.message}`, "error");
    }
    refresh();
  }

  function start() {
    const c = {
      name: h("input", { required: true, autocomplete: "off", pattern: "[A-Za-z0-9_.:-]{1,128}" }),
      sim: h("input", { required: true, value: (manifest.shards && manifest.shards[0] && manifest.shards[0].sim) || "arena" }),
      tick: h("input", { type: "number", min: "1", max: "120", step: "1", value: "20" }),
      config: h("textarea.json", { rows: "3", spellcheck: "false", placeholder: '{"width": 100, "height": 100}' }),
      persist: h("input", { type: "checkbox" }),
    };
    dialog("Start a shard", (form) => {
      form.append(field("Name", c.name, "1–128 of A–Z a–z 0–9 _ . : -"), field("Simulation", c.sim, "a registered kind, e.g. arena"),
        field("Tick rate (Hz)", c.tick), field("Config (JSON)", c.config, "optional"), h("div.field.check", {}, field("Persist snapshot", c.persist)));
    }, async () => {
      const body = { name: c.name.value.trim(), sim: c.sim.value.trim(), tick_hz: Number(c.tick.value), persist: c.persist.checked };
      if (c.config.value.trim()) {
        try {
          body.config = JSON.parse(c.config.value);
        } catch (e) {
          throw new Error(`Config is not JSON: ${e.message}`);
        }
      }
      await api("/api/shards", { method: "POST", body });
      toast(`Started ${body.name}.`);
      location.hash = `#/shards/${enc(body.name)}`;
    }, { submitLabel: "Start" });
  }

  return every(REFRESH_MS / 2, refresh);
}

function fmtMs(v) {
  return typeof v === "number" && Number.isFinite(v) ? `${v.toFixed(1)} ms` : "—";
}

/** The arena's players as dots, when the snapshot looks like one. */
function arena(state) {
  if (!state || !state.players || !Array.isArray(state.size)) return null;
  const [w, hgt] = state.size;
  const dots = Object.entries(state.players).map(([id, p]) =>
    svg("circle", { cx: String(p.x), cy: String(p.y), r: String(Math.max(w, hgt) / 60), fill: "#1f6feb" }, svg("title", {}, id)));
  return svg("svg", { class: "arena", viewBox: `0 0 ${w} ${hgt}`, role: "img", "aria-label": `Arena with ${dots.length} players` },
    svg("rect", { x: "0", y: "0", width: String(w), height: String(hgt), fill: "#f4f6f8", stroke: "#889" }), ...dots);
}


