// Messages written but not yet acknowledged by the server. They stay (in local storage too)
// until the server has stored them, and are sent again with the same `clientMsgId` when the
// connection returns, so a message typed offline is sent once, exactly once.

import { signal } from "@preact/signals";
import { request, online } from "./realtime";
import { putMessage, type Message } from "./state";

export interface Pending {
  conversationId: string;
  clientMsgId: string;
  type: string;
  text?: string;
  mediaId?: string;
  replyToId?: string;
  template?: { name: string; language: string; parameters: string[] };
  createdAt: string;
  failed?: string;
}

const KEY = "palaver.outbox";

function load(): Pending[] {
  try {
    return JSON.parse(localStorage.getItem(KEY) ?? "[]");
  } catch {
    return [];
  }
}

export const outbox = signal<Pending[]>(load());

function save(list: Pending[]) {
  outbox.value = list;
  localStorage.setItem(KEY, JSON.stringify(list));
}

const inFlight = new Set<string>();

async function deliver(p: Pending) {
  if (inFlight.has(p.clientMsgId) || !online()) return;
  inFlight.add(p.clientMsgId);
  try {
    const { failed: _, createdAt: __, ...payload } = p;
    const ack = await request<{ message: Message }>("message:send", payload);
    putMessage(ack.message, false);
    save(outbox.value.filter((x) => x.clientMsgId !== p.clientMsgId));
  } catch (e: any) {
    if (e.code && e.code !== "rate_limited" && e.code !== "unavailable") {
      // Refused for good (not a member, blocked, declined…): say so and keep it for the user to see.
      save(outbox.value.map((x) => (x.clientMsgId === p.clientMsgId ? { ...x, failed: e.message } : x)));
    } else if (online()) {
      // Not now (a limit, a busy server, no ack in time): again after the wait the server names.
      setTimeout(() => outbox.value.some((x) => x.clientMsgId === p.clientMsgId) && void deliver(p), (e.retryAfter ?? 2) * 1000);
    }
    // Offline: the reconnect's flush sends it.
  } finally {
    inFlight.delete(p.clientMsgId);
  }
}

export function enqueue(p: Omit<Pending, "clientMsgId" | "createdAt">) {
  const item: Pending = { ...p, clientMsgId: crypto.randomUUID(), createdAt: new Date().toISOString() };
  save(outbox.value.concat(item));
  void deliver(item);
}

/** Sends whatever waits, in order (after a reconnect). */
export async function flush() {
  for (const p of outbox.value) if (!p.failed) await deliver(p);
}

/** Signed out: what waits belongs to the account that wrote it, not to the next one. */
export function clear() {
  save([]);
}

export function discard(clientMsgId: string) {
  save(outbox.value.filter((x) => x.clientMsgId !== clientMsgId));
}
