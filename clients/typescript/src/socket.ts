/**
 * The one WebSocket a client shares between subscriptions, rooms, shards and pub/sub. It
 * connects when the first of them needs it, reconnects with exponential backoff (with jitter,
 * so a restarted server is not hit by every client at once) after any drop, and on every
 * (re)connect asks each feature to restore what it had — resubscribe with `since`, rejoin rooms
 * with their seq — so a drop costs a pause, never a missed or doubled event.
 */
import { PlazaError } from "./errors.js";

/** What the client needs of a WebSocket: browsers' and the `ws` package's both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ReconnectOptions {
  /** First retry delay (ms); doubles per failed attempt. Default 250. */
  minDelayMs?: number;
  /** Longest delay between attempts (ms). Default 10000. */
  maxDelayMs?: number;
}

export interface SocketOptions {
  url: string;
  WebSocket?: WebSocketConstructor;
  reconnect?: ReconnectOptions;
  /**
   * How often (ms) to send `{"type":"ping"}` while connected; a socket that answered nothing
   * for two intervals is presumed dead (a half-open TCP connection) and replaced. 0: off.
   * Default 15000.
   */
  pingIntervalMs?: number;
}

export type Frame = { type: string } & Record<string, unknown>;

/** A feature that lives on the socket: told about every open and every frame. */
export interface Channel {
  /** The socket is (re)connected: send what restores this feature's state. */
  onOpen(): void;
  /** A frame arrived; every channel sees every frame and picks its own. */
  onFrame(frame: Frame): void;
  /** The socket dropped (it will reconnect unless closed). */
  onDrop?(): void;
}

export type SocketStatus = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface SocketEvents {
  status: SocketStatus;
  /** An error frame no feature claimed (no `ref`), e.g. `SLOW_CONSUMER`, `SERVER_RESTARTING`. */
  error: PlazaError;
  /** The server ended the session (revoked or expired): sign in again. */
  sessionEnded: void;
}

/** WebSocket.OPEN, without relying on a global `WebSocket`. */
const OPEN = 1;
/** The application close code the server uses for a revoked session. */
const SESSION_REVOKED_CLOSE = 4001;

export class Socket {
  private ws: WebSocketLike | null = null;
  private status: SocketStatus = "idle";
  private readonly channels = new Set<Channel>();
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private heardSincePing = true;
  private readonly listeners: { [K in keyof SocketEvents]: Set<(v: SocketEvents[K]) => void> } = {
    status: new Set(),
    error: new Set(),
    sessionEnded: new Set(),
  };
  private readonly WS: WebSocketConstructor;

  constructor(private readonly options: SocketOptions, private readonly token: () => Promise<string | null>) {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new Error("no WebSocket here (Node 20): pass createClient({ WebSocket }) e.g. from the 'ws' package");
    }
    this.WS = WS;
  }

  get state(): SocketStatus {
    return this.status;
  }

  get isOpen(): boolean {
    return this.ws?.readyState === OPEN && this.status === "open";
  }

  on<K extends keyof SocketEvents>(event: K, listener: (v: SocketEvents[K]) => void): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  private emit<K extends keyof SocketEvents>(event: K, value: SocketEvents[K]): void {
    for (const l of this.listeners[event]) l(value);
  }

  private setStatus(s: SocketStatus): void {
    if (s === this.status) return;
    this.status = s;
    this.emit("status", s);
  }

  /** Adds a feature; the first one opens the socket. If already open, it restores at once. */
  attach(channel: Channel): void {
    this.channels.add(channel);
    if (this.status === "idle" || this.status === "closed") this.connect();
    else if (this.isOpen) channel.onOpen();
  }

  detach(channel: Channel): void {
    this.channels.delete(channel);
  }

  /** Sends a frame now; false when the socket is not open (restoring on open covers state). */
  send(frame: Frame): boolean {
    if (!this.isOpen || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a frame or throws `NOT_CONNECTED`: for actions that make no sense to replay later. */
  sendNow(frame: Frame): void {
    if (!this.send(frame)) {
      throw new PlazaError("NOT_CONNECTED", 0, "the socket is not connected; try again once it is");
    }
  }

  /** Drops the connection as a network failure would (then reconnects): for tests and "retry now". */
  drop(): void {
    const ws = this.ws;
    if (!ws) return;
    // Forget it first: closing a dead connection can take the close handshake's timeout, and
    // the reconnect should not wait for that.
    this.lost(ws, 4000);
    (ws as { terminate?: () => void }).terminate?.() ?? ws.close(4000, "client drop");
  }

  /** Reconnects now, e.g. with a new token. */
  restart(): void {
    if (this.status === "closed" || this.channels.size === 0) return;
    if (this.ws) this.drop();
    else if (this.status === "idle") void this.connect();
  }

  /** Closes for good (until a feature attaches again). */
  close(): void {
    this.setStatus("closed");
    clearTimeout(this.retryTimer);
    this.stopPing();
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000, "client closed");
  }

  private async connect(): Promise<void> {
    this.setStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    const token = await this.token();
    if (this.status === "closed") return;
    const url = new URL(this.options.url.replace(/\/+$/, "") + "/ws");
    url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
    if (token) url.searchParams.set("token", token);
    let ws: WebSocketLike;
    try {
      ws = new this.WS(url.toString());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.setStatus("open");
      this.startPing();
      for (const c of [...this.channels]) c.onOpen();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.heardSincePing = true;
      let frame: Frame;
      try {
        frame = JSON.parse(typeof ev.data === "string" ? ev.data : String(ev.data));
      } catch {
        return;
      }
      if (frame.type === "error" && frame.ref === undefined) {
        // SESSION_REVOKED is followed by close 4001, which reports `sessionEnded`.
        this.emit("error", PlazaError.fromFrame(frame));
      }
      for (const c of [...this.channels]) c.onFrame(frame);
    };
    ws.onerror = () => {
      // Always followed by onclose, which decides what happens next.
    };
    ws.onclose = (ev) => this.lost(ws, ev.code);
  }

  /** `ws` is gone (closed by either side, or given up on): tell the features, reconnect. */
  private lost(ws: WebSocketLike, code: number): void {
    if (this.ws !== ws) return;
    this.ws = null;
    this.stopPing();
    for (const c of [...this.channels]) c.onDrop?.();
    if (this.status === "closed") return;
    if (code === SESSION_REVOKED_CLOSE) {
      // Reconnecting with the same token would only be refused: wait for a new sign-in.
      this.emit("sessionEnded", undefined);
      this.setStatus("idle");
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.status === "closed") return;
    this.setStatus("reconnecting");
    const min = this.options.reconnect?.minDelayMs ?? 250;
    const max = this.options.reconnect?.maxDelayMs ?? 10_000;
    const ceiling = Math.min(max, min * 2 ** this.attempt);
    // "Equal jitter": half fixed, half random, so retries spread but still back off.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private startPing(): void {
    const every = this.options.pingIntervalMs ?? 15_000;
    if (every <= 0) return;
    this.heardSincePing = true;
    this.pingTimer = setInterval(() => {
      if (!this.heardSincePing) {
        this.drop();
        return;
      }
      this.heardSincePing = false;
      this.send({ type: "ping" });
    }, every);
    // Node: an idle client must not keep the process alive just to ping.
    (this.pingTimer as { unref?: () => void }).unref?.();
  }

  private stopPing(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }
}
