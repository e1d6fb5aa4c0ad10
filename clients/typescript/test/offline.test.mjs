// The offline write queue: writes made while the server is unreachable are stored, then sent
// through /api/sync/push with op ids when it is back, and a push whose answer was lost is
// applied once when retried.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { localStorageStorage, memoryStorage } from "../dist/index.js";
import { Collector, Server, within } from "./helpers.mjs";

/** A fetch that can "lose" the answers of the next pushes after the server handled them. */
function lossyFetch() {
  const state = { loseNextPushes: 0, pushes: 0 };
  const fetchFn = async (url, init) => {
    const response = await fetch(url, init);
    if (String(url).includes("/api/sync/push")) {
      state.pushes += 1;
      if (state.loseNextPushes > 0) {
        state.loseNextPushes -= 1;
        throw new TypeError("connection reset (simulated after the server applied the push)");
      }
    }
    return response;
  };
  return { state, fetch: fetchFn };
}

/** How many changes the log holds for a row: each applied write is exactly one. */
async function changesFor(client, rowId) {
  const { changes } = await client.sync.pull(0, 1000);
  return changes.filter((c) => c.row_id === rowId).map((c) => c.kind);
}

describe("offline write queue", () => {
  let server;
  before(async () => {
    server = await Server.start();
  });
  after(() => server?.close());

  it("queues writes while the server is down and replays them once after it is back", async () => {
    const storage = memoryStorage();
    const token = await (await server.guest()).auth.token();
    const client = server.client({ token, storage, offline: true });
    const todos = client.entity("Todo");
    const { id: kept } = await todos.insert({ title: "online first", done: false });

    await server.stop("SIGKILL");
    const a = await todos.offline.insert({ title: "written offline", done: false });
    await todos.offline.update(a.id, { done: true });
    await todos.offline.update(kept, { title: "renamed offline" });
    const b = await todos.offline.insert({ title: "second offline", done: false });
    await todos.offline.delete(b.id);
    // Every write is stored, with its op id, before anything is sent.
    const pending = await client.offline.pending();
    assert.equal(pending.length, 5);
    assert.equal(new Set(pending.map((p) => p.op_id)).size, 5);
    assert.ok(JSON.parse(await storage.get("offline-queue")).length === 5, "the queue is in the given storage");
    const stillDown = await client.offline.flush();
    assert.equal(stillDown.pending, 5, "nothing leaves the queue while the server is unreachable");

    await server.spawn(); // same database, same port
    const outcome = await within(client.offline.flush(), "the flush");
    assert.deepEqual(outcome, { applied: 5, duplicates: 0, rejected: 0, pending: 0 });
    assert.equal(await storage.get("offline-queue"), null);
    const row = await todos.get(a.id);
    assert.equal(row.done, 1);
    assert.equal((await todos.get(kept)).title, "renamed offline");
    await assert.rejects(todos.get(b.id), (e) => e.code === "NOT_FOUND");
    assert.deepEqual(await changesFor(client, a.id), ["insert", "update"]);

    // Flushing again sends nothing: the queue is empty.
    assert.deepEqual(await client.offline.flush(), { applied: 0, duplicates: 0, rejected: 0, pending: 0 });
  });

  it("applies a push once when its answer was lost and it is sent again", async () => {
    const lossy = lossyFetch();
    const token = await (await server.guest()).auth.token();
    const client = server.client({ token, fetch: lossy.fetch, offline: { storage: memoryStorage() } });
    lossy.state.loseNextPushes = 1;
    // The insert starts a flush at once; its push reaches the server but the answer is lost.
    // `flush()` joins it and makes it go round again, which sends the same op id.
    const { id } = await client.entity("Todo").offline.insert({ title: "exactly once", done: false });
    const outcome = await client.offline.flush();
    assert.equal(lossy.state.pushes, 2, "the push was sent twice");
    assert.deepEqual(outcome, { applied: 0, duplicates: 1, rejected: 0, pending: 0 });
    assert.equal((await client.entity("Todo").get(id)).title, "exactly once");
    assert.deepEqual(await changesFor(client, id), ["insert"], "applied once");
  });

  it("flushes by itself when the socket reconnects, and reports refused writes", async () => {
    const storage = memoryStorage();
    const token = await (await server.guest()).auth.token();
    const client = server.client({ token, storage, offline: true });
    const rejected = new Collector();
    client.offline.onRejected((change, error) => rejected.push({ change, code: error.code }));
    const flushed = new Collector();
    client.offline.onFlushed(flushed.push);
    // A live subscription keeps a socket open; its reconnect is the "back online" signal.
    const sub = client.entity("Todo").subscribe({ title: "x" }, () => undefined);
    await within(sub.ready, "subscribed");
    await server.stop("SIGKILL");
    const { id } = await client.entity("Todo").offline.insert({ title: "sent on reconnect", done: false });
    await client.entity("Todo").offline.insert({ title: 42, done: false }); // invalid: refused later
    await server.spawn();
    await flushed.until((f) => f.some((o) => o.pending === 0), "the automatic flush");
    assert.equal((await client.entity("Todo").get(id)).title, "sent on reconnect");
    const [refusal] = await rejected.until((r) => r.length === 1, "the refused write");
    assert.equal(refusal.code, "VALIDATION");
    assert.equal(refusal.change.data.title, 42);
    client.close();
  });

  it("keeps its queue in localStorage-like storage across client instances", async () => {
    const backing = new Map();
    const fakeLocalStorage = {
      getItem: (k) => backing.get(k) ?? null,
      setItem: (k, v) => backing.set(k, String(v)),
      removeItem: (k) => backing.delete(k),
    };
    const storage = localStorageStorage("app:", fakeLocalStorage);
    const token = await (await server.guest()).auth.token();
    const dead = server.client({ url: "http://127.0.0.1:9", token, storage, offline: true });
    const { id } = await dead.entity("Todo").offline.insert({ title: "survives a reload", done: false });
    assert.ok(backing.has("app:offline-queue"));
    // "Reload": a new client on the same storage, now able to reach the server.
    const client = server.client({ storage, offline: true });
    assert.equal(await client.auth.token(), token, "the token came from storage too");
    const outcome = await client.offline.flush();
    assert.equal(outcome.applied, 1);
    assert.equal((await client.entity("Todo").get(id)).title, "survives a reload");
  });
});
