// Health: small live charts from /metrics, polled every 2 s. Rates and latencies are for the
// last interval, not since start: requests/s from the change in request counts, p99s from the
// change in the Prometheus histogram buckets (Accept: text/plain) between two polls. Studio's
// own /metrics polls are left out of both.

import { api, token } from "./api.js";
import { duration, fill, h, header, svg } from "./ui.js";

const POLL_MS = 2000;
const POINTS = 90; // three minutes

const CHARTS = [
  { key: "uptime", title: "Uptime", fmt: (v) => duration(v), note: "a drop is a restart" },
  { key: "rps", title: "Requests/s", fmt: (v) => v.toFixed(1), note: "all routes but /metrics" },
  { key: "p99", title: "p99 latency", fmt: ms, note: "HTTP, this interval" },
  { key: "sockets", title: "Open sockets", fmt: (v) => String(v), note: "WebSockets + SSE streams" },
  { key: "fanout", title: "Fan-out p99", fmt: ms, note: "commit → frame handed to the socket" },
  { key: "queue", title: "Write queue", fmt: (v) => `${v} ops`, note: "ops waiting for the Writer" },
];

function ms(v) {
  return v < 1 ? `${(v * 1000).toFixed(0)} µs` : v < 1000 ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : `${(v / 1000).toFixed(1)} s`;
}

export function render(root) {
  const series = Object.fromEntries(CHARTS.map((c) => [c.key, []]));
  const figures = Object.fromEntries(CHARTS.map((c) => [c.key, h("figure.chart", { id: `chart-${c.key}` })]));
  const status = h("p.muted", { id: "health-status", role: "status" }, "Waiting for the first sample…");
  const extra = h("dl.facts", { id: "health-facts" });
  root.append(header("Health"), status, h("div.charts", {}, CHARTS.map((c) => figures[c.key])), h("h2", {}, "Counters"), extra);
  for (const c of CHARTS) draw(c, figures[c.key], []);

  let prev = null;
  let stopped = false;
  async function poll() {
    let m, text;
    try {
      [m, text] = await Promise.all([api("/metrics"), promText()]);
    } catch (e) {
      status.textContent = `Cannot read /metrics: ${e.message}`;
      return;
    }
    if (stopped) return;
    const now = performance.now();
    const hist = parse(text);
    const sample = {
      t: now,
      requests: hist.requests,
      latency: hist.latency,
      fanout: hist.fanout,
    };
    const point = { uptime: m.uptime_s, sockets: m.ws ? m.ws.open : 0, queue: m.writer ? m.writer.queued_ops : 0 };
    if (prev && now > prev.t) {
      const secs = (now - prev.t) / 1000;
      point.rps = Math.max(0, sample.requests - prev.requests) / secs;
      point.p99 = quantile(prev.latency, sample.latency, 0.99);
      point.fanout = quantile(prev.fanout, sample.fanout, 0.99);
    }
    prev = sample;
    for (const c of CHARTS) {
      const s = series[c.key];
      s.push(point[c.key] ?? null);
      if (s.length > POINTS) s.shift();
      draw(c, figures[c.key], s);
    }
    status.textContent = `Updated ${new Date().toLocaleTimeString()} · polling every ${POLL_MS / 1000} s`;
    fill(extra,
      fact("change log", m.changelog ? `seq ${m.changelog.last_seq} (oldest ${m.changelog.oldest_seq})` : "—"),
      fact("requests", String(m.requests ? m.requests.total : 0)),
      fact("frames in/out", m.ws ? `${m.ws.frames_in} / ${m.ws.frames_out}` : "—"),
      fact("slow consumers dropped", m.ws ? String(m.ws.slow_consumers_dropped) : "—"),
      fact("rooms", m.rooms ? `${m.rooms.active} running, ${m.rooms.members} members` : "—"),
      fact("shards", m.shards ? `${m.shards.running} running` : "—"),
      fact("jobs", m.jobs ? `${m.jobs.pending} pending, ${m.jobs.running} running, ${m.jobs.dead} dead` : "—"),
      fact("cache", m.cache ? `${m.cache.entries} entries` : "—"),
      fact("writer groups in flight", m.writer ? String(m.writer.in_flight_groups) : "—"));
  }
  poll();
  const timer = setInterval(poll, POLL_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

function fact(k, v) {
  return [h("dt", {}, k), h("dd", {}, v)];
}

async function promText() {
  const resp = await fetch("/metrics", { headers: { Accept: "text/plain", Authorization: `Bearer ${token.get()}` }, cache: "no-store" });
  if (!resp.ok) throw new Error(`/metrics answered ${resp.status}`);
  return resp.text();
}

/** Request count and the latency buckets (summed over routes, /metrics left out), fan-out buckets. */
function parse(text) {
  const latency = new Map();
  const fanout = new Map();
  let requests = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line) continue;
    const m = /^(\w+)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = "", raw] = m;
    const value = Number(raw);
    if (name.startsWith("plaza_http_request_duration_seconds") && labels.includes('route="/metrics"')) continue;
    if (name === "plaza_http_request_duration_seconds_count") requests += value;
    else if (name === "plaza_http_request_duration_seconds_bucket") add(latency, le(labels), value);
    else if (name === "plaza_fanout_latency_seconds_bucket") add(fanout, le(labels), value);
  }
  return { requests, latency, fanout };
}

function le(labels) {
  const m = /le="([^"]+)"/.exec(labels);
  return m ? (m[1] === "+Inf" ? Infinity : Number(m[1])) : Infinity;
}

function add(map, k, v) {
  map.set(k, (map.get(k) || 0) + v);
}

/** The q-quantile (ms, a bucket's upper bound) of what was observed between two scrapes. */
function quantile(before, after, q) {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const delta = bounds.map((b) => [b, (after.get(b) || 0) - (before.get(b) || 0)]);
  const total = delta.length ? delta[delta.length - 1][1] : 0;
  if (total <= 0) return null;
  const want = Math.ceil(total * q);
  const hit = delta.find(([, n]) => n >= want);
  if (!hit) return null;
  return Number.isFinite(hit[0]) ? hit[0] * 1000 : bounds.length > 1 ? bounds[bounds.length - 2] * 1000 : null;
}

const W = 240, H = 64;

function draw(c, fig, s) {
  const values = s.filter((v) => v !== null && Number.isFinite(v));
  const last = [...s].reverse().find((v) => v !== null && Number.isFinite(v));
  const peak = values.length ? Math.max(...values) : null;
  const max = Math.max(1e-9, peak ?? 0);
  const span = max;
  const step = W / (POINTS - 1);
  const offset = POINTS - s.length;
  const pts = [];
  s.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) return;
    pts.push(`${((offset + i) * step).toFixed(1)},${(H - 2 - (v / span) * (H - 6)).toFixed(1)}`);
  });
  const current = last === undefined ? "—" : c.fmt(last);
  fill(fig,
    h("figcaption", {}, h("span.title", {}, c.title), h("span.value", { dataset: { metric: c.key } }, current)),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "spark", role: "img", "aria-label": `${c.title}: ${current}; peak ${peak === null ? "—" : c.fmt(peak)}` },
      svg("line", { x1: "0", y1: String(H - 1), x2: String(W), y2: String(H - 1), class: "axis" }),
      pts.length ? svg("polygon", { points: `${pts[0].split(",")[0]},${H - 1} ${pts.join(" ")} ${pts[pts.length - 1].split(",")[0]},${H - 1}`, class: "area" }) : null,
      svg("polyline", { points: pts.join(" "), class: "line", fill: "none" }),
      pts.length ? svg("circle", { cx: pts[pts.length - 1].split(",")[0], cy: pts[pts.length - 1].split(",")[1], r: "2.5", class: "dot" }) : null),
    h("small.hint", {}, `${c.note}; peak ${peak === null ? "—" : c.fmt(peak)}`));
}
