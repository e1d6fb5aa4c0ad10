// Talking to Plaza: the admin token lives in this tab's sessionStorage and goes out as a bearer
// header on every call (never a cookie, so CSRF does not apply). Errors come back as ApiError
// carrying the server's {"error":{"code","message"}}.

const KEY = "plaza.studio.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSignedOut = () => {};
/** Called when the server stops accepting the token (401/403 on an admin call). */
export function whenSignedOut(f) {
  onSignedOut = f;
}

/**
 * fetch with the bearer token. `body` objects are sent as JSON; strings as they are.
 * Answers parsed JSON (or text for non-JSON answers); throws ApiError.
 */
export async function api(path, { method = "GET", body, headers = {}, raw = false, tok } = {}) {
  const t = tok ?? token.get();
  const h = { ...headers };
  if (t) h.Authorization = `Bearer ${t}`;
  let payload = body;
  if (body !== undefined && typeof body !== "string") {
    payload = JSON.stringify(body);
    h["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: payload, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "NETWORK", `Plaza did not answer (${e.message})`);
  }
  if (raw && resp.ok) return resp;
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json().catch(() => null) : await resp.text();
  if (!resp.ok) {
    const err = data && data.error ? data.error : { code: `HTTP_${resp.status}`, message: String(data || resp.statusText) };
    const e = new ApiError(resp.status, err.code, err.message);
    if (tok === undefined && (resp.status === 401 || (resp.status === 403 && err.code === "FORBIDDEN" && path.startsWith("/api/admin/")))) {
      onSignedOut(e);
    }
    throw e;
  }
  return data;
}

/** Checks a token against an admin-only endpoint; answers the manifest when it is the admin's. */
export async function verify(candidate) {
  return api("/api/admin/manifest", { tok: candidate });
}

export const enc = encodeURIComponent;
