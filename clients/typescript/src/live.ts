/**
 * Live changes of entities over the shared socket, and live queries built on them.
 *
 * Each subscription remembers the last seq it delivered. After a drop the socket reconnects
 * and every subscription is sent again with `since` = that seq: the server replays what was
 * missed from its persistent log, then goes live, so nothing is missed; a change at or below
 * the remembered seq is never delivered twice. When the server cannot replay (`since` older
 * than its log), the subscription reports a resync and starts again from now: re-fetch.
 */
import { PlazaError } from "./errors.js";
import { comparator, evaluable, matches } from "./filter.js";
import type { Channel, Frame, Socket } from "./socket.js";
import type { Change, Filter, SystemFields } from "./types.js";

export interface SubscribeOptions {
  /** Start after this seq (a cursor kept from a previous run) instead of now. */
  since?: number;
  /**
   * The server could not replay what was missed (`RESYNC_REQUIRED`): the subscription goes on
   * from now, and whatever the app derived from earlier changes should be fetched again.
   */
  onResync?: (error: PlazaError) => void;
  /** The subscription was refused (unknown entity, bad filter, ...) and has ended. */
  onError?: (error: PlazaError) => void;
  /** The server confirmed the subscription (again after every reconnect or resync). */
  onSubscribed?: (seq: number) => void;
}

export interface Subscription {
  readonly id: string;
  /** Resolves with the seq the subscription starts after, once the server confirmed it. */
  readonly ready: Promise<number>;
  /** The last seq seen (what a resume sends as `since`). */
  readonly lastSeq: number | null;
  close(): void;
}

class Sub<R> implements Subscription {
  lastSeq: number | null;
  readonly ready: Promise<number>;
  settle!: { resolve: (seq: number) => void; reject: (e: PlazaError) => void };
  settled = false;

  constructor(
    readonly id: string,
    readonly entity: string,
    readonly filter: unknown,
    readonly onChange: (change: Change<R>) => void,
    readonly options: SubscribeOptions,
    private readonly hub: LiveHub,
  ) {
    this.lastSeq = options.since ?? null;
    this.ready = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // Nobody may await `ready`; a refusal still reaches onError.
    this.ready.catch(() => undefined);
  }

  frame(): Frame {
    const frame: Frame = { type: "subscribe", id: this.id, entity: this.entity };
    if (this.filter !== undefined) frame.filter = this.filter;
    if (this.lastSeq !== null) frame.since = this.lastSeq;
    return frame;
  }

  close(): void {
    this.hub.unsubscribe(this);
  }
}

/** All entity subscriptions of one client: a channel on the shared socket. */
export class LiveHub implements Channel {
  private readonly subs = new Map<string, Sub<any>>();
  private next = 1;
  private attached = false;

  constructor(private readonly socket: Socket) {}

  subscribe<R>(entity: string, filter: Filter<any> | undefined, onChange: (change: Change<R>) => void, options: SubscribeOptions = {}): Subscription {
    // '#' keeps ids apart from room and shard names, which share the `ref` of error frames.
    const sub = new Sub<R>(`sub#${this.next++}`, entity, filter, onChange, options, this);
    this.subs.set(sub.id, sub);
    if (!this.attached) {
      this.attached = true;
      this.socket.attach(this); // sends every subscription once open
    } else {
      this.socket.send(sub.frame());
    }
    return sub;
  }

  unsubscribe(sub: Sub<any>): void {
    if (this.subs.delete(sub.id)) this.socket.send({ type: "unsubscribe", id: sub.id });
  }

  onOpen(): void {
    for (const sub of this.subs.values()) this.socket.send(sub.frame());
  }

  onFrame(frame: Frame): void {
    if (frame.type === "subscribed") {
      const sub = this.subs.get(String(frame.id));
      if (!sub) return;
      sub.lastSeq = Number(frame.seq);
      if (!sub.settled) {
        sub.settled = true;
        sub.settle.resolve(sub.lastSeq);
      }
      sub.options.onSubscribed?.(sub.lastSeq);
    } else if (frame.type === "change") {
      const sub = this.subs.get(String(frame.sub));
      const change = frame.event as Change;
      if (!sub || !change) return;
      if (sub.lastSeq !== null && change.seq <= sub.lastSeq) return; // already delivered
      sub.lastSeq = change.seq;
      sub.onChange(change);
    } else if (frame.type === "error" && typeof frame.ref === "string") {
      const sub = this.subs.get(frame.ref);
      if (!sub) return;
      const error = PlazaError.fromFrame(frame);
      if (error.code === "RESYNC_REQUIRED") {
        sub.lastSeq = null;
        this.socket.send(sub.frame());
        sub.options.onResync?.(error);
        return;
      }
      this.subs.delete(sub.id);
      if (!sub.settled) {
        sub.settled = true;
        sub.settle.reject(error);
      }
      sub.options.onError?.(error);
    }
  }
}

/**
 * An array of rows kept equal to "the rows matching `filter`": the initial query plus every
 * change since. Changes that arrive while the query is in flight are held and applied after
 * it, in seq order, so the array never goes backwards. `$limit` bounds the initial query only.
 */
export class LiveQuery<R extends SystemFields> {
  private readonly byId = new Map<string, R>();
  private readonly listeners = new Set<(rows: R[]) => void>();
  private readonly errorListeners = new Set<(e: PlazaError) => void>();
  private held: Change<R>[] | null = [];
  private generation = 0;
  private resyncing = false;
  private loaded = false;
  private readonly sub: Subscription;
  private readonly order: (a: R, b: R) => number;
  private readonly localFilter: Record<string, unknown> | undefined;
  /** The rows, sorted by the filter's `$order` (then id). */
  rows: R[] = [];
  /** Resolves with the first complete rows. */
  readonly ready: Promise<R[]>;

  constructor(hub: LiveHub, entity: string, filter: Filter<R> | undefined, private readonly fetchRows: () => Promise<R[]>) {
    const f = filter as Record<string, unknown> | undefined;
    this.order = comparator(f?.$order) as (a: R, b: R) => number;
    // A row updated out of the filter gets no event on a filtered subscription, so when the
    // filter can be evaluated here, subscribe to the whole entity and decide locally.
    const local = evaluable(f);
    this.localFilter = local ? f : undefined;
    const serverFilter = local ? undefined : stripControl(f);
    this.sub = hub.subscribe<R>(entity, serverFilter as Filter<any>, (c) => this.onChange(c), {
      // After a resync, query again only once the new subscription is confirmed: a change
      // committed between the query and the subscription would otherwise be lost.
      onResync: () => {
        this.resyncing = true;
        this.held = [];
      },
      onSubscribed: () => {
        if (!this.resyncing) return;
        this.resyncing = false;
        this.reload().catch((e) => this.failed(e));
      },
      // Before the first load, `ready` rejects and reports it; afterwards (a refused
      // resubscription) only this can.
      onError: (e) => this.loaded && this.failed(e),
    });
    this.ready = this.sub.ready.then(() => this.reload()).then(() => this.rows);
    // Reported to onError listeners too; `ready` only rejects for those who await it.
    this.ready.catch((e) => this.failed(e));
  }

  private failed(e: unknown): void {
    const error = e instanceof PlazaError ? e : PlazaError.network(e);
    for (const l of this.errorListeners) l(error);
  }

  /** Calls `listener` with the rows after every change (and once they are first loaded). */
  subscribe(listener: (rows: R[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onError(listener: (e: PlazaError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  close(): void {
    this.sub.close();
    this.listeners.clear();
  }

  private async reload(): Promise<void> {
    const generation = ++this.generation;
    // Changes arriving from here on wait for the rows (those held already stay held).
    this.held ??= [];
    const rows = await this.fetchRows();
    if (generation !== this.generation) return; // a newer reload took over
    this.byId.clear();
    for (const r of rows) this.byId.set(r.id, r);
    const held = this.held ?? [];
    this.held = null;
    for (const c of held) this.apply(c);
    this.loaded = true;
    this.publish();
  }

  private onChange(change: Change<R>): void {
    if (this.held) {
      this.held.push(change);
      return;
    }
    this.apply(change);
    this.publish();
  }

  private apply(change: Change<R>): void {
    const row = change.data;
    if (change.kind === "delete" || !row || (this.localFilter && !matches(this.localFilter, row as Record<string, unknown>))) {
      this.byId.delete(change.row_id);
    } else {
      this.byId.set(change.row_id, row);
    }
  }

  private publish(): void {
    this.rows = [...this.byId.values()].sort(this.order);
    for (const l of this.listeners) l(this.rows);
  }
}

function stripControl(f: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!f) return undefined;
  const { $order: _o, $limit: _l, $offset: _f, ...rest } = f;
  return rest;
}
