/**
 * Sign-in and the session token. Every route that issues a session hands its token to the
 * `TokenStore`, which keeps it in the app's storage (so a reload stays signed in) and tells
 * the socket to reconnect as the new user.
 */
import type { Http } from "./http.js";
import type { KeyValueStorage } from "./storage.js";
import type { Me, MfaRequired, Session } from "./types.js";

const TOKEN_KEY = "token";

/** The current token, persisted in `storage`; `changed` listeners hear every switch. */
export class TokenStore {
  private current: string | null = null;
  private readonly loaded: Promise<void>;
  private readonly listeners = new Set<(token: string | null) => void>();

  constructor(private readonly storage: KeyValueStorage, initial?: string | null) {
    // A token passed to createClient wins over a stored one (and is stored).
    this.loaded = (async () => {
      if (initial !== undefined) {
        await this.set(initial);
        return;
      }
      this.current = (await storage.get(TOKEN_KEY)) ?? null;
    })();
  }

  async get(): Promise<string | null> {
    await this.loaded;
    return this.current;
  }

  /** The token without waiting for storage (null until it has loaded). */
  peek(): string | null {
    return this.current;
  }

  async set(token: string | null): Promise<void> {
    const changed = token !== this.current;
    this.current = token;
    if (token) await this.storage.set(TOKEN_KEY, token);
    else await this.storage.remove(TOKEN_KEY);
    if (changed) for (const l of this.listeners) l(token);
  }

  onChange(listener: (token: string | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export interface TotpEnrollment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

export interface SessionInfo {
  id: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string;
  user_agent: string | null;
  ip: string | null;
  current: boolean;
}

export interface ApiKey {
  id: string;
  name: string;
  scope: "read" | "read_write";
  key?: string;
  created_at: string;
  last_used_at: string | null;
}

export interface Provider {
  name: string;
  display_name: string;
  login_url: string;
}

export class Auth {
  constructor(private readonly http: Http, readonly tokens: TokenStore) {}

  /** The session token in use (null: anonymous, or a cookie session from OAuth). */
  token(): Promise<string | null> {
    return this.tokens.get();
  }

  /** Uses `token` from now on (e.g. one minted by your own backend); null signs out locally. */
  setToken(token: string | null): Promise<void> {
    return this.tokens.set(token);
  }

  /** Hears every sign-in and sign-out. */
  onChange(listener: (token: string | null) => void): () => void {
    return this.tokens.onChange(listener);
  }

  private async adopt<T extends Session | MfaRequired>(answer: Promise<T>): Promise<T> {
    const s = await answer;
    if ("token" in s && s.token) await this.tokens.set(s.token);
    return s;
  }

  /** A guest session: a user id (`guest_…`) without an account; upgrade it later. */
  guest(): Promise<Session> {
    return this.adopt(this.http.post<Session>("/api/auth/guest"));
  }

  /** Sign-in by emailed 6-digit code: `send`, then `verify`. */
  readonly magic = {
    send: (email: string) => this.http.post<{ sent: true }>("/api/auth/magic/send", { email }),
    verify: (email: string, code: string) => this.adopt(this.http.post<Session>("/api/auth/magic/verify", { email, code })),
  };

  /** Creates an account and signs in. */
  register(email: string, password: string): Promise<Session> {
    return this.adopt(this.http.post<Session>("/api/auth/password/register", { email, password }));
  }

  /** Signs in; with TOTP on, answers `mfa_required` and `auth.totp.completeLogin` finishes. */
  login(email: string, password: string): Promise<Session | MfaRequired> {
    return this.adopt(this.http.post<Session | MfaRequired>("/api/auth/password/login", { email, password }));
  }

  /** Changes the password; every other session of the account ends. */
  changePassword(oldPassword: string, newPassword: string): Promise<{ ok: true; revoked: number }> {
    return this.http.post("/api/auth/password/change", { old_password: oldPassword, new_password: newPassword });
  }

  /** Password reset by emailed code: `request`, then `complete` (which signs in). */
  readonly reset = {
    request: (email: string) => this.http.post<{ sent: true }>("/api/auth/password/reset/request", { email }),
    complete: (email: string, code: string, password: string) =>
      this.adopt(this.http.post<Session | MfaRequired>("/api/auth/password/reset/complete", { email, code, password })),
  };

  /** Email verification for accounts (`auth.verified` in policies). */
  readonly email = {
    sendVerification: () => this.http.post<{ sent: true }>("/api/auth/email/send-verification"),
    verify: (code: string) => this.http.post<{ verified: true }>("/api/auth/email/verify", { code }),
  };

  /** Turns the signed-in guest into an account with the same user id. */
  upgrade(email: string, password: string): Promise<Session> {
    return this.adopt(this.http.post<Session>("/api/auth/upgrade", { email, password }));
  }

  /** TOTP second factor: enrol, confirm (turns it on), disable, and the login step. */
  readonly totp = {
    enroll: () => this.http.post<TotpEnrollment>("/api/auth/totp/enroll"),
    confirm: (code: string) => this.http.post<{ enabled: true; backup_codes: string[] }>("/api/auth/totp/verify", { code }),
    disable: (code: string) => this.http.post<{ enabled: false }>("/api/auth/totp/disable", { code }),
    /** Finishes a login that answered `mfa_required`, with a TOTP or backup code. */
    completeLogin: (mfaToken: string, code: string) =>
      this.adopt(this.http.post<Session>("/api/auth/totp/verify", { mfa_token: mfaToken, code })),
  };

  /** OAuth / OpenID Connect: the server runs the flow and sets the session cookie. */
  readonly oauth = {
    providers: () => this.http.get<{ providers: Provider[] }>("/api/auth/providers").then((r) => r.providers),
    /** Where to send the browser to sign in with `provider`, coming back to `returnTo`. */
    loginUrl: (provider: string, returnTo?: string) =>
      this.http.url(`/api/auth/login/${encodeURIComponent(provider)}`, { return_to: returnTo }),
    /** Navigates the page to the provider (browsers only). */
    redirect: (provider: string, returnTo: string = globalThis.location?.href) => {
      globalThis.location.assign(this.oauth.loginUrl(provider, returnTo));
    },
    /**
     * After the provider sent the browser back: with TOTP on, the return URL carries
     * `#mfa_token=…` for `totp.completeLogin`; otherwise the session is the cookie and this
     * answers null.
     */
    mfaTokenFromRedirect: (hash: string = globalThis.location?.hash ?? "") =>
      new URLSearchParams(hash.replace(/^#/, "")).get("mfa_token"),
  };

  /** Who the client is signed in as; 401 (`PlazaError`) when nobody. */
  me(): Promise<Me> {
    return this.http.get<Me>("/api/auth/me");
  }

  /** Revokes the session on the server and forgets the token. */
  async logout(): Promise<void> {
    try {
      await this.http.post("/api/auth/logout");
    } finally {
      await this.tokens.set(null);
    }
  }

  /** The account's sessions and API keys. */
  readonly sessions = {
    list: () => this.http.get<{ sessions: SessionInfo[] }>("/api/auth/sessions").then((r) => r.sessions),
    revoke: (id: string) => this.http.request<{ ok: true; revoked: true }>("DELETE", `/api/auth/sessions/${encodeURIComponent(id)}`),
  };

  readonly apiKeys = {
    list: () => this.http.get<{ api_keys: ApiKey[] }>("/api/auth/api-keys").then((r) => r.api_keys),
    create: (name: string, scope: "read" | "read_write" = "read") => this.http.post<ApiKey & { key: string }>("/api/auth/api-keys", { name, scope }),
    revoke: (id: string) => this.http.request<unknown>("DELETE", `/api/auth/api-keys/${encodeURIComponent(id)}`),
  };
}
