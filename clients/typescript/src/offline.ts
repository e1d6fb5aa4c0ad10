/**
 * The offline write queue. A write is stored (in the app's storage: memory, localStorage,
 * IndexedDB...) before anything is sent, with an `op_id` chosen once. Flushing sends the queue
 * through `POST /api/sync/push`; a write leaves the queue only when the server answered for it.
 * If the answer is lost (the connection dropped after the server applied the push), the next
 * flush sends the same op ids and the server answers "duplicate" instead of applying them
 * again: every queued write is applied exactly once.
 */
import { PlazaError } from "./errors.js";
import type { Http } from "./http.js";
import type { KeyValueStorage } from "./storage.js";

export interface QueuedChange {
  op_id: string;
  entity: string;
  row_id: string;
  kind: "insert" | "update" | "delete";
  data?: Record<string, unknown>;
  queued_at: string;
}

export interface PushResult {
  ok: boolean;
  op_id: string | null;
  duplicate?: boolean;
  seq?: number | null;
  row_id?: string | null;
  kind?: string | null;
  error?: { code: string; message: string };
}

export interface PushAnswer {
  applied: number;
  duplicates: number;
  results: PushResult[];
  deduped: number;
  errors: string[];
  cursor: { last_seq: number };
}

export interface FlushOutcome {
  /** Writes the server applied now. */
  applied: number;
  /** Writes the server had already applied (a retried push): not applied again. */
  duplicates: number;
  /** Writes the server refused for good (policy, validation): dropped, see `onRejected`. */
  rejected: number;
  /** Writes still queued (the server could not be reached, or asked to retry later). */
  pending: number;
}

export interface OfflineOptions {
  storage: KeyValueStorage;
  /** Storage key of the queue (several clients can share one storage). Default "offline-queue". */
  key?: string;
  /** Changes per push request. Default 100 (the server's session limit for bulk writes). */
  batchSize?: number;
}

/** Server codes that mean "try again later", not "this write is wrong". */
const RETRY_CODES = new Set(["OVERLOADED", "UNAVAILABLE", "RATE_LIMITED", "INTERNAL"]);

export class OfflineQueue {
  private items: QueuedChange[] | null = null;
  private loading: Promise<QueuedChange[]> | null = null;
  private flushing: Promise<FlushOutcome> | null = null;
  private again = false;
  private readonly rejectedListeners = new Set<(change: QueuedChange, error: PlazaError) => void>();
  private readonly flushedListeners = new Set<(outcome: FlushOutcome) => void>();
  private readonly key: string;
  private readonly batchSize: number;
  private readonly storage: KeyValueStorage;

  constructor(private readonly http: Http, options: OfflineOptions) {
    this.storage = options.storage;
    this.key = options.key ?? "offline-queue";
    this.batchSize = options.batchSize ?? 100;
  }

  private load(): Promise<QueuedChange[]> {
    if (this.items) return Promise.resolve(this.items);
    this.loading ??= (async () => {
      const text = await this.storage.get(this.key);
      this.items = text ? (JSON.parse(text) as QueuedChange[]) : [];
      return this.items;
    })();
    return this.loading;
  }

  private async save(): Promise<void> {
    const items = await this.load();
    if (items.length === 0) await this.storage.remove(this.key);
    else await this.storage.set(this.key, JSON.stringify(items));
  }

  /** The writes not yet confirmed by the server, oldest first. */
  async pending(): Promise<readonly QueuedChange[]> {
    return [...(await this.load())];
  }

  insert(entity: string, data: Record<string, unknown>): Promise<{ id: string; op_id: string }> {
    const id = typeof data.id === "string" && data.id ? data.id : randomId();
    return this.enqueue({ entity, row_id: id, kind: "insert", data: { ...data, id } });
  }

  update(entity: string, id: string, patch: Record<string, unknown>): Promise<{ id: string; op_id: string }> {
    return this.enqueue({ entity, row_id: id, kind: "update", data: patch });
  }

  delete(entity: string, id: string): Promise<{ id: string; op_id: string }> {
    return this.enqueue({ entity, row_id: id, kind: "delete" });
  }

  /** Stores the write, then tries to send it (a failure to send leaves it queued). */
  private async enqueue(change: Omit<QueuedChange, "op_id" | "queued_at">): Promise<{ id: string; op_id: string }> {
    const item: QueuedChange = { ...change, op_id: randomId(), queued_at: new Date().toISOString() };
    (await this.load()).push(item);
    await this.save();
    void this.flush().catch(() => undefined);
    return { id: item.row_id, op_id: item.op_id };
  }

  /** A write the server refused for good (it has left the queue). */
  onRejected(listener: (change: QueuedChange, error: PlazaError) => void): () => void {
    this.rejectedListeners.add(listener);
    return () => this.rejectedListeners.delete(listener);
  }

  /** After every flush that reached the server. */
  onFlushed(listener: (outcome: FlushOutcome) => void): () => void {
    this.flushedListeners.add(listener);
    return () => this.flushedListeners.delete(listener);
  }

  /**
   * Sends the queue, oldest first, until it is empty or the server cannot be reached. One
   * flush runs at a time; calls meanwhile share it (and make it go round once more).
   */
  flush(): Promise<FlushOutcome> {
    if (this.flushing) {
      this.again = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      const total: FlushOutcome = { applied: 0, duplicates: 0, rejected: 0, pending: 0 };
      try {
        do {
          this.again = false;
          await this.drain(total);
        } while (this.again);
      } finally {
        this.flushing = null;
        total.pending = (await this.load()).length;
      }
      if (total.applied + total.duplicates + total.rejected > 0) for (const l of this.flushedListeners) l(total);
      return total;
    })();
    return this.flushing;
  }

  private async drain(total: FlushOutcome): Promise<void> {
    const items = await this.load();
    while (items.length > 0) {
      const batch = nextBatch(items, this.batchSize);
      let answer: PushAnswer;
      try {
        answer = await this.http.post<PushAnswer>("/api/sync/push", {
          changes: batch.map(({ entity, row_id, kind, data, op_id }) => ({ entity, row_id, kind, data, op_id })),
        });
      } catch (e) {
        if (e instanceof PlazaError && !e.transient) {
          // The whole push was refused (e.g. 403 without a session): nothing was applied.
          throw e;
        }
        return; // offline or overloaded: keep everything for the next flush
      }
      const done = new Set<string>();
      let retryLater = false;
      answer.results.forEach((r, i) => {
        const item = batch[i];
        if (!item) return;
        if (r.ok) {
          done.add(item.op_id);
          if (r.duplicate) total.duplicates += 1;
          else total.applied += 1;
        } else if (r.error && RETRY_CODES.has(r.error.code)) {
          retryLater = true;
        } else {
          done.add(item.op_id);
          total.rejected += 1;
          const error = new PlazaError(r.error?.code ?? "REJECTED", 0, r.error?.message ?? "the server refused this write");
          for (const l of this.rejectedListeners) l(item, error);
        }
      });
      // Remove from the live array (writes may have been queued while the push was out).
      for (let i = items.length - 1; i >= 0; i--) if (done.has(items[i]!.op_id)) items.splice(i, 1);
      await this.save();
      if (retryLater || done.size === 0) return;
    }
  }
}

/**
 * The oldest writes, up to `max`, stopping before a second write to the same row: the server
 * applies a push's changes side by side, so two writes to one row go in separate pushes to
 * keep their order.
 */
function nextBatch(items: QueuedChange[], max: number): QueuedChange[] {
  const rows = new Set<string>();
  const batch: QueuedChange[] = [];
  for (const item of items) {
    const key = `${item.entity}\u0000${item.row_id}`;
    if (batch.length === max || rows.has(key)) break;
    rows.add(key);
    batch.push(item);
  }
  return batch;
}

function randomId(): string {
  const c = globalThis.crypto;
  if (c?.randomUUID) return c.randomUUID();
  // Non-secure browser contexts lack randomUUID; getRandomValues is everywhere.
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
