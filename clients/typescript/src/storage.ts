/**
 * Where the client keeps what must outlive a page load: the session token and the offline
 * write queue. Pluggable because browsers, Node and apps differ: memory (tests, servers),
 * localStorage, or anything async (IndexedDB, a file) behind the same three calls.
 */

export interface KeyValueStorage {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** Lives as long as the process (or page): nothing survives a reload. */
export function memoryStorage(): KeyValueStorage {
  const values = new Map<string, string>();
  return {
    get: (key) => values.get(key) ?? null,
    set: (key, value) => void values.set(key, value),
    remove: (key) => void values.delete(key),
  };
}

/** A browser's `localStorage` (or any object with the same API), keys prefixed. */
export function localStorageStorage(prefix = "plaza:", store: Pick<Storage, "getItem" | "setItem" | "removeItem"> = globalThis.localStorage): KeyValueStorage {
  if (!store) {
    throw new Error("localStorage is not available here: pass a store, or use memoryStorage()");
  }
  return {
    get: (key) => store.getItem(prefix + key),
    set: (key, value) => store.setItem(prefix + key, value),
    remove: (key) => store.removeItem(prefix + key),
  };
}
