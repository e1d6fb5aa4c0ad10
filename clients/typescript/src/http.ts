/**
 * Requests to the server: base URL, bearer token, JSON in and out, and every non-2xx answer
 * (or no answer) turned into a `PlazaError`. Every other module speaks HTTP through this.
 */
import { PlazaError } from "./errors.js";

export type QueryValue = string | number | boolean | null | undefined;

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, QueryValue>;
  headers?: Record<string, string>;
  /** Return the `Response` untouched on success (downloads, redirects). */
  raw?: boolean;
  signal?: AbortSignal;
}

export interface HttpOptions {
  url: string;
  fetch?: typeof fetch;
  /**
   * Sent as `Origin` outside browsers (which set it themselves): the server's CSRF check wants
   * one on state-changing requests that carry no bearer token, e.g. a guest sign-in.
   */
  origin?: string;
  /** Whether the `plaza_session` cookie rides along (OAuth sign-ins only set the cookie). */
  credentials?: RequestCredentials;
}

export class Http {
  readonly baseUrl: string;
  private readonly fetchFn: typeof fetch;
  private readonly origin: string | undefined;
  private readonly credentials: RequestCredentials;

  constructor(options: HttpOptions, private readonly token: () => Promise<string | null>) {
    this.baseUrl = options.url.replace(/\/+$/, "");
    // Bound: a bare `fetch` stored on an object loses its `this` in browsers.
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.origin = options.origin;
    this.credentials = options.credentials ?? "include";
  }

  /** An absolute URL for `path` with `query` appended (undefined values left out). */
  url(path: string, query?: Record<string, QueryValue>): string {
    const u = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined) u.searchParams.set(k, v === null ? "null" : String(v));
    }
    return u.toString();
  }

  get<T>(path: string, options: Omit<RequestOptions, "body"> = {}): Promise<T> {
    return this.request<T>("GET", path, options);
  }

  post<T>(path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("POST", path, { ...options, body });
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
    const token = await this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (this.origin) headers.Origin = this.origin;
    let body: BodyInit | undefined;
    if (options.body instanceof FormData || options.body instanceof Blob) {
      body = options.body;
    } else if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    let response: Response;
    try {
      response = await this.fetchFn(this.url(path, options.query), {
        method,
        headers,
        body,
        credentials: this.credentials,
        redirect: options.raw ? "manual" : "follow",
        signal: options.signal,
      });
    } catch (e) {
      throw PlazaError.network(e);
    }
    if (!response.ok && !(options.raw && response.status >= 300 && response.status < 400)) {
      const retry = Number(response.headers.get("Retry-After"));
      const parsed = await response.json().catch(() => undefined);
      throw PlazaError.fromBody(response.status, parsed, Number.isFinite(retry) && retry > 0 ? retry : undefined);
    }
    if (options.raw) return response as unknown as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }
}
