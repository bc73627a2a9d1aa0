// Small helpers for what the screens show: times, initials, colours, previews.

import { t } from "./strings";
import { me, type Message } from "./state";

const sameDay = (a: Date, b: Date) => a.toDateString() === b.toDateString();

/** A message's time: the hour today, the weekday this week, else the date. */
export function shortTime(iso: string): string {
  const d = new Date(iso);
  const now = new Date();
  if (sameDay(d, now)) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (now.getTime() - d.getTime() < 6 * 86400e3) return d.toLocaleDateString([], { weekday: "short" });
  return d.toLocaleDateString();
}

export const clock = (iso: string) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/** "today at 10:04", "yesterday at 22:10", or a date with the time. */
export function when(iso: string): string {
  const d = new Date(iso);
  const now = new Date();
  const yesterday = new Date(now.getTime() - 86400e3);
  const at = clock(iso);
  if (sameDay(d, now)) return `today at ${at}`;
  if (sameDay(d, yesterday)) return `yesterday at ${at}`;
  return `${d.toLocaleDateString()} ${at}`;
}

export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? "?").slice(0, 2);
  return letters.toUpperCase();
}

/** A stable hue for a person or group, from its id. */
export function hueOf(id: string): number {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return h % 360;
}

/** What a system message records, in words ("Eve added Frank"). */
export function systemText(m: Message, name: (id: string | null | undefined) => string): string {
  const p = (m.payload ?? {}) as Record<string, any>;
  const actor = name(p.actorId);
  switch (p.event) {
    case "created":
      return t.system.created(actor, p.title ?? "");
    case "member_added":
      return t.system.added(actor, (p.userIds ?? []).map(name).join(", "));
    case "member_removed":
      return t.system.removed(actor, name(p.userId));
    case "member_left":
      return t.system.left(name(p.userId));
    case "title_changed":
      return t.system.renamed(actor, p.title ?? "");
    default:
      return m.text ?? t.system.changed;
  }
}

/** One line saying what a message is, for the chat list and replies. */
export function preview(m: Message, name?: (id: string | null | undefined) => string): string {
  if (m.type === "system" && name) return systemText(m, name);
  if (m.deletedAt) return t.deleted;
  if (m.call) return t.calls.log(m.call.media, m.call.outcome, m.sender.id !== me());
  if (m.text) return m.text;
  if (m.media?.fileName && m.type === "document") return m.media.fileName;
  return t.media[m.type] ?? m.type;
}

export function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
