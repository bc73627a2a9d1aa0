// The Socket.IO side: one socket per signed-in tab, live events into the state, and catch-up.
// The last cursor seen is kept in local storage; after a dropped connection the app asks for
// everything after it (`sync:request`), so nothing is missed. Applying a change twice does
// nothing, so live events are applied as they come; only the sync's pages move the cursor
// until the catch-up is done.

import { io, type Socket } from "socket.io-client";
import { get, refresh, session, signOut } from "./api";
import * as s from "./state";

const CURSOR_KEY = "palaver.cursor";
let socket: Socket | null = null;
const onlineHooks: (() => void)[] = [];
const listeners: [string, (data: any) => void][] = [];

/** Handles a server event on this socket and every later one (calls, inbox events); the
 *  answer stops it. */
export function listen(event: string, fn: (data: any) => void): () => void {
  const entry: [string, (data: any) => void] = [event, fn];
  listeners.push(entry);
  socket?.on(event, fn);
  return () => {
    listeners.splice(listeners.indexOf(entry), 1);
    socket?.off(event, fn);
  };
}

/** Runs `fn` each time the socket is connected and caught up. */
export function whenOnline(fn: () => void) {
  onlineHooks.push(fn);
}

/** Whether this tab has taken a snapshot yet (a reload starts from a fresh one). */
let synced = false;

type Ack<T = unknown> = { ok: true } & T | { ok: false; error: { code: string; message: string; retryAfter?: number } };

function saveCursor(cursor: string | undefined) {
  if (cursor) localStorage.setItem(CURSOR_KEY, cursor);
}

/** Applies one change, live or replayed from the stream (a replayed message's delivery is told
 *  once per conversation at the end of the catch-up, not once per message). */
function apply(type: string, data: any, advance = true, replayed?: Map<string, number>) {
  switch (type) {
    case "message:new":
      s.putMessage(data.message, true);
      if (replayed) {
        const m: s.Message = data.message;
        if (m.sender.id !== s.me()) replayed.set(m.conversationId, Math.max(replayed.get(m.conversationId) ?? 0, m.seq));
      } else delivered(data.message);
      break;
    case "message:updated":
      s.putMessage(data.message, false);
      break;
    case "message:status":
      s.applyStatus(data);
      break;
    case "conversation:updated":
      s.upsertConversation(data.conversation);
      break;
  }
  if (advance) saveCursor(data.cursor);
}

/** Tells the sender the message reached this device, and that it was read if it is on screen. */
function delivered(m: s.Message) {
  if (m.sender.type === "user" && m.sender.id === s.me()) return;
  emit("message:delivered", { conversationId: m.conversationId, seq: m.seq });
  if (s.openId.value === m.conversationId && document.visibilityState === "visible") markRead(m.conversationId);
}

export function markRead(conversationId: string) {
  const c = s.conversations.value[conversationId];
  const seq = c?.lastMessage?.seq;
  if (!seq || c.requestState === "declined") return;
  s.markReadLocally(conversationId);
  emit("message:read", { conversationId, seq });
}

async function catchUp(sock: Socket) {
  let cursor = localStorage.getItem(CURSOR_KEY);
  const fresh = !synced || !cursor;
  if (fresh) {
    const page: any = await sock.emitWithAck("sync:request", {});
    if (!page.ok) throw new Error(page.error?.message);
    // The snapshot lists accepted conversations; message requests come from their own list.
    const requests = await get<{ items: s.Conversation[] }>("/conversations?requests=true&limit=100").catch(() => ({ items: [] }));
    const all: s.Conversation[] = (page.conversations ?? []).concat(requests.items);
    s.setConversations(all);
    saveCursor(page.cursor);
    synced = true;
    // What others wrote while this device had no socket reached it now, in the snapshot:
    // tell it as delivered (a conversation with nothing unread is read, so delivered too).
    for (const c of all) {
      const m = c.lastMessage;
      if (m && c.unreadCount > 0 && !(m.sender.type === "user" && m.sender.id === s.me())) {
        sock.emit("message:delivered", { conversationId: c.id, seq: m.seq });
      }
    }
    // What changed while the lists were read (a request accepted in between, whose live event
    // the list above replaced) comes after the snapshot's cursor: page on from there.
    cursor = page.cursor;
  }
  const replayed = new Map<string, number>();
  for (;;) {
    const page: any = await sock.emitWithAck("sync:request", { cursor, limit: 500 });
    if (!page.ok) {
      // Just after a snapshot the cursor is good: the server could not answer now, so the
      // connection's handler tries again shortly (not a loop of snapshots).
      if (fresh) throw new Error(page.error?.message);
      // A cursor the server no longer knows: start again from a snapshot.
      localStorage.removeItem(CURSOR_KEY);
      synced = false;
      return catchUp(sock);
    }
    for (const e of page.events) apply(e.type, e.data, true, replayed);
    saveCursor(page.cursor);
    cursor = page.cursor;
    if (!page.hasMore) break;
  }
  for (const [conversationId, seq] of replayed) sock.emit("message:delivered", { conversationId, seq });
}

export function connect() {
  if (socket) return;
  s.connection.value = "connecting";
  const sock = io({
    transports: ["websocket"],
    auth: (cb) => cb({ token: session.value?.accessToken, workspace: localStorage.getItem("palaver.workspace") ?? undefined }),
  });
  socket = sock;
  sock.on("connect", () => {
    catchUp(sock)
      .then(() => {
        s.connection.value = "online";
        if (s.openId.value) markRead(s.openId.value);
        for (const fn of onlineHooks) fn();
      })
      // The server could not answer the catch-up: try again shortly, not in a tight loop.
      .catch(() => {
        sock.disconnect();
        setTimeout(() => socket === sock && sock.connect(), 2000);
      });
  });
  sock.on("disconnect", () => (s.connection.value = "offline"));
  sock.on("connect_error", async (err: any) => {
    s.connection.value = "offline";
    if (err?.data?.code === "unauthorized") {
      if (await refresh()) sock.connect();
      else if (!session.value) disconnect();
    }
  });
  sock.on("session:ended", async (e: { reason: string }) => {
    if (e.reason === "token_expired" && (await refresh())) {
      sock.disconnect().connect();
    } else if (e.reason === "session_revoked") {
      disconnect();
      await signOut();
    }
  });
  for (const type of ["message:new", "message:updated", "message:status", "conversation:updated"]) {
    sock.on(type, (data) => apply(type, data, s.connection.value === "online"));
  }
  for (const [event, fn] of listeners) sock.on(event, fn);
  sock.on("typing", (e: { conversationId: string; userId: string; typing: boolean }) => s.setTyping(e.conversationId, e.userId, e.typing));
  sock.on("presence", (e) => s.setPresence(e));
}

// The browser knows before the socket does when the network goes: drop the socket at once
// (so that nothing is sent into the void and the screen says so) and come back with it.
addEventListener("offline", () => {
  if (!socket) return;
  socket.disconnect();
  s.connection.value = "offline";
});
addEventListener("online", () => socket?.connect());

export function disconnect() {
  socket?.disconnect();
  socket = null;
  synced = false;
  s.reset();
}

export function emit(event: string, payload: unknown) {
  socket?.connected && socket.emit(event, payload);
}

/** An event with an ack; rejects when not connected or after 15 s. */
export async function request<T>(event: string, payload: unknown): Promise<T> {
  if (!socket?.connected) throw new Error("offline");
  const ack = (await socket.timeout(15000).emitWithAck(event, payload)) as Ack<T>;
  if (!ack.ok) throw Object.assign(new Error(ack.error.message), { code: ack.error.code, retryAfter: ack.error.retryAfter });
  return ack as T;
}

let lastTyping = 0;

/** Typing in a composer: a start at most every 3 s while typing, a stop when done. */
export function typingIn(conversationId: string, typingNow: boolean) {
  const now = Date.now();
  if (typingNow && now - lastTyping > 3000) {
    lastTyping = now;
    emit("typing:start", { conversationId });
  } else if (!typingNow && lastTyping) {
    lastTyping = 0;
    emit("typing:stop", { conversationId });
  }
}

export const online = () => socket?.connected ?? false;

