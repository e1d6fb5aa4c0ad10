// Small DOM helpers. Text always goes in as text nodes (never innerHTML), so row data cannot
// inject markup.

/** h("button.primary", {onclick, type:"button"}, "Save") → element. */
export function h(spec, props = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (props === null || typeof props !== "object" || props instanceof Node || Array.isArray(props)) {
    children.unshift(props);
    props = {};
  }
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" || k === "checked" || k === "disabled" || k === "hidden") el[k] = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c) el.append(c);
  return el;
}

/**
 * Replaces the children of `el`. Pages that refresh on a timer redraw under the keyboard, so
 * focus inside `el` moves to the matching new element (same id, label, link or text).
 */
export function fill(el, ...children) {
  const active = document.activeElement;
  const key = active && active !== el && el.contains(active) ? focusKey(active) : null;
  el.replaceChildren();
  append(el, children);
  if (key) {
    const again = [...el.querySelectorAll(active.tagName)].find((n) => focusKey(n) === key);
    if (again) again.focus({ preventScroll: true });
  }
  return el;
}

function focusKey(n) {
  return n.id || n.getAttribute("aria-label") || `${n.tagName}:${n.getAttribute("href") || n.textContent}`;
}

let toastTimer;
export function toast(message, kind = "ok") {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.dataset.kind = kind;
  t.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("shown"), 4000);
}

/** An inline error slot: role=alert so screen readers hear it when it fills. */
export function errorSlot(id) {
  return h("p.error", { id, role: "alert" });
}

export function showError(slot, e) {
  slot.textContent = e ? (e.code ? `${e.code}: ${e.message}` : e.message || String(e)) : "";
}

/** A table from column specs {label, get(row) → node|text, sort?}. */
export function table(caption, columns, rows, { empty = "Nothing here yet.", sort, onSort } = {}) {
  const head = h("tr", {}, columns.map((c) => {
    if (!c.sort || !onSort) return h("th", { scope: "col" }, c.label);
    const dir = sort && sort.field === c.sort ? sort.dir : null;
    return h("th", { scope: "col", "aria-sort": dir === "asc" ? "ascending" : dir === "desc" ? "descending" : "none" },
      h("button.sort", { type: "button", onclick: () => onSort(c.sort) }, c.label, dir ? (dir === "asc" ? " ▲" : " ▼") : ""));
  }));
  const body = rows.length
    ? rows.map((r) => h("tr", {}, columns.map((c) => h("td", { "data-label": c.label }, c.get(r)))))
    : [h("tr", {}, h("td.empty", { colspan: String(columns.length) }, empty))];
  return h("div.table-wrap", {}, h("table", {}, h("caption", {}, caption), h("thead", {}, head), h("tbody", {}, body)));
}

export function json(v, space = 2) {
  return JSON.stringify(v, null, space);
}

export function pre(v) {
  return h("pre.json", {}, typeof v === "string" ? v : json(v));
}

/** Short cell text for any value. */
export function cell(v) {
  if (v === null || v === undefined) return h("span.null", {}, "null");
  if (typeof v === "object") return h("code", {}, truncate(JSON.stringify(v), 80));
  return truncate(String(v), 120);
}

export function truncate(s, n) {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(1)} ${units[i]}`;
}

export function when(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function duration(s) {
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${hh}h ${m}m` : hh ? `${hh}h ${m}m` : m ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
}

/** A modal <dialog> with a form; `build(form)` adds the fields, `submit()` may throw to stay open. */
export function dialog(title, build, submit, { submitLabel = "Save" } = {}) {
  const err = errorSlot("dialog-error");
  const form = h("form.stack", { method: "dialog", novalidate: true });
  const dlg = h("dialog", { "aria-labelledby": "dialog-title" }, h("h2", { id: "dialog-title" }, title), form);
  build(form);
  form.append(err, h("div.actions", {},
    h("button", { type: "submit" }, submitLabel),
    h("button.quiet", { type: "button", onclick: () => dlg.close() }, "Cancel")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(err, null);
    try {
      await submit(form);
      dlg.close();
    } catch (e) {
      showError(err, e);
    }
  });
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  const first = form.querySelector("input, textarea, select");
  if (first) first.focus();
  return dlg;
}

/** A labelled field: label + control (+ hint). */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintEl = hint ? h("small.hint", { id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", `${id}-hint`);
  return h("div.field", {}, h("label", { for: id }, label), control, hintEl);
}

/** A page heading + optional toolbar. */
export function header(title, ...tools) {
  return h("div.page-head", {}, h("h1", { tabindex: "-1" }, title), h("div.tools", {}, tools));
}
