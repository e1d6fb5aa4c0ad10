/**
 * `createClient`: one object per server, holding the HTTP settings, the session token, the
 * shared socket (opened only when something live needs it) and the offline queue.
 */
import { Auth, TokenStore } from "./auth.js";
import { EntityHandle } from "./entities.js";
import { Http } from "./http.js";
import { LiveHub } from "./live.js";
import { OfflineQueue, type OfflineOptions, type PushAnswer } from "./offline.js";
import { PubSub } from "./pubsub.js";
import { Room } from "./rooms.js";
import { Shard, Shards, type ShardOptions } from "./shards.js";
import { Socket, type ReconnectOptions, type WebSocketConstructor } from "./socket.js";
import { memoryStorage, type KeyValueStorage } from "./storage.js";
import type { Change, EntityTypes, Filter, Json, Schema, UntypedSchema } from "./types.js";

export interface ClientOptions {
  /** The server, e.g. `http://127.0.0.1:4321` (or `location.origin`). */
  url: string;
  /** A session token to start with (else the one in `storage`, if any). */
  token?: string | null;
  /** Where the token (and the offline queue's default storage) lives. Default: memory. */
  storage?: KeyValueStorage;
  /** A WebSocket constructor where there is no global one (Node 20: the `ws` package). */
  WebSocket?: WebSocketConstructor;
  /** `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
  /** `Origin` header for non-browser clients (the server's CSRF check wants one). */
  origin?: string;
  /** Whether cookies ride along (default "include": OAuth sessions are cookies). */
  credentials?: RequestCredentials;
  reconnect?: ReconnectOptions;
  /** App-level ping interval on the socket (ms); 0 turns it off. Default 15000. */
  pingIntervalMs?: number;
  /** Enables `entity(..).offline` writes; `storage` defaults to the client's storage. */
  offline?: Partial<OfflineOptions> | boolean;
}

export interface BatchOp<S> {
  op: "insert" | "update" | "delete";
  entity: keyof S & string;
  id?: string;
  data?: Record<string, unknown>;
}

export interface BatchResult {
  ok: boolean;
  op?: string;
  entity?: string;
  id?: string;
  seq?: number;
  error?: { code: string; message: string };
}

export interface GraphNode {
  where?: Filter<any>;
  $order?: unknown;
  $limit?: number;
  $offset?: number;
  include?: Record<string, GraphNode>;
}

export interface UploadedFile {
  id: string;
  url: string;
  size: number;
  content_type: string;
  sha256: string;
  name: string | null;
}

export interface Job {
  id: string;
  name: string;
  status: "pending" | "running" | "succeeded" | "dead";
  payload: Json;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  result: Json;
  run_at: string;
  [more: string]: unknown;
}

export class PlazaClient<S extends Schema<S> = UntypedSchema> {
  readonly http: Http;
  readonly auth: Auth;
  /** The shared WebSocket (status events, `drop()` to force a reconnect). */
  readonly socket: Socket | null;
  readonly offline: OfflineQueue | undefined;
  readonly shards: Shards;
  private liveHub: LiveHub | null = null;
  private pubsubHub: PubSub | null = null;
  private readonly rooms = new Map<string, Room<any, any>>();
  private readonly options: ClientOptions;

  constructor(options: ClientOptions) {
    this.options = options;
    const storage = options.storage ?? memoryStorage();
    const tokens = new TokenStore(storage, options.token);
    this.http = new Http(options, () => tokens.get());
    this.auth = new Auth(this.http, tokens);
    this.socket = this.makeSocket(tokens);
    if (options.offline) {
      const o = options.offline === true ? {} : options.offline;
      this.offline = new OfflineQueue(this.http, { ...o, storage: o.storage ?? storage });
      // Back online (or reconnected): send what was queued meanwhile.
      this.socket?.on("status", (s) => s === "open" && void this.offline?.flush().catch(() => undefined));
      globalThis.addEventListener?.("online", () => void this.offline?.flush().catch(() => undefined));
    }
    this.shards = new Shards(this.http);
  }

  /** Pub/sub topics: subscribe over the socket, publish over HTTP. */
  get pubsub(): PubSub {
    this.pubsubHub ??= new PubSub(() => this.liveSocket(), this.http);
    return this.pubsubHub;
  }

  private makeSocket(tokens: TokenStore): Socket | null {
    const WS = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) return null; // HTTP still works; live features say what is missing when used
    const socket = new Socket(
      { url: this.options.url, WebSocket: WS, reconnect: this.options.reconnect, pingIntervalMs: this.options.pingIntervalMs },
      () => tokens.get(),
    );
    // A new user must not keep the old user's stream: reconnect with the new token.
    tokens.onChange(() => socket.restart());
    return socket;
  }

  /** The socket, for the live features; without a WebSocket they cannot work, so say why. */
  private liveSocket(): Socket {
    if (this.socket) return this.socket;
    throw new Error("no WebSocket here (Node 20): pass createClient({ WebSocket }), e.g. from the 'ws' package");
  }

  private hub(): LiveHub {
    this.liveHub ??= new LiveHub(this.liveSocket());
    return this.liveHub;
  }

  /** One entity's rows: `client.entity("Todo")`, typed by the app's generated `Entities`. */
  entity<K extends keyof S & string>(name: K): EntityHandle<S[K]> {
    return new EntityHandle<S[K]>(name, this.http, () => this.hub(), this.offline);
  }

  /** Live changes of an entity (same as `client.entity(name).subscribe`). */
  subscribe<K extends keyof S & string>(
    name: K,
    filter: Filter<S[K]["row"]> | undefined,
    onChange: (change: Change<S[K]["row"]>) => void,
    options?: Parameters<EntityHandle<S[K]>["subscribe"]>[2],
  ) {
    return this.entity(name).subscribe(filter, onChange, options);
  }

  /** A room by name; the same handle each time until it is left. */
  room<P = Json, St extends Record<string, Json> = Record<string, Json>>(name: string): Room<P, St> {
    let room = this.rooms.get(name);
    if (!room) {
      room = new Room<P, St>(name, this.liveSocket(), (r) => this.rooms.get(name) === r && this.rooms.delete(name));
      this.rooms.set(name, room);
    }
    return room as Room<P, St>;
  }

  /** A shard by name: snapshots, inputs, interpolation. */
  shard<St = Json>(name: string, options?: ShardOptions<St>): Shard<St> {
    return new Shard<St>(name, this.liveSocket(), this.http, options);
  }

  /** Independent writes (each op on its own). */
  batch(operations: BatchOp<S>[]): Promise<{ succeeded: number; failed: number; results: BatchResult[] }> {
    return this.http.post("/api/batch", { operations });
  }

  /** All-or-nothing writes: a failing op rejects with its error and nothing is written. */
  transact(operations: BatchOp<S>[]): Promise<{ committed: true; results: BatchResult[] }> {
    return this.http.post("/api/transact", operations);
  }

  /** Graph query: roots by entity name, with relations included. */
  graph<Q extends { [K in keyof S & string]?: GraphNode }>(query: Q): Promise<{ [K in keyof Q & keyof S]: (S[K] extends EntityTypes ? S[K]["row"] : never)[] & Record<string, unknown>[] }> {
    return this.http.post("/api/query", query);
  }

  /** The change log: `pull` after a seq, `push` changes (prefer `entity(..).offline`). */
  readonly sync = {
    pull: (since = 0, limit?: number) =>
      this.http.get<{ changes: Change[]; cursor: { last_seq: number }; has_more: boolean }>("/api/sync/pull", { query: { since, limit } }),
    push: (changes: { entity: string; row_id: string; kind: "insert" | "update" | "delete"; data?: unknown; op_id?: string }[], clientId?: string) =>
      this.http.post<PushAnswer>("/api/sync/push", { client_id: clientId, changes }),
  };

  /** File uploads (multipart, session required) and downloads. */
  readonly files = {
    upload: (file: Blob, name?: string) => {
      const form = new FormData();
      form.append("file", file, name ?? ((file as File).name || "file"));
      return this.http.post<UploadedFile>("/api/files/upload", form);
    },
    /** A URL anyone holding the id may open (`<img src>`). */
    url: (id: string) => this.http.url(`/api/files/${encodeURIComponent(id)}`),
    download: async (id: string): Promise<Blob> => {
      const r = await this.http.request<Response>("GET", `/api/files/${encodeURIComponent(id)}`, { raw: true });
      return r.blob();
    },
    delete: (id: string) => this.http.request<{ id: string; deleted: true }>("DELETE", `/api/files/${encodeURIComponent(id)}`),
  };

  /** Background jobs: enqueue (admin, or names the manifest marks public) and status. */
  readonly jobs = {
    enqueue: (name: string, payload: Json = null, options: { run_at?: string | number; max_attempts?: number; priority?: number; timeout_ms?: number } = {}) =>
      this.http.post<{ id: string }>("/api/jobs", { name, payload, ...options }),
    get: (id: string) => this.http.get<Job>(`/api/jobs/${encodeURIComponent(id)}`),
  };

  /** Closes the socket (subscriptions, rooms, shards end); HTTP calls still work. */
  close(): void {
    this.socket?.close();
  }
}

/**
 * A client for the server at `options.url`. Pass the generated `Entities` type for typed rows:
 * `createClient<Entities>({ url })`.
 */
export function createClient<S extends Schema<S> = UntypedSchema>(options: ClientOptions): PlazaClient<S> {
  return new PlazaClient<S>(options);
}
