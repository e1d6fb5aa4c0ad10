// Rooms between two clients (presence, broadcast, state, rejoin with since), shards (ticks,
// input moves the player, interpolation) and pub/sub.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Interpolator } from "../dist/index.js";
import { Collector, Server, gatedWebSocket, nextEvent, within } from "./helpers.mjs";

/** Resolves once the room's member list passes `check` (now or after a later change). */
function membersReach(room, check, what) {
  if (check(room.members)) return Promise.resolve(room.members);
  return nextEvent((l) => room.onMembers(l), check, what);
}

describe("rooms, shards and pub/sub", () => {
  let server;
  before(async () => {
    server = await Server.start();
  });
  after(() => server?.close());

  it("shares presence, events and state between two clients", async () => {
    const ann = await server.guest();
    const bob = await server.guest();
    const annId = (await ann.auth.me()).user_id;
    const bobId = (await bob.auth.me()).user_id;
    const annRoom = ann.room("game-1");
    const joinedA = await within(annRoom.join({ presence: { name: "ann" } }), "ann's join");
    assert.deepEqual(joinedA.members, [{ user_id: annId, presence: { name: "ann" } }]);

    const presence = new Collector();
    annRoom.onPresence(presence.push);
    const bobRoom = bob.room("game-1");
    const joinedB = await within(bobRoom.join({ presence: { name: "bob" } }), "bob's join");
    assert.equal(joinedB.members.length, 2);
    await presence.until((p) => p.some((e) => e.event === "joined" && e.user_id === bobId), "bob's presence at ann");
    assert.deepEqual(annRoom.members.map((m) => m.user_id).sort(), [annId, bobId].sort());

    const events = new Collector();
    bobRoom.onEvent("move", events.push);
    annRoom.broadcast("move", { x: 1 });
    const [move] = await events.until((e) => e.length === 1, "ann's broadcast at bob");
    assert.deepEqual(move.data, { x: 1 });
    assert.equal(move.from, annId);

    const states = new Collector();
    annRoom.onState(states.push);
    bobRoom.patch({ turn: "bob", board: { a1: "x" } });
    await states.until((s) => s.some((c) => c.state.turn === "bob"), "bob's patch at ann");
    bobRoom.patch({ board: { a1: null, b2: "o" } });
    await states.until((s) => s.some((c) => c.version === 2), "the second patch");
    assert.deepEqual(annRoom.state, { turn: "bob", board: { b2: "o" } });

    bobRoom.setPresence({ name: "bob", ready: true });
    await presence.until((p) => p.some((e) => e.event === "updated" && e.presence?.ready), "bob's presence update");
    bobRoom.leave();
    await presence.until((p) => p.some((e) => e.event === "left" && e.user_id === bobId), "bob leaving");
    assert.deepEqual(annRoom.members.map((m) => m.user_id), [annId]);
    ann.close();
    bob.close();
  });

  it("rejoins after a drop and receives the events it missed, once", async () => {
    const sender = await server.guest();
    const { gate, WebSocket } = gatedWebSocket();
    const listener = await server.guest({ WebSocket });
    const senderRoom = sender.room("game-2");
    await senderRoom.join();
    const room = listener.room("game-2");
    await room.join({ presence: "here" });
    const events = new Collector();
    room.onEvent(events.push);
    senderRoom.broadcast("n", 1);
    await events.until((e) => e.length === 1, "the first event");

    gate.open = false;
    const down = nextEvent((l) => listener.socket.on("status", l), (s) => s === "reconnecting", "the drop");
    listener.socket.drop();
    await down;
    // The listener's socket is gone: it leaves the room, and the sender keeps broadcasting.
    await membersReach(senderRoom, (m) => m.length === 1, "the listener to leave");
    for (const n of [2, 3]) senderRoom.broadcast("n", n);
    gate.open = true;
    await events.until((e) => e.length >= 3, "the missed events after the rejoin");
    senderRoom.broadcast("n", 4);
    const seen = await events.until((e) => e.length >= 4, "a live event after the rejoin");
    assert.deepEqual(seen.map((e) => e.data), [1, 2, 3, 4]);
    assert.deepEqual(seen.map((e) => e.seq), [1, 2, 3, 4]);
    await membersReach(senderRoom, (m) => m.length === 2 && m.some((x) => x.presence === "here"), "the listener back with its presence");
    sender.close();
    listener.close();
  });

  it("streams shard snapshots and moves the player on input", async () => {
    const client = await server.guest();
    const me = (await client.auth.me()).user_id;
    const arena = client.shard("arena");
    const snaps = new Collector();
    arena.subscribe(snaps.push);
    const [first] = await snaps.until((s) => s.some((x) => x.state.players[me]), "a snapshot with the player");
    const start = snaps.items.find((x) => x.state.players[me]).state.players[me];
    await snaps.until((s) => s.length >= 3, "ticks");
    assert.ok(snaps.items[2].tick > first.tick, "ticks advance");
    arena.input({ move: [1, 0] });
    const moved = await snaps.until((s) => s.at(-1).state.players[me].x > start.x + 0.5, "the player to move right");
    const last = moved.at(-1).state.players[me];
    assert.ok(last.vx > 0);
    assert.equal(last.y, start.y);

    // The opt-in interpolator blends between the snapshots around "now - delay".
    let now = 0;
    const lerp = new Interpolator({ delayMs: 0, now: () => now });
    lerp.push({ tick: 1, state: { x: 0, label: "a" } });
    now = 100;
    lerp.push({ tick: 2, state: { x: 10, label: "b" } });
    now = 50;
    assert.deepEqual(lerp.sample(), { x: 5, label: "b" });
    client.close();
  });

  it("subscribes and publishes on pub/sub topics", async () => {
    const client = await server.guest();
    const got = new Collector();
    await within(client.pubsub.subscribe("news", got.push), "the subscription");
    const { delivered } = await server.admin().pubsub.publish("news", { headline: "hi" });
    assert.equal(delivered, 1);
    await got.until((m) => m.length === 1, "the message");
    assert.deepEqual(got.items[0], { headline: "hi" });
    await assert.rejects(client.pubsub.publish("news", "not admin"), (e) => e.code === "FORBIDDEN" && e.status === 403);
    client.close();
  });
});
