/**
 * The filter language evaluated on a row in memory, for live queries: the server's
 * subscription filter matches the row *after* a change, so an update that moves a row out of
 * a filter reaches only an unfiltered subscription, and the live query decides here. Follows
 * the server's rules (docs/CONTRACT.md): SQL null semantics, bools as 0/1, `$like` is a
 * case-insensitive substring (or a LIKE pattern with `%`).
 */
import { isObject } from "./errors.js";

type Row = Record<string, unknown>;
const CONTROL = new Set(["$order", "$limit", "$offset"]);

/** Whether `filter` only uses what `matches` evaluates (no `$search`). */
export function evaluable(filter: unknown): boolean {
  if (Array.isArray(filter)) return filter.every(evaluable);
  if (!isObject(filter)) return true;
  return Object.entries(filter).every(([k, v]) => k !== "$search" && evaluable(v));
}

export function matches(filter: Record<string, unknown> | undefined, row: Row): boolean {
  if (!filter) return true;
  return Object.entries(filter).every(([key, cond]) => {
    if (CONTROL.has(key)) return true;
    if (key === "$and") return (cond as Record<string, unknown>[]).every((f) => matches(f, row));
    if (key === "$or") return (cond as Record<string, unknown>[]).some((f) => matches(f, row));
    if (key === "$not") return !matches(cond as Record<string, unknown>, row);
    return fieldMatches(row[key], cond);
  });
}

function norm(v: unknown): unknown {
  return typeof v === "boolean" ? (v ? 1 : 0) : v;
}

function fieldMatches(value: unknown, cond: unknown): boolean {
  if (!isObject(cond)) return cond === null ? value === null || value === undefined : equal(value, cond);
  return Object.entries(cond).every(([op, arg]) => {
    const v = norm(value);
    const a = norm(arg);
    const isNull = v === null || v === undefined;
    switch (op) {
      case "$eq":
        return a === null ? isNull : equal(value, arg);
      case "$ne":
        return a === null ? !isNull : !isNull && !equal(value, arg);
      case "$gt":
        return !isNull && (v as number) > (a as number);
      case "$gte":
        return !isNull && (v as number) >= (a as number);
      case "$lt":
        return !isNull && (v as number) < (a as number);
      case "$lte":
        return !isNull && (v as number) <= (a as number);
      case "$in":
        return !isNull && (arg as unknown[]).some((x) => equal(value, x));
      case "$like":
        return !isNull && like(String(v), String(arg));
      case "$not":
        // SQL: NOT over a null comparison is still not true.
        return !isNull && !fieldMatches(value, arg);
      default:
        return false;
    }
  });
}

function equal(a: unknown, b: unknown): boolean {
  const x = norm(a);
  const y = norm(b);
  if (x === null || x === undefined || y === null || y === undefined) return false;
  if (typeof x === "object" || typeof y === "object") return JSON.stringify(x) === JSON.stringify(y);
  return x === y;
}

function like(value: string, pattern: string): boolean {
  if (!pattern.includes("%")) return value.toLowerCase().includes(pattern.toLowerCase());
  const re = pattern
    .split("%")
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/_/g, "."))
    .join(".*");
  return new RegExp(`^${re}$`, "is").test(value);
}

/** A comparator for `$order` (object, `"-field"`, or pairs), always ending with `id`. */
export function comparator(order: unknown): (a: Row, b: Row) => number {
  const keys: [string, number][] = [];
  if (typeof order === "string") {
    for (const part of order.split(",")) {
      const desc = part.startsWith("-");
      keys.push([desc ? part.slice(1) : part, desc ? -1 : 1]);
    }
  } else if (Array.isArray(order)) {
    for (const [f, dir] of order as [string, string][]) keys.push([f, dir === "desc" ? -1 : 1]);
  } else if (isObject(order)) {
    for (const [f, dir] of Object.entries(order)) keys.push([f, dir === "desc" ? -1 : 1]);
  }
  keys.push(["id", 1]);
  return (a, b) => {
    for (const [f, dir] of keys) {
      const x = norm(a[f]);
      const y = norm(b[f]);
      if (x === y) continue;
      // SQLite sorts NULL first ascending.
      if (x === null || x === undefined) return -dir;
      if (y === null || y === undefined) return dir;
      return (x as number) < (y as number) ? -dir : dir;
    }
    return 0;
  };
}
