// One conversation: its header (who, online, typing), the messages with history paging, the
// request banner, and the composer. Messages on screen are marked read as they come.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { get, post } from "../api";
import { markRead } from "../realtime";
import { outbox } from "../outbox";
import * as s from "../state";
import { t } from "../strings";
import { when } from "../format";
import { Avatar } from "./bits";
import { Icon } from "./icons";
import { Bubble, PendingBubble } from "./Message";
import { Composer } from "./Composer";
import { ChatInfo } from "./ChatInfo";
import * as calls from "../calls";

const PAGE = 50;

interface Page {
  items: s.Message[];
  nextCursor: string | null;
}

async function loadLatest(id: string) {
  const page = await get<Page>(`/conversations/${id}/messages?limit=${PAGE}`);
  const t0 = s.timelines.value[id];
  // Live messages may have arrived meanwhile: keep them.
  const items = page.items.concat((t0?.items ?? []).filter((m) => !page.items.length || m.seq > page.items[page.items.length - 1].seq));
  s.setTimeline(id, { items, hasOlder: page.nextCursor !== null });
}

async function loadOlder(id: string) {
  const t0 = s.timelines.value[id];
  if (!t0?.items.length) return;
  const page = await get<Page>(`/conversations/${id}/messages?before=${t0.items[0].seq}&limit=${PAGE}`);
  const now = s.timelines.value[id];
  s.setTimeline(id, { items: page.items.concat(now.items), hasOlder: page.nextCursor !== null });
}

/** After a gap in seq (a live event missed), the messages after the last one held. */
async function fillAfter(id: string, after: number) {
  const page = await get<Page>(`/conversations/${id}/messages?after=${after}&limit=100`);
  for (const m of page.items) s.putMessage(m, false);
}

function subtitle(c: s.Conversation): string {
  const typers = (s.typing.value[c.id] ?? []).filter((u) => u !== s.me());
  if (typers.length) return c.kind === "group" ? t.someoneTyping(s.person(typers[0])?.displayName ?? "…") : t.typing;
  const peer = s.peerOf(c);
  if (peer) {
    const p = s.presence.value[peer];
    if (p?.online) return t.online;
    if (p?.lastSeenAt) return t.lastSeen(when(p.lastSeenAt));
    return "";
  }
  if (c.kind === "channel") return c.lead?.waId ? `${t.inbox.whatsapp} · +${c.lead.waId}` : t.inbox.whatsapp;
  if (c.kind === "support" && c.status) return t.inbox.supportDesk;
  return c.kind === "group" ? t.members(c.memberCount) : "";
}

function RequestBanner({ c }: { c: s.Conversation }) {
  const answer = async (verb: "accept" | "decline") => {
    await post(`/conversations/${c.id}/${verb}`);
    const fresh = await get<s.Conversation>(`/conversations/${c.id}`).catch(() => null);
    if (fresh) s.upsertConversation(fresh);
    if (verb === "decline") location.hash = "#/";
  };
  return (
    <div class="banner" role="region" aria-label={t.requests}>
      <p>{t.requestPending}</p>
      <button class="primary" onClick={() => answer("accept")}>{t.accept}</button>
      <button onClick={() => answer("decline")}>{t.decline}</button>
    </div>
  );
}

export function Chat({ id, back = "#/" }: { id: string; back?: string }) {
  const c = s.conversations.value[id];
  const timeline = s.timelines.value[id];
  const list = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const [replyTo, setReplyTo] = useState<s.Message | null>(null);
  const [editing, setEditing] = useState<s.Message | null>(null);
  const [info, setInfo] = useState(false);

  useEffect(() => {
    s.openId.value = id;
    stick.current = true;
    if (!s.timelines.value[id]) loadLatest(id).catch(() => undefined);
    markRead(id);
    const seen = () => document.visibilityState === "visible" && markRead(id);
    document.addEventListener("visibilitychange", seen);
    return () => {
      document.removeEventListener("visibilitychange", seen);
      if (s.openId.value === id) s.openId.value = null;
    };
  }, [id]);

  // A hole in the seq numbers after the last held message: fetch what is missing.
  const items = timeline?.items ?? [];
  const lastSeq = c?.lastMessage?.seq ?? 0;
  const heldSeq = items.length ? items[items.length - 1].seq : 0;
  useEffect(() => {
    if (timeline && heldSeq && lastSeq > heldSeq) fillAfter(id, heldSeq).catch(() => undefined);
  }, [id, heldSeq, lastSeq, !!timeline]);

  // Stay at the bottom while the reader is there; keep the place when older messages load.
  const pending = outbox.value.filter((p) => p.conversationId === id);
  useLayoutEffect(() => {
    const el = list.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [items.length, items[items.length - 1]?.id, pending.length, s.typing.value[id]?.length]);

  if (!c) return <section class="chat empty-chat"><p class="muted">{t.connecting}</p></section>;
  const title = s.titleOf(c);
  const peer = s.peerOf(c);

  const older = async () => {
    const el = list.current!;
    const from = el.scrollHeight - el.scrollTop;
    await loadOlder(id);
    requestAnimationFrame(() => (el.scrollTop = el.scrollHeight - from));
  };

  return (
    <section class="chat" aria-label={title}>
      <header class="chat-head">
        <a href={back} class="icon back" aria-label={t.back}><Icon name="back" /></a>
        <button class="chat-who" title={t.aboutChat(title)} onClick={() => setInfo(true)} disabled={c.kind === "channel" || c.kind === "support"}>
          <span class="sr-only">{t.about} </span>
          <Avatar id={c.id} name={title} online={peer ? s.presence.value[peer]?.online : false} size={40} />
          <span class="who-text">
            <h2>{title}</h2>
            <span class="muted subtitle" aria-live="polite">{subtitle(c)}</span>
          </span>
        </button>
        {peer && c.requestState === "accepted" && (
          <>
            <button class="icon" aria-label={t.calls.voice} title={t.calls.voice} onClick={() => void calls.start(c.id, { id: peer, displayName: title }, "audio")}><Icon name="phone" /></button>
            <button class="icon" aria-label={t.calls.video} title={t.calls.video} onClick={() => void calls.start(c.id, { id: peer, displayName: title }, "video")}><Icon name="video" /></button>
          </>
        )}
      </header>
      {info && <ChatInfo c={c} onClose={() => setInfo(false)} />}
      <div
        class="messages"
        role="log"
        aria-label={t.messagesOf(title)}
        ref={list}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        }}
      >
        <ol>
        {timeline?.hasOlder && (
          <li class="older">
            <button onClick={older}>{t.loadOlder}</button>
          </li>
        )}
        {timeline && !items.length && !pending.length && <li class="muted empty">{t.noMessages}</li>}
        {items.map((m, i) => (
          <Bubble key={m.id} c={c} m={m} prev={items[i - 1]} onReply={setReplyTo} onEdit={setEditing} />
        ))}
        {pending.map((p) => <PendingBubble key={p.clientMsgId} p={p} />)}
        </ol>
      </div>
      {c.requestState === "pending" && <RequestBanner c={c} />}
      <Composer c={c} replyTo={replyTo} editing={editing} onDone={() => (setReplyTo(null), setEditing(null))} />
    </section>
  );
}
