/**
 * Shards (server-side simulations) over the shared socket: a snapshot per tick, inputs, and
 * an opt-in interpolator that renders smoothly between ticks. Subscriptions are restored after
 * a reconnect; a shard has no history to replay, the next snapshot is the current world.
 */
import { PlazaError } from "./errors.js";
import type { Http } from "./http.js";
import { mergePatch } from "./rooms.js";
import type { Channel, Frame, Socket } from "./socket.js";
import type { Json } from "./types.js";

export interface Snapshot<S = Json> {
  tick: number;
  state: S;
}

export interface ShardInfo {
  name: string;
  sim: string;
  tick_hz: number;
  tick: number;
  players: number;
  subscribers: number;
  persist?: boolean;
}

/** The built-in `arena` simulation's state. */
export interface ArenaState {
  players: Record<string, { x: number; y: number; vx: number; vy: number }>;
  size: [number, number];
}

export interface ShardOptions<S> {
  /**
   * How a `delta` frame changes the previous state; simulations choose their delta format.
   * Default: an RFC 7386 merge patch.
   */
  applyDelta?: (previous: S, delta: Json) => S;
}

export class Shard<S = Json> implements Channel {
  private readonly listeners = new Set<(s: Snapshot<S>) => void>();
  private readonly errorListeners = new Set<(e: PlazaError) => void>();
  private latest: Snapshot<S> | null = null;
  private subscribed = false;

  constructor(readonly name: string, private readonly socket: Socket, private readonly http: Http, private readonly options: ShardOptions<S> = {}) {}

  /** The last snapshot received (null before the first). */
  get snapshot(): Snapshot<S> | null {
    return this.latest;
  }

  /** Calls `listener` with every tick's state; the first call is the current state. */
  subscribe(listener: (s: Snapshot<S>) => void): () => void {
    this.listeners.add(listener);
    if (!this.subscribed) {
      this.subscribed = true;
      this.socket.attach(this);
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.unsubscribe();
    };
  }

  /** Stops the snapshots (the player leaves the shard). */
  unsubscribe(): void {
    if (!this.subscribed) return;
    this.subscribed = false;
    this.listeners.clear();
    this.socket.send({ type: "shard_unsubscribe", shard: this.name });
    this.socket.detach(this);
  }

  /** Sends an input for the next tick over the socket (refusals arrive at `onError`). */
  input(input: Json): void {
    this.socket.sendNow({ type: "shard_input", shard: this.name, input });
  }

  /** Sends an input over HTTP; answers the tick that applies it. */
  inputHttp(input: Json): Promise<{ queued: true; tick: number }> {
    return this.http.post(`/api/shards/${encodeURIComponent(this.name)}/input`, { input });
  }

  /** The shard's last snapshot over HTTP. */
  get(): Promise<{ name: string; sim: string; tick: number; state: S }> {
    return this.http.get(`/api/shards/${encodeURIComponent(this.name)}`);
  }

  onError(listener: (e: PlazaError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** Opt-in smoothing: see `Interpolator`. */
  interpolate(options: InterpolatorOptions<S> = {}): Interpolator<S> {
    const interpolator = new Interpolator<S>(options);
    const stop = this.subscribe((s) => interpolator.push(s));
    interpolator.stop = stop;
    return interpolator;
  }

  onOpen(): void {
    if (this.subscribed) this.socket.send({ type: "shard_subscribe", shard: this.name });
  }

  onFrame(frame: Frame): void {
    if (frame.shard !== this.name && frame.ref !== this.name) return;
    if (frame.type === "snapshot") {
      this.emit({ tick: Number(frame.tick), state: frame.state as S });
    } else if (frame.type === "delta") {
      // Without the base tick the delta means nothing; a full snapshot comes every 20 ticks.
      if (!this.latest || this.latest.tick !== Number(frame.base)) return;
      const apply = this.options.applyDelta ?? ((prev: S, d: Json) => mergePatch(prev as Json, d) as S);
      this.emit({ tick: Number(frame.tick), state: apply(this.latest.state, frame.delta as Json) });
    } else if (frame.type === "error" && frame.ref === this.name) {
      const error = PlazaError.fromFrame(frame);
      if (error.code === "SHARD_STOPPED" || error.code === "SHARD_CRASHED" || error.code === "NOT_FOUND") {
        this.subscribed = false;
      }
      for (const l of this.errorListeners) l(error);
    }
  }

  private emit(s: Snapshot<S>): void {
    this.latest = s;
    for (const l of this.listeners) l(s);
  }
}

export interface InterpolatorOptions<S> {
  /**
   * How far behind the newest snapshot to render (ms): enough to usually have a snapshot on
   * each side of the time shown. Default 100.
   */
  delayMs?: number;
  /** Blends two states; default: numbers are interpolated, everything else taken from `b`. */
  lerp?: (a: S, b: S, t: number) => S;
  /** Clock (ms); default `performance.now()`. */
  now?: () => number;
}

/**
 * Keeps the last snapshots with their arrival times and answers the state at "now - delay",
 * blended between the two snapshots around it, so movement looks continuous at any frame rate.
 */
export class Interpolator<S> {
  private readonly buffer: { at: number; snap: Snapshot<S> }[] = [];
  private readonly delay: number;
  private readonly lerp: (a: S, b: S, t: number) => S;
  private readonly now: () => number;
  /** Stops receiving snapshots. */
  stop: () => void = () => undefined;

  constructor(options: InterpolatorOptions<S> = {}) {
    this.delay = options.delayMs ?? 100;
    this.lerp = options.lerp ?? ((a, b, t) => lerpJson(a as Json, b as Json, t) as S);
    this.now = options.now ?? (() => globalThis.performance.now());
  }

  push(snap: Snapshot<S>): void {
    this.buffer.push({ at: this.now(), snap });
    if (this.buffer.length > 32) this.buffer.shift();
  }

  /** The state to draw now (null before the first snapshot). */
  sample(): S | null {
    const t = this.now() - this.delay;
    const b = this.buffer;
    if (b.length === 0) return null;
    if (t <= b[0]!.at) return b[0]!.snap.state;
    for (let i = b.length - 1; i > 0; i--) {
      const from = b[i - 1]!;
      const to = b[i]!;
      if (t >= from.at) {
        if (t >= to.at) return to.snap.state;
        return this.lerp(from.snap.state, to.snap.state, (t - from.at) / (to.at - from.at));
      }
    }
    return b[b.length - 1]!.snap.state;
  }
}

/** Numbers blend, objects blend key by key (keys only in `b` appear as in `b`), the rest is `b`. */
export function lerpJson(a: Json, b: Json, t: number): Json {
  if (typeof a === "number" && typeof b === "number") return a + (b - a) * t;
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) return b.map((v, i) => lerpJson(a[i]!, v, t));
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(b)) out[k] = k in a ? lerpJson(a[k]!, v, t) : v;
    return out;
  }
  return b;
}

/** Shard administration and listing over HTTP. */
export class Shards {
  constructor(private readonly http: Http) {}

  list(): Promise<ShardInfo[]> {
    return this.http.get<{ shards: ShardInfo[] }>("/api/shards").then((r) => r.shards);
  }

  /** Starts a shard (admin token). */
  create(spec: { name: string; sim: string; tick_hz?: number; config?: Json; persist?: boolean }): Promise<{ name: string; sim: string; tick_hz: number; persist: boolean }> {
    return this.http.post("/api/shards", spec);
  }

  /** Stops a shard (admin token). */
  stop(name: string): Promise<{ stopped: string }> {
    return this.http.request("DELETE", `/api/shards/${encodeURIComponent(name)}`);
  }
}
