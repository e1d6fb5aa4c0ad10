/**
 * One error type for everything the server (or the network) can refuse: the HTTP body
 * `{"error":{"code","message",...}}`, a WebSocket `{"type":"error",...}` frame, or a request
 * that never got an answer. Apps branch on `code`, which is stable; `message` is for people.
 */
export class PlazaError extends Error {
  /** `NOT_FOUND`, `VALIDATION`, `RESYNC_REQUIRED`, ...; `NETWORK` when no answer came back. */
  readonly code: string;
  /** The HTTP status; 0 for socket errors and network failures. */
  readonly status: number;
  /** Extra fields the server sent with the error (`oldest_seq`, `max`, `ref`, ...). */
  readonly details: Record<string, unknown>;
  /** Seconds to wait before retrying, from `Retry-After` (429, 503). */
  readonly retryAfter: number | undefined;

  constructor(code: string, status: number, message: string, details: Record<string, unknown> = {}, retryAfter?: number) {
    super(message);
    this.name = "PlazaError";
    this.code = code;
    this.status = status;
    this.details = details;
    this.retryAfter = retryAfter;
  }

  /** Builds the error from an `{"error":{...}}` body (or anything else a proxy answered). */
  static fromBody(status: number, body: unknown, retryAfter?: number): PlazaError {
    const error = isObject(body) && isObject(body.error) ? body.error : undefined;
    if (!error) {
      return new PlazaError(`HTTP_${status}`, status, `the server answered ${status}`, {}, retryAfter);
    }
    const { code, message, ...details } = error;
    // RESYNC_REQUIRED repeats `oldest_seq` at the top level of the body; keep it with the rest.
    const top = isObject(body) ? Object.fromEntries(Object.entries(body).filter(([k]) => k !== "error")) : {};
    return new PlazaError(String(code ?? `HTTP_${status}`), status, String(message ?? ""), { ...top, ...details }, retryAfter);
  }

  /** Builds the error from a WebSocket error frame. */
  static fromFrame(frame: Record<string, unknown>): PlazaError {
    const { type: _type, code, message, ...details } = frame;
    return new PlazaError(String(code ?? "ERROR"), 0, String(message ?? ""), details);
  }

  /** A request that got no HTTP answer (offline, DNS, refused connection, aborted). */
  static network(cause: unknown): PlazaError {
    const message = cause instanceof Error ? cause.message : String(cause);
    return new PlazaError("NETWORK", 0, `no answer from the server: ${message}`, { cause });
  }

  /** True when trying the same thing again later may succeed. */
  get transient(): boolean {
    return this.code === "NETWORK" || this.status === 429 || this.status === 503 || this.status >= 500;
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
