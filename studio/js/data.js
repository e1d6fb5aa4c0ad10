// Data: the manifest's entities with their fields, a table per entity (paging, sort, the
// filter language), row forms typed by field, and export/import of every row.

import { api, enc, token } from "./api.js";
import { cell, dialog, errorSlot, field, fill, h, header, json, showError, table, toast } from "./ui.js";

const PAGE_SIZES = [25, 50, 100, 250];

export function render(root, { manifest, params }) {
  const entities = manifest.entities || [];
  const current = entities.find((e) => e.name === params[0]) || entities[0];
  const list = h("nav.entities", { "aria-label": "Entities" },
    h("h2", {}, "Entities"),
    entities.length
      ? h("ul", {}, entities.map((e) => h("li", {}, h("a", {
          href: `#/data/${enc(e.name)}`,
          "aria-current": e === current ? "page" : false,
        }, e.name, h("small", {}, ` ${e.fields.length} fields`)))))
      : h("p", {}, "The manifest declares no entities."));
  const main = h("section.entity");
  root.append(h("div.split", {}, list, main));
  if (current) entityView(main, current, manifest);
  else main.append(header("Data"), h("p", {}, "Add entities to the manifest (plaza.json) to see their rows here."));
}

function fieldType(f) {
  const t = f.type;
  if (t.startsWith("id(")) return "id";
  return t;
}

function entityView(root, entity, manifest) {
  const state = { limit: 25, offset: 0, sort: null, filter: "" };
  const filterInput = h("input", {
    id: "filter", type: "text", spellcheck: "false", autocomplete: "off",
    placeholder: '{"done": 0, "priority": {"$gte": 2}}',
    "aria-describedby": "filter-help filter-error",
  });
  const filterError = errorSlot("filter-error");
  const size = h("select", { id: "page-size" }, PAGE_SIZES.map((n) => h("option", { value: String(n) }, String(n))));
  const tableSlot = h("div", { "aria-live": "polite" });
  const pager = h("div.pager");
  const importInput = h("input", { type: "file", accept: ".ndjson,.json,.jsonl,application/json", hidden: true });

  root.append(
    header(entity.name,
      h("button", { type: "button", onclick: () => rowForm(entity, null, load) }, "New row"),
      h("button.quiet", { type: "button", onclick: exportRows }, "Export"),
      h("button.quiet", { type: "button", onclick: () => importInput.click() }, "Import"),
      importInput),
    h("details.fields", {},
      h("summary", {}, `Fields (${entity.fields.length})`),
      h("ul.field-list", {}, entity.fields.map((f) => h("li", {},
        h("code", {}, f.name), " ", h("span.type", {}, f.type),
        f.optional ? h("span.tag", {}, "optional") : null,
        f.unique ? h("span.tag", {}, "unique") : null)),
        (entity.relations || []).map((r) => h("li", {}, h("code", {}, r.name), " → ", r.target, r.many ? " (many)" : "")))),
    h("form.filter", { role: "search", onsubmit: (ev) => { ev.preventDefault(); state.filter = filterInput.value.trim(); state.offset = 0; load(); } },
      h("label", { for: "filter" }, "Filter"),
      h("div.row", {}, filterInput, h("button", { type: "submit" }, "Apply"),
        h("button.quiet", { type: "button", onclick: () => { filterInput.value = ""; state.filter = ""; state.offset = 0; load(); } }, "Clear")),
      h("small.hint", { id: "filter-help" }, 'The filter language as JSON: {"field": value}, $gt $gte $lt $lte $ne $in $like $not $and $or.'),
      filterError),
    tableSlot,
    h("div.pager-row", {}, pager, h("label", { for: "page-size" }, "Rows per page "), size),
  );
  size.addEventListener("change", () => { state.limit = Number(size.value); state.offset = 0; load(); });
  importInput.addEventListener("change", async () => {
    const file = importInput.files[0];
    importInput.value = "";
    if (!file) return;
    try {
      const r = await api("/api/import", { method: "POST", body: await file.text(), headers: { "Content-Type": "application/x-ndjson" } });
      toast(`Imported ${r.imported} rows.`);
      load();
    } catch (e) {
      toast(`Import refused: ${e.code}: ${e.message}`, "error");
    }
  });

  async function load() {
    showError(filterError, null);
    filterInput.removeAttribute("aria-invalid");
    const q = new URLSearchParams({ limit: String(state.limit), offset: String(state.offset) });
    if (state.sort) q.set("order", (state.sort.dir === "desc" ? "-" : "") + state.sort.field);
    if (state.filter) {
      try {
        const parsed = JSON.parse(state.filter);
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("a filter is a JSON object");
      } catch (e) {
        filterInput.setAttribute("aria-invalid", "true");
        showError(filterError, { message: `Not a filter: ${e.message}` });
        return;
      }
      q.set("filter", state.filter);
    }
    let page;
    try {
      page = await api(`/api/entities/${enc(entity.name)}?${q}`);
    } catch (e) {
      if (state.filter && e.status === 400) {
        filterInput.setAttribute("aria-invalid", "true");
        showError(filterError, e);
      } else {
        fill(tableSlot, h("p.error", { role: "alert" }, `${e.code}: ${e.message}`));
      }
      return;
    }
    const columns = [
      { label: "id", sort: "id", get: (r) => h("code.id", {}, r.id) },
      ...entity.fields.map((f) => ({ label: f.name, sort: f.type === "json" ? null : f.name, get: (r) => cell(r[f.name]) })),
      { label: "updatedAt", sort: "updatedAt", get: (r) => r.updatedAt },
      { label: "Actions", get: (r) => h("div.row-actions", {},
          h("button.small", { type: "button", onclick: () => rowForm(entity, r, load), "aria-label": `Edit ${r.id}` }, "Edit"),
          h("button.small.danger", { type: "button", onclick: () => remove(r), "aria-label": `Delete ${r.id}` }, "Delete")) },
    ];
    fill(tableSlot, table(`${entity.name} rows`, columns, page.data, {
      empty: state.filter ? "No rows match this filter." : "No rows yet.",
      sort: state.sort,
      onSort: (f) => {
        state.sort = state.sort && state.sort.field === f && state.sort.dir === "asc" ? { field: f, dir: "desc" } : { field: f, dir: "asc" };
        load();
      },
    }));
    const first = page.count ? state.offset + 1 : 0;
    fill(pager,
      h("button.quiet", { type: "button", disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, "‹ Previous"),
      h("span", {}, page.count ? `Rows ${first}–${state.offset + page.count}` : "No rows"),
      h("button.quiet", { type: "button", disabled: page.count < state.limit, onclick: () => { state.offset += state.limit; load(); } }, "Next ›"));
  }

  async function remove(row) {
    if (!confirm(`Delete ${entity.name} ${row.id}?`)) return;
    try {
      await api(`/api/entities/${enc(entity.name)}/${enc(row.id)}`, { method: "DELETE" });
      toast(`Deleted ${row.id}.`);
      load();
    } catch (e) {
      toast(`${e.code}: ${e.message}`, "error");
    }
  }

  async function exportRows() {
    try {
      const resp = await fetch("/api/export", { headers: { Authorization: `Bearer ${token.get()}` } });
      if (!resp.ok) throw new Error(`export answered ${resp.status}`);
      const blob = await resp.blob();
      const a = h("a", { href: URL.createObjectURL(blob), download: `${manifest.name || "plaza"}-export.ndjson` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) {
      toast(`Export failed: ${e.message}`, "error");
    }
  }

  load();
}

/** A control for one field, typed by its manifest type. */
function control(f, value) {
  const t = fieldType(f);
  const name = f.name;
  if (t === "bool") {
    return h("input", { type: "checkbox", name, checked: value === 1 || value === true });
  }
  if (t === "int" || t === "float") {
    return h("input", { type: "number", name, step: t === "int" ? "1" : "any", inputmode: t === "int" ? "numeric" : "decimal",
      value: value === null || value === undefined ? "" : String(value), required: !f.optional });
  }
  if (t === "datetime") {
    // datetime-local has no zone: Studio reads and writes it as UTC.
    const v = typeof value === "string" ? value.replace(/Z$/, "").replace(/([+-]\d\d:\d\d)$/, "").slice(0, 23) : "";
    return h("input", { type: "datetime-local", name, step: "0.001", value: v, required: !f.optional });
  }
  if (t === "json") {
    return h("textarea.json", { name, rows: "5", spellcheck: "false",
      value: value === null || value === undefined ? "" : json(value), required: !f.optional });
  }
  return h("input", { type: "text", name, value: value ?? "", required: !f.optional, autocomplete: "off" });
}

function readControl(f, el) {
  const t = fieldType(f);
  if (t === "bool") return el.checked;
  const raw = el.value;
  if (raw === "") {
    if (f.optional) return null;
    if (t === "string" || t === "id") return "";
    throw new Error(`${f.name} is required`);
  }
  if (t === "int") {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`${f.name} must be a whole number`);
    return Number(raw);
  }
  if (t === "float") return Number(raw);
  if (t === "datetime") return `${raw.length === 16 ? raw + ":00" : raw}Z`;
  if (t === "json") {
    try {
      return JSON.parse(raw);
    } catch (e) {
      throw new Error(`${f.name} is not valid JSON: ${e.message}`);
    }
  }
  return raw;
}

function rowForm(entity, row, done) {
  const editing = row !== null;
  const controls = new Map();
  dialog(editing ? `Edit ${entity.name} ${row.id}` : `New ${entity.name}`, (form) => {
    if (editing) form.append(h("p.muted", {}, "id ", h("code", {}, row.id)));
    for (const f of entity.fields) {
      const c = control(f, editing ? row[f.name] : undefined);
      controls.set(f.name, c);
      const hint = [f.type, f.optional ? "optional" : "required", fieldType(f) === "datetime" ? "UTC" : null].filter(Boolean).join(", ");
      const wrap = field(f.name, c, hint);
      if (fieldType(f) === "bool") wrap.classList.add("check");
      if (fieldType(f) === "json") {
        const err = h("small.error", { role: "alert" });
        c.addEventListener("input", () => {
          try {
            if (c.value.trim()) JSON.parse(c.value);
            err.textContent = "";
            c.removeAttribute("aria-invalid");
          } catch (e) {
            err.textContent = `Not JSON yet: ${e.message}`;
            c.setAttribute("aria-invalid", "true");
          }
        });
        wrap.append(err);
      }
      form.append(wrap);
    }
  }, async () => {
    const body = {};
    for (const f of entity.fields) {
      const v = readControl(f, controls.get(f.name));
      if (!editing && v === null) continue;
      body[f.name] = v;
    }
    if (editing) {
      await api(`/api/entities/${enc(entity.name)}/${enc(row.id)}`, { method: "PATCH", body });
      toast(`Saved ${row.id}.`);
    } else {
      const r = await api(`/api/entities/${enc(entity.name)}`, { method: "POST", body });
      toast(`Created ${r.id}.`);
    }
    done();
  }, { submitLabel: editing ? "Save changes" : "Create" });
}
