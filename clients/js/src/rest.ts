// The one REST call a client needs before it can connect: `POST /api/auth/login`.

import { RealtimeError } from "./client.js";
import type { LoginResponse, RestErrorBody } from "./types.js";

export interface LoginOptions {
  /** The server's base URL; `""` for the page's own origin. */
  url: string;
  email: string;
  password: string;
  /** `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
}

/**
 * Signs in with email and password. Resolves with the login response (`token`, `user`,
 * `session`, …); rejects with a `RealtimeError` whose `code` is the server's
 * (`invalid_credentials`, `account_disabled`, `too_many_attempts`, …).
 */
export async function login(options: LoginOptions): Promise<LoginResponse> {
  const doFetch = options.fetch ?? fetch;
  const res = await doFetch(`${options.url.replace(/\/$/, "")}/api/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    credentials: "include",
    body: JSON.stringify({ email: options.email, password: options.password }),
  });
  const body = (await res.json().catch(() => null)) as LoginResponse | RestErrorBody | null;
  if (!res.ok || !body || "error" in body) {
    const error = body && "error" in body ? body.error : null;
    throw new RealtimeError(
      error?.code ?? `http_${res.status}`,
      error?.message ?? `login failed with HTTP ${res.status}`,
      error?.fields,
    );
  }
  return body;
}
