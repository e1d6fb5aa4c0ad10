// Live subscriptions over the shared socket: changes arrive, a dropped socket (server-side
// close, server crash, graceful restart) reconnects and resumes with `since` — no gap, no
// duplicate — and a live query keeps an array in sync.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Collector, Server, gatedWebSocket, nextEvent, within } from "./helpers.mjs";

/** The seqs a subscription delivered must be exactly the ones written, each once, in order. */
function assertNoGapNoDuplicate(changes, ids) {
  assert.deepEqual(changes.map((c) => c.row_id), ids);
  const seqs = changes.map((c) => c.seq);
  assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), "each seq once, in order");
}

describe("live subscriptions", () => {
  let server;
  before(async () => {
    server = await Server.start();
  });
  after(() => server?.close());

  it("delivers inserts, updates and deletes matching the filter", async () => {
    const writer = await server.guest();
    const reader = await server.guest();
    const seen = new Collector();
    const sub = reader.entity("Todo").subscribe({ done: 0 }, seen.push);
    await within(sub.ready, "subscribed");
    const { id } = await writer.entity("Todo").insert({ title: "live", done: false });
    await writer.entity("Todo").insert({ title: "not for this filter", done: true });
    await writer.entity("Todo").update(id, { title: "live!" });
    await writer.entity("Todo").delete(id);
    const changes = await seen.until((c) => c.length >= 3, "three changes");
    assert.deepEqual(changes.map((c) => c.kind), ["insert", "update", "delete"]);
    assert.equal(changes[1].data.title, "live!");
    assert.equal(sub.lastSeq, changes[2].seq);
    sub.close();
    reader.close();
  });

  it("resumes after the connection drops, with writes made while it was down", async () => {
    const writer = await server.guest();
    const { gate, WebSocket } = gatedWebSocket();
    const reader = await server.guest({ WebSocket });
    const seen = new Collector();
    const sub = reader.entity("Todo").subscribe({ title: { $like: "resume-a" } }, seen.push);
    await within(sub.ready, "subscribed");
    const ids = [];
    for (const n of [1, 2]) ids.push((await writer.entity("Todo").insert({ title: `resume-a ${n}`, done: false })).id);
    await seen.until((c) => c.length === 2, "the first two changes");

    gate.open = false;
    const down = nextEvent((l) => reader.socket.on("status", l), (s) => s === "reconnecting", "the socket to drop");
    reader.socket.drop();
    await down;
    for (const n of [3, 4, 5]) ids.push((await writer.entity("Todo").insert({ title: `resume-a ${n}`, done: false })).id);
    const attempts = gate.attempts;
    gate.open = true;
    await seen.until((c) => c.length >= 5, "the missed changes after reconnecting");
    assert.ok(gate.attempts > attempts, "it reconnected");
    ids.push((await writer.entity("Todo").insert({ title: "resume-a 6", done: false })).id);
    const changes = await seen.until((c) => c.length >= 6, "a live change after the resume");
    assertNoGapNoDuplicate(changes, ids);
    reader.close();
  });

  it("resumes across a crash and restart of the server (same database, same port)", async () => {
    const { gate, WebSocket } = gatedWebSocket();
    const reader = await server.guest({ WebSocket });
    const token = await reader.auth.token();
    const writerToken = await (await server.guest()).auth.token();
    const seen = new Collector();
    const sub = reader.entity("Todo").subscribe({ title: { $like: "crash-b" } }, seen.push);
    await within(sub.ready, "subscribed");
    const writer = () => server.client({ token: writerToken }).entity("Todo");
    const ids = [(await writer().insert({ title: "crash-b 1", done: false })).id];
    await seen.until((c) => c.length === 1, "the first change");

    gate.open = false; // keep the reader away until the restarted server has new rows
    const down = nextEvent((l) => reader.socket.on("status", l), (s) => s === "reconnecting", "the socket to drop");
    await server.restart("SIGKILL");
    await down;
    for (const n of [2, 3]) ids.push((await writer().insert({ title: `crash-b ${n}`, done: false })).id);
    gate.open = true;
    await seen.until((c) => c.length >= 3, "the changes written while the reader was away");
    ids.push((await writer().insert({ title: "crash-b 4", done: false })).id);
    const changes = await seen.until((c) => c.length >= 4, "a live change after the restart");
    assertNoGapNoDuplicate(changes, ids);
    assert.equal(await reader.auth.token(), token, "sessions survive the restart");
    reader.close();
  });

  it("resumes after a graceful restart (SERVER_RESTARTING, close 1012)", async () => {
    const reader = await server.guest();
    const writerToken = await (await server.guest()).auth.token();
    const seen = new Collector();
    const notices = new Collector();
    reader.socket.on("error", (e) => notices.push(e.code));
    const sub = reader.entity("Todo").subscribe({ title: { $like: "term-c" } }, seen.push);
    await within(sub.ready, "subscribed");
    const writer = () => server.client({ token: writerToken }).entity("Todo");
    const ids = [(await writer().insert({ title: "term-c 1", done: false })).id];
    await seen.until((c) => c.length === 1, "the first change");
    await server.restart("SIGTERM");
    await notices.until((n) => n.includes("SERVER_RESTARTING"), "the restart notice");
    for (const n of [2, 3]) ids.push((await writer().insert({ title: `term-c ${n}`, done: false })).id);
    const changes = await seen.until((c) => c.length >= 3, "changes after the restart");
    assertNoGapNoDuplicate(changes, ids);
    reader.close();
  });

  it("reports RESYNC_REQUIRED when the cursor cannot be replayed, then goes on live", async () => {
    const reader = await server.guest();
    const writer = await server.guest();
    const resyncs = new Collector();
    const seen = new Collector();
    // A cursor beyond the end of the log cannot be resumed.
    const sub = reader.entity("Todo").subscribe(undefined, seen.push, { since: 10_000_000, onResync: (e) => resyncs.push(e) });
    const [error] = await resyncs.until((r) => r.length === 1, "the resync event");
    assert.equal(error.code, "RESYNC_REQUIRED");
    await within(sub.ready, "the fresh subscription");
    const { id } = await writer.entity("Todo").insert({ title: "after resync", done: false });
    await seen.until((c) => c.some((x) => x.row_id === id), "a live change after the resync");
    reader.close();
  });

  it("keeps a live query's rows in sync, including rows that leave the filter", async () => {
    const writer = await server.guest();
    const reader = await server.guest();
    const before = await writer.entity("Todo").insert({ title: "lq existing", done: false, priority: 1 });
    const live = reader.entity("Todo").live({ title: { $like: "lq " }, done: 0, $order: { priority: "desc" } });
    const snapshots = new Collector();
    live.subscribe((rows) => snapshots.push(rows.map((r) => r.title)));
    assert.deepEqual((await within(live.ready, "the live query")).map((r) => r.id), [before.id]);
    const added = await writer.entity("Todo").insert({ title: "lq added", done: false, priority: 9 });
    await snapshots.until((s) => s.at(-1)?.join() === "lq added,lq existing", "the insert in order");
    await writer.entity("Todo").update(before.id, { done: true });
    await snapshots.until((s) => s.at(-1)?.join() === "lq added", "the row leaving the filter");
    await writer.entity("Todo").delete(added.id);
    await snapshots.until((s) => s.at(-1)?.length === 0, "the delete");
    live.close();
    reader.close();
  });

  it("re-queries a live query when its cursor cannot be resumed (a server with another database)", async () => {
    // The admin token lives in the environment, not the database, so it outlives the swap.
    const writer = server.admin();
    const reader = server.admin();
    await writer.entity("Todo").insert({ id: "old-row", title: "rs before", done: false });
    const live = reader.entity("Todo").live({ title: { $like: "rs " } });
    await within(live.ready, "the live query");
    assert.deepEqual(live.rows.map((r) => r.id), ["old-row"]);
    const snapshots = new Collector();
    live.subscribe((rows) => snapshots.push(rows.map((r) => r.id)));
    // The new database's log is behind the seq the live query holds: RESYNC_REQUIRED, re-query.
    await server.replaceDatabase();
    await writer.entity("Todo").insert({ id: "new-row", title: "rs after", done: false });
    await snapshots.until((s) => s.at(-1)?.join() === "new-row", "the rows of the new database");
    await writer.entity("Todo").insert({ id: "newer-row", title: "rs later", done: false });
    await snapshots.until((s) => s.at(-1)?.join() === "new-row,newer-row", "live changes after the resync");
    live.close();
    reader.close();
  });
});
