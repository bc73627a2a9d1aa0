// What the app knows: conversations, the loaded part of each timeline, receipts, typing,
// presence and people — as signals, changed only by the functions here (fed by HTTP answers,
// live events and sync pages alike, so a replayed change lands exactly like a live one).

import { signal, computed } from "@preact/signals";
import { get, session, type User } from "./api";
import { t } from "./strings";

export interface Party {
  type: "user" | "lead" | "system";
  id: string | null;
}

export interface Media {
  id: string;
  kind: string;
  contentType: string;
  size: number;
  fileName?: string;
  width?: number;
  height?: number;
  durationMs?: number;
  url: string;
  thumbnailUrl?: string;
}

export interface Message {
  id: string;
  conversationId: string;
  seq: number;
  sender: Party;
  type: string;
  text: string | null;
  media: Media | null;
  replyTo: { id: string; seq: number; sender: Party; type: string; text: string | null } | null;
  forwarded: boolean;
  reactions: { emoji: string; by: Party }[];
  editedAt: string | null;
  deletedAt: string | null;
  createdAt: string;
  status: "pending" | "sent" | "delivered" | "read" | "failed";
  clientMsgId: string | null;
  payload?: unknown;
  call?: { callId: string; media: "audio" | "video"; outcome: string; durationMs: number };
}

export interface Conversation {
  id: string;
  kind: "direct" | "group" | "channel" | "support";
  title: string | null;
  description: string | null;
  lastActivityAt: string;
  lastMessage: Message | null;
  unreadCount: number;
  members: { userId: string; role: string; joinedAt: string }[];
  memberCount: number;
  requestState: "none" | "pending" | "accepted" | "declined" | string;
  settings: { mutedUntil: string | null; archived: boolean; pinned: boolean };
  status?: string;
  assigneeId?: string | null;
  snoozedUntil?: string | null;
  windowExpiresAt?: string | null;
  channel?: { id: string; phoneNumberId: string };
  lead?: { id: string; waId?: string; userId?: string; name: string | null };
}

/** The loaded stretch of one conversation's messages, ascending by seq without gaps. */
export interface Timeline {
  items: Message[];
  /** More below the first loaded seq. */
  hasOlder: boolean;
}

export type Connection = "connecting" | "online" | "offline";

export const conversations = signal<Record<string, Conversation>>({});
export const timelines = signal<Record<string, Timeline>>({});
/** Per conversation, per member: how far their devices got and how far they read. */
export const receipts = signal<Record<string, Record<string, { delivered: number; read: number }>>>({});
/** Per conversation: the members typing now. */
export const typing = signal<Record<string, string[]>>({});
export const presence = signal<Record<string, { online: boolean; lastSeenAt: string | null }>>({});
export const people = signal<Record<string, User>>({});
export const connection = signal<Connection>("connecting");
/** The conversation on screen (its messages are read as they come). */
export const openId = signal<string | null>(null);

export const me = () => session.value?.user.id ?? "";

export const sortedConversations = computed(() =>
  Object.values(conversations.value).sort((a, b) => {
    if (a.settings.pinned !== b.settings.pinned) return a.settings.pinned ? -1 : 1;
    return b.lastActivityAt.localeCompare(a.lastActivityAt);
  }),
);

export function reset() {
  conversations.value = {};
  timelines.value = {};
  receipts.value = {};
  typing.value = {};
  presence.value = {};
  openId.value = null;
}

export function setConversations(list: Conversation[]) {
  const next: Record<string, Conversation> = {};
  for (const c of list) {
    // A live event may have brought a newer message than the snapshot knew.
    const old = conversations.value[c.id];
    next[c.id] = old?.lastMessage && (!c.lastMessage || old.lastMessage.seq > c.lastMessage.seq) ? { ...c, lastMessage: old.lastMessage } : c;
  }
  conversations.value = next;
}

export function upsertConversation(c: Conversation) {
  const old = conversations.value[c.id];
  // A list entry may be newer than the event's (a message came after it): keep the newer.
  const lastMessage = old?.lastMessage && (!c.lastMessage || old.lastMessage.seq > c.lastMessage.seq) ? old.lastMessage : c.lastMessage;
  conversations.value = { ...conversations.value, [c.id]: { ...c, lastMessage } };
}

function insertSorted(items: Message[], m: Message): Message[] {
  const at = items.findIndex((x) => x.id === m.id || x.seq === m.seq);
  if (at >= 0) {
    const next = items.slice();
    next[at] = m;
    return next;
  }
  const next = items.concat(m);
  if (items.length && items[items.length - 1].seq > m.seq) next.sort((a, b) => a.seq - b.seq);
  return next;
}

/** A new or changed message, from an ack, a live event or a sync page. */
export function putMessage(m: Message, isNew: boolean) {
  const t = timelines.value[m.conversationId];
  if (t) timelines.value = { ...timelines.value, [m.conversationId]: { ...t, items: insertSorted(t.items, m) } };
  const c = conversations.value[m.conversationId];
  if (!c) return;
  const latest = !c.lastMessage || m.seq >= c.lastMessage.seq;
  const mine = m.sender.type === "user" && m.sender.id === me();
  const counted = isNew && !mine && m.type !== "system" && openId.value !== m.conversationId && (!c.lastMessage || m.seq > c.lastMessage.seq);
  conversations.value = {
    ...conversations.value,
    [c.id]: {
      ...c,
      lastMessage: latest ? m : c.lastMessage,
      lastActivityAt: latest && m.createdAt > c.lastActivityAt ? m.createdAt : c.lastActivityAt,
      unreadCount: counted ? c.unreadCount + 1 : c.unreadCount,
    },
  };
}

export function setTimeline(id: string, t: Timeline) {
  timelines.value = { ...timelines.value, [id]: t };
}

export function markReadLocally(id: string) {
  const c = conversations.value[id];
  if (c && c.unreadCount) conversations.value = { ...conversations.value, [id]: { ...c, unreadCount: 0 } };
}

export function applyStatus(e: { conversationId: string; userId: string; status: "delivered" | "read"; upToSeq: number }) {
  const byUser = { ...(receipts.value[e.conversationId] ?? {}) };
  const r = { ...(byUser[e.userId] ?? { delivered: 0, read: 0 }) };
  // Receipts only move forward; a read implies delivered.
  r.delivered = Math.max(r.delivered, e.upToSeq);
  if (e.status === "read") r.read = Math.max(r.read, e.upToSeq);
  byUser[e.userId] = r;
  receipts.value = { ...receipts.value, [e.conversationId]: byUser };
}

const RANK = { failed: -1, pending: 0, sent: 1, delivered: 2, read: 3 } as const;

/** The ticks of one of my messages: the server's view, moved forward by live receipts. */
export function statusOf(c: Conversation | undefined, m: Message): Message["status"] {
  if (!c || m.status === "failed" || m.status === "pending") return m.status;
  const others = c.members.filter((x) => x.userId !== me());
  const byUser = receipts.value[c.id] ?? {};
  let live: Message["status"] = "sent";
  if (others.length && others.every((o) => (byUser[o.userId]?.read ?? 0) >= m.seq)) live = "read";
  else if (others.length && others.every((o) => (byUser[o.userId]?.delivered ?? 0) >= m.seq)) live = "delivered";
  return RANK[live] > RANK[m.status] ? live : m.status;
}

const typingTimers = new Map<string, number>();

export function setTyping(conversationId: string, userId: string, on: boolean) {
  const key = conversationId + "/" + userId;
  clearTimeout(typingTimers.get(key));
  const now = typing.value[conversationId] ?? [];
  const next = on ? (now.includes(userId) ? now : now.concat(userId)) : now.filter((u) => u !== userId);
  typing.value = { ...typing.value, [conversationId]: next };
  // The server ends a typing that gets no stop after 6 s; a lost stop should not linger either.
  if (on) typingTimers.set(key, window.setTimeout(() => setTyping(conversationId, userId, false), 7000));
}

export function setPresence(e: { userId: string; online: boolean; lastSeenAt: string | null }) {
  presence.value = { ...presence.value, [e.userId]: { online: e.online, lastSeenAt: e.lastSeenAt } };
}

const asked = new Set<string>();

/** A person's public profile, fetched once when first needed. */
export function person(id: string | null | undefined): User | undefined {
  if (!id) return undefined;
  const known = people.value[id];
  if (!known && !asked.has(id)) {
    asked.add(id);
    get<User>(`/users/${id}`)
      .then((u) => {
        people.value = { ...people.value, [id]: u };
        if (!presence.value[id] && u.lastSeenAt) setPresence({ userId: id, online: false, lastSeenAt: u.lastSeenAt });
      })
      .catch(() => asked.delete(id));
  }
  return known;
}

export function remember(users: User[]) {
  const next = { ...people.value };
  for (const u of users) next[u.id] = { ...next[u.id], ...u };
  people.value = next;
}

/** A person's name on screen ("You" for the caller). */
export function nameOf(id: string | null | undefined): string {
  if (!id) return "…";
  if (id === me()) return t.you;
  return person(id)?.displayName ?? "…";
}

/** A conversation's name on screen. */
export function titleOf(c: Conversation): string {
  if (c.title) return c.title;
  if (c.lead) return c.lead.name || (c.lead.waId ? "+" + c.lead.waId : "…");
  const other = c.members.find((m) => m.userId !== me());
  return person(other?.userId)?.displayName ?? "…";
}

/** The other member of a direct conversation. */
export function peerOf(c: Conversation): string | null {
  if (c.kind !== "direct") return null;
  return c.members.find((m) => m.userId !== me())?.userId ?? null;
}
