// Test harness: a real `plaza` binary on port 0 with a temp database, and helpers that await
// events (never sleep) with a timeout.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { createClient } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
export const MANIFEST = join(here, "fixtures", "plaza.json");
export const CLIENT_DIR = resolve(here, "..");
/** Set by tests/ts_client.rs (cargo's freshly built binary); else the workspace's debug build. */
export const PLAZA_BIN = process.env.PLAZA_BIN ?? resolve(here, "../../../target/debug/plaza");
export const ADMIN = "admin-secret-for-tests";
export const ORIGIN = "http://localhost";
/** How long any awaited event may take (a debug build on a busy 2-core box). */
export const PATIENCE_MS = 20_000;

/** Resolves with `promise`, or rejects naming `what` after `ms`. */
export function within(promise, what, ms = PATIENCE_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Values pushed by callbacks, and a way to await the moment they satisfy a condition. */
export class Collector {
  items = [];
  waiters = [];
  push = (item) => {
    this.items.push(item);
    for (const w of [...this.waiters]) w();
  };
  until(check, what) {
    return within(
      new Promise((resolve) => {
        const test = () => {
          if (check(this.items)) {
            this.waiters = this.waiters.filter((w) => w !== test);
            resolve(this.items);
          }
        };
        this.waiters.push(test);
        test();
      }),
      what,
    );
  }
}

/** The first value `subscribe(listener)` hands its listener that passes `check`. */
export function nextEvent(subscribe, check = () => true, what = "an event") {
  return within(
    new Promise((resolve) => {
      const stop = subscribe((v) => {
        if (check(v)) {
          stop?.();
          resolve(v);
        }
      });
    }),
    what,
  );
}

/** A running server; `restart()` starts a new process on the same database and port. */
export class Server {
  constructor(dir, env) {
    this.dir = dir;
    this.env = env;
    this.port = 0;
    this.proc = null;
    this.log = [];
  }

  static async start(env = {}) {
    const dir = mkdtempSync(join(tmpdir(), "plaza-ts-"));
    const server = new Server(dir, env);
    await server.spawn();
    return server;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  spawn() {
    const proc = spawn(PLAZA_BIN, ["--port", String(this.port), "--db", join(this.dir, "plaza.db"), "--manifest", MANIFEST], {
      env: {
        ...process.env,
        PLAZA_LOG: "info",
        PLAZA_DEV_MODE: "1",
        PLAZA_ADMIN_TOKEN: ADMIN,
        PLAZA_RATE_LIMIT_MAX: "0",
        PLAZA_SESSION_RATE_LIMIT: "0",
        PLAZA_LOGIN_RATE_LIMIT: "0",
        // Cheap hashing: these tests are about the client, not argon2's cost.
        PLAZA_ARGON2_MEMORY_KIB: "1024",
        PLAZA_ARGON2_ITERATIONS: "1",
        PLAZA_DRAIN_SECS: "5",
        ...this.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc = proc;
    return within(
      new Promise((resolve, reject) => {
        let buffered = "";
        const onData = (chunk) => {
          buffered += chunk.toString();
          let nl;
          while ((nl = buffered.indexOf("\n")) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            this.log.push(line);
            if (this.log.length > 400) this.log.shift();
            const m = /listening on \S*:(\d+)/.exec(line);
            if (m) {
              this.port = Number(m[1]);
              resolve();
            }
          }
        };
        proc.stdout.on("data", onData);
        proc.stderr.on("data", onData);
        proc.on("exit", (code) => reject(new Error(`plaza exited (${code}) before listening:\n${this.log.join("\n")}`)));
        proc.on("error", reject);
      }),
      "the server to listen",
    );
  }

  /** Ends the process: SIGKILL (a crash) or SIGTERM (a graceful stop); resolves when gone. */
  stop(signal = "SIGKILL") {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    const gone = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill(signal);
    return within(gone, `the server to exit on ${signal}`);
  }

  async restart(signal = "SIGKILL") {
    await this.stop(signal);
    await this.spawn();
  }

  /** Restarts on the same port with an empty database (as after restoring an old backup). */
  async replaceDatabase() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
    this.dir = mkdtempSync(join(tmpdir(), "plaza-ts-"));
    await this.spawn();
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A client for this server (Node: the `ws` WebSocket, an Origin for the CSRF check). */
  client(options = {}) {
    return createClient({
      url: this.url,
      WebSocket,
      origin: ORIGIN,
      reconnect: { minDelayMs: 50, maxDelayMs: 500 },
      ...options,
    });
  }

  /** A client signed in as a fresh guest. */
  async guest(options = {}) {
    const client = this.client(options);
    await client.auth.guest();
    return client;
  }

  admin(options = {}) {
    return this.client({ token: ADMIN, ...options });
  }
}

/**
 * A WebSocket class whose connections fail while `gate.open` is false, as if the network were
 * down: lets a test change things on the server while a client is certainly disconnected.
 */
export function gatedWebSocket() {
  const gate = { open: true, attempts: 0 };
  class GatedWebSocket extends WebSocket {
    constructor(url, ...rest) {
      gate.attempts += 1;
      // Port 9 (discard) on localhost refuses: the client sees an ordinary failed connect.
      super(gate.open ? url : "ws://127.0.0.1:9/ws", ...rest);
    }
  }
  return { gate, WebSocket: GatedWebSocket };
}
