// Entities over HTTP, errors, bulk writes, queries, and auth (guest, password, upgrade, logout).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PlazaError, memoryStorage } from "../dist/index.js";
import { createHmac, randomBytes } from "node:crypto";
import { Server } from "./helpers.mjs";

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) from a base32 secret, as an authenticator app. */
function totp(secret, at = Date.now()) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30_000)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

describe("entities and auth over HTTP", () => {
  let server;
  before(async () => {
    // TOTP secrets are sealed with this key.
    server = await Server.start({ PLAZA_ACCOUNTS_KEY: randomBytes(32).toString("base64") });
  });
  after(() => server?.close());

  it("inserts, gets, updates, lists, queries, pages and deletes rows", async () => {
    const client = await server.guest();
    const todos = client.entity("Todo");
    const { id } = await todos.insert({ title: "buy milk", done: false, priority: 2, tags: ["home"] });
    const row = await todos.get(id);
    assert.equal(row.title, "buy milk");
    assert.equal(row.done, 0, "bools come back as 0/1");
    assert.deepEqual(row.tags, ["home"]);
    assert.equal(row.due, null, "unset optional fields are null");
    assert.match(row.createdAt, /^\d{4}-\d\d-\d\dT.*Z$/);

    const updated = await todos.update(id, { done: true });
    assert.equal(updated.done, 1);
    assert.equal(updated.title, "buy milk");

    await todos.insert({ id: "custom-id", title: "walk dog", done: false, priority: 5 });
    const page = await todos.list({ where: { done: 0 } });
    assert.deepEqual(page.data.map((r) => r.id), ["custom-id"]);
    assert.equal(page.count, 1);
    const byPriority = await todos.list({ order: "-priority" });
    assert.deepEqual(byPriority.data.map((r) => r.title), ["walk dog", "buy milk"]);
    const filtered = await todos.list({ filter: { priority: { $gt: 3 } } });
    assert.deepEqual(filtered.data.map((r) => r.id), ["custom-id"]);

    const found = await todos.query({ title: { $like: "MILK" } });
    assert.deepEqual(found.map((r) => r.id), [id]);

    const first = await todos.cursor({ limit: 1 });
    assert.equal(first.data.length, 1);
    assert.equal(first.has_more, true);
    const second = await todos.cursor({ limit: 1, after: first.next_cursor });
    assert.notEqual(second.data[0].id, first.data[0].id);
    const all = [];
    for await (const r of todos.all(1)) all.push(r.id);
    assert.equal(all.length, 2);

    const { groups } = await todos.aggregate({ count: "*", sum: "priority" });
    assert.equal(groups[0].count, 2);
    assert.equal(groups[0].sum, 7);
    const search = await todos.search("milk", { facets: ["done"] });
    assert.equal(search.total, 1);
    assert.equal(search.data[0].id, id);

    assert.deepEqual(await todos.delete(id), { deleted: true });
    await assert.rejects(todos.get(id), (e) => e instanceof PlazaError && e.code === "NOT_FOUND" && e.status === 404);
  });

  it("answers typed errors with code, status and message", async () => {
    const client = await server.guest();
    await assert.rejects(client.entity("Todo").insert({ done: true }), (e) => {
      assert.ok(e instanceof PlazaError);
      assert.equal(e.code, "VALIDATION");
      assert.equal(e.status, 400);
      assert.match(e.message, /title/);
      return true;
    });
    await assert.rejects(client.entity("Nope").list(), (e) => e.code === "UNKNOWN_ENTITY" && e.status === 404);
    const offline = server.client({ url: "http://127.0.0.1:9" });
    await assert.rejects(offline.entity("Todo").list(), (e) => e.code === "NETWORK" && e.status === 0);
  });

  it("runs batches, transactions, graph queries and links", async () => {
    const client = await server.guest();
    const batch = await client.batch([
      { op: "insert", entity: "User", id: "u1", data: { email: "a@example.com", displayName: "Ann" } },
      { op: "insert", entity: "Todo", id: "t1", data: { title: "one", done: false } },
    ]);
    assert.equal(batch.succeeded, 2);
    await assert.rejects(
      client.transact([
        { op: "insert", entity: "Todo", id: "t2", data: { title: "two", done: false } },
        { op: "insert", entity: "User", data: { email: "a@example.com", displayName: "dup" } },
      ]),
      (e) => e.code === "CONFLICT" && e.status === 409,
    );
    await assert.rejects(client.entity("Todo").get("t2"), (e) => e.code === "NOT_FOUND", "a failed transaction writes nothing");

    const linked = await client.entity("Todo").link("t1", "owner", "u1");
    assert.equal(linked.data.ownerId, "u1");
    const graph = await client.graph({ User: { where: { id: "u1" }, include: { todos: {} } } });
    assert.deepEqual(graph.User[0].todos.map((t) => t.id), ["t1"]);
    await client.entity("Todo").unlink("t1", "owner", "u1");
    assert.equal((await client.entity("Todo").get("t1")).ownerId, null);
  });

  it("registers, logs in with a password, keeps the token in storage, and logs out", async () => {
    const storage = memoryStorage();
    const a = server.client({ storage });
    const session = await a.auth.register("ann@example.com", "correct horse battery staple");
    assert.ok(session.token);
    assert.equal(await storage.get("token"), session.token);
    await a.auth.logout();
    assert.equal(await storage.get("token"), null);
    await assert.rejects(a.auth.me(), (e) => e.code === "UNAUTHORIZED" && e.status === 401);

    const b = server.client({ storage });
    await assert.rejects(b.auth.login("ann@example.com", "wrong password!!"), (e) => e.status === 401);
    const login = await b.auth.login("ann@example.com", "correct horse battery staple");
    assert.equal(login.user_id, session.user_id);
    // A new client on the same storage starts signed in.
    const c = server.client({ storage });
    assert.deepEqual(await c.auth.me(), { user_id: session.user_id, guest: false, admin: false });
  });

  it("signs in with a second factor (TOTP step)", async () => {
    const client = server.client();
    await client.auth.register("mfa@example.com", "a long enough passphrase");
    const { secret } = await client.auth.totp.enroll();
    const { enabled, backup_codes } = await client.auth.totp.confirm(totp(secret));
    assert.equal(enabled, true);
    const other = server.client();
    const first = await other.auth.login("mfa@example.com", "a long enough passphrase");
    assert.equal(first.mfa_required, true);
    assert.equal(await other.auth.token(), null, "no session before the second factor");
    // A backup code: the TOTP step just used is accepted only once.
    const session = await other.auth.totp.completeLogin(first.mfa_token, backup_codes[0]);
    assert.equal(await other.auth.token(), session.token);
    assert.equal((await other.auth.me()).guest, false);
  });

  it("upgrades a guest to an account with the same user id", async () => {
    const client = server.client();
    const guest = await client.auth.guest();
    assert.equal(guest.guest, true);
    const upgraded = await client.auth.upgrade("guest-upgrade@example.com", "another long passphrase");
    assert.equal(upgraded.user_id, guest.user_id);
    assert.deepEqual(await client.auth.me(), { user_id: guest.user_id, guest: false, admin: false });
  });

  it("uploads and downloads files, enqueues jobs", async () => {
    const client = await server.guest();
    const up = await client.files.upload(new Blob(["hello plaza"], { type: "text/plain" }), "hello.txt");
    assert.equal(up.size, 11);
    const blob = await client.files.download(up.id);
    assert.equal(await blob.text(), "hello plaza");
    const admin = server.admin();
    const job = await admin.jobs.enqueue("no-such-handler", { x: 1 }, { max_attempts: 1 });
    const status = await admin.jobs.get(job.id);
    assert.equal(status.id, job.id);
    assert.equal(status.name, "no-such-handler");
  });
});
