// The cloud API as the `kestrel` CLI uses it: one request function that turns RFC 9457 problem
// answers into errors carrying the status and code, and the stored credentials (a session from
// `kestrel login`, or an API key) in a small JSON file.

import { mkdir, readFile, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";

export interface Credentials {
  url: string;
  /** A session token or an API key (kst_…): sent as a bearer token either way. */
  token: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** $KESTREL_CONFIG, else ~/.config/kestrel/credentials.json. */
export function credentialsPath(env: NodeJS.ProcessEnv): string {
  return env.KESTREL_CONFIG || join(homedir(), ".config", "kestrel", "credentials.json");
}

export async function saveCredentials(path: string, credentials: Credentials): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify(credentials), { mode: 0o600 });
}

/** From the environment first (KESTREL_URL with KESTREL_API_KEY, for CI), else the saved login. */
export async function loadCredentials(env: NodeJS.ProcessEnv): Promise<Credentials> {
  if (env.KESTREL_API_KEY) {
    if (!env.KESTREL_URL) throw new ApiError(0, "no_url", "KESTREL_API_KEY needs KESTREL_URL");
    return { url: env.KESTREL_URL.replace(/\/+$/, ""), token: env.KESTREL_API_KEY };
  }
  try {
    const saved = JSON.parse(await readFile(credentialsPath(env), "utf8")) as Partial<Credentials>;
    if (typeof saved.url === "string" && typeof saved.token === "string") return { url: saved.url, token: saved.token };
  } catch {
    // No saved login: the error below says what to do.
  }
  throw new ApiError(0, "not_logged_in", "not logged in: run `kestrel login`, or set KESTREL_URL and KESTREL_API_KEY");
}

export class KestrelApi {
  constructor(readonly credentials: Credentials) {}

  async request<T>(
    method: string,
    path: string,
    body?: { json: unknown } | { bytes: Uint8Array<ArrayBuffer> },
  ): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.credentials.token}` };
    let payload: string | Uint8Array<ArrayBuffer> | undefined;
    if (body && "json" in body) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body.json);
    } else if (body) {
      headers["content-type"] = "application/octet-stream";
      payload = body.bytes;
    }
    let response: Response;
    try {
      response = await fetch(`${this.credentials.url}${path}`, { method, headers, body: payload });
    } catch (error) {
      throw new ApiError(0, "unreachable", `cannot reach ${this.credentials.url}: ${(error as Error).message}`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = text;
    }
    if (!response.ok) {
      const problem = (parsed ?? {}) as { code?: string; detail?: string };
      throw new ApiError(
        response.status,
        problem.code ?? `http_${response.status}`,
        problem.detail ?? response.statusText,
      );
    }
    return parsed as T;
  }
}

/** Logs in with an email and password; the session token is what later commands send. */
export async function login(url: string, email: string, password: string, organization?: string): Promise<Credentials> {
  const base = url.replace(/\/+$/, "");
  const api = new KestrelApi({ url: base, token: "" });
  const body = organization === undefined ? { email, password } : { email, password, organization };
  const answer = await api.request<{ token: string }>("POST", "/api/auth/login", { json: body });
  return { url: base, token: answer.token };
}
