// The HTTP side of the API: the signed-in session (kept in local storage), requests with its
// access token, one refresh at a time when the token runs out, and problem documents as errors.

import { signal } from "@preact/signals";

export interface User {
  id: string;
  displayName: string;
  about?: string;
  email?: string | null;
  phone?: string | null;
  avatarMediaId?: string | null;
  lastSeenAt?: string | null;
  isPlatformAdmin?: boolean;
}

export interface Session {
  accessToken: string;
  refreshToken: string;
  user: User;
}

/** An RFC 9457 problem document the server answered with. */
export class Problem extends Error {
  constructor(
    public status: number,
    public code: string,
    detail: string,
    public errors: { field: string; message: string }[] = [],
  ) {
    super(detail);
  }
}

const SESSION_KEY = "palaver.session";
const DEVICE_KEY = "palaver.device";

function load(): Session | null {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null");
  } catch {
    return null;
  }
}

/** The signed-in session; null when signed out. */
export const session = signal<Session | null>(load());

export function saveSession(s: Session | null) {
  if (s) localStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else localStorage.removeItem(SESSION_KEY);
  session.value = s;
}

/** This browser's device id, stable across sign-ins so that a new sign-in replaces its session. */
export function deviceId(): string {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id) {
    id = "web-" + crypto.randomUUID();
    localStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}

export function deviceName(): string {
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrom/.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
  return `${browser} (web)`;
}

async function problemOf(res: Response): Promise<Problem> {
  try {
    const p = await res.json();
    return new Problem(res.status, p.code ?? "error", p.detail ?? p.title ?? res.statusText, p.errors ?? []);
  } catch {
    return new Problem(res.status, "error", res.statusText);
  }
}

let refreshing: Promise<boolean> | null = null;

/** Exchanges the refresh token for a new pair, once for all callers waiting at the same time. */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const s = session.value;
    if (!s) return false;
    const res = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refreshToken: s.refreshToken }),
    }).catch(() => null);
    if (!res) return false; // offline: keep the session, try again later
    if (!res.ok) {
      if (res.status === 401) saveSession(null);
      return false;
    }
    const pair = await res.json();
    // The session may have been replaced meanwhile (signed out): keep the newer one.
    if (session.value?.refreshToken === s.refreshToken) {
      saveSession({ ...s, accessToken: pair.accessToken, refreshToken: pair.refreshToken });
    }
    return true;
  })().finally(() => (refreshing = null));
  return refreshing;
}

interface Options {
  body?: unknown;
  form?: FormData;
  workspace?: string;
  /** Makes a create safe to retry (`Idempotency-Key`). */
  idempotencyKey?: string;
}

async function send(method: string, path: string, o: Options): Promise<Response> {
  const headers: Record<string, string> = {};
  const token = session.value?.accessToken;
  if (token) headers.authorization = `Bearer ${token}`;
  const workspace = o.workspace ?? localStorage.getItem("palaver.workspace");
  if (workspace) headers["palaver-workspace"] = workspace;
  if (o.idempotencyKey) headers["idempotency-key"] = o.idempotencyKey;
  let body: BodyInit | undefined;
  if (o.form) body = o.form;
  else if (o.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(o.body);
  }
  return fetch("/api/v1" + path, { method, headers, body });
}

/** A request to `/api/v1{path}`; the parsed JSON answer (undefined for 204), or a `Problem`. */
export async function call<T = any>(method: string, path: string, o: Options = {}): Promise<T> {
  let res = await send(method, path, o);
  if (res.status === 401 && session.value && !path.startsWith("/auth/")) {
    if (await refresh()) res = await send(method, path, o);
  }
  if (!res.ok) throw await problemOf(res);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get("content-type") ?? "";
  return (type.includes("json") ? res.json() : res.text()) as Promise<T>;
}

/** The bytes of a protected download (media need the token, so no plain `<img src>`). */
export async function blobUrl(path: string): Promise<string> {
  let res = await fetch(path, { headers: { authorization: `Bearer ${session.value?.accessToken}` } });
  if (res.status === 401 && (await refresh())) {
    res = await fetch(path, { headers: { authorization: `Bearer ${session.value?.accessToken}` } });
  }
  if (!res.ok) throw await problemOf(res);
  return URL.createObjectURL(await res.blob());
}

export const get = <T = any>(path: string) => call<T>("GET", path);
export const post = <T = any>(path: string, body?: unknown) => call<T>("POST", path, { body });
export const patch = <T = any>(path: string, body?: unknown) => call<T>("PATCH", path, { body });
export const del = <T = any>(path: string) => call<T>("DELETE", path);

/** Signs in with the answer of `/auth/signup`, `/auth/login` or `/auth/otp/verify`. */
export function signedIn(answer: { accessToken: string; refreshToken: string; user: User }) {
  saveSession({ accessToken: answer.accessToken, refreshToken: answer.refreshToken, user: answer.user });
}

export async function signOut() {
  await post("/auth/logout").catch(() => undefined);
  localStorage.removeItem("palaver.cursor");
  localStorage.removeItem("palaver.workspace");
  saveSession(null);
}
