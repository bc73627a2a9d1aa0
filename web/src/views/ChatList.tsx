// The chat list: pinned first, then by last activity; unread counts, the last message with its
// ticks, who is typing, online dots; a filter box; the requests and archived folders.

import { useEffect, useState } from "preact/hooks";
import { get } from "../api";
import * as s from "../state";
import { t } from "../strings";
import { preview, shortTime } from "../format";
import { Avatar, Ticks } from "./bits";
import { Icon } from "./icons";

type Folder = "chats" | "requests" | "archived";

function inFolder(c: s.Conversation, folder: Folder): boolean {
  const pending = c.requestState === "pending";
  if (c.requestState === "declined") return false;
  if (folder === "requests") return pending;
  if (pending) return false;
  return folder === "archived" ? c.settings.archived : !c.settings.archived;
}

function Row({ c, selected }: { c: s.Conversation; selected: boolean }) {
  const title = s.titleOf(c);
  const peer = s.peerOf(c);
  const typers = (s.typing.value[c.id] ?? []).filter((u) => u !== s.me());
  const last = c.lastMessage;
  const mine = last?.sender.type === "user" && last.sender.id === s.me();
  let line = last ? preview(last, s.nameOf) : "";
  if (last && c.kind === "group" && !mine && last.sender.type === "user" && last.type !== "system") line = `${s.person(last.sender.id)?.displayName ?? "…"}: ${line}`;
  return (
    <li>
      <a href={`#/c/${c.id}`} class={"row" + (selected ? " selected" : "")} aria-current={selected ? "page" : undefined} data-conversation={c.id}>
        <Avatar id={c.id} name={title} online={peer ? s.presence.value[peer]?.online : false} />
        <span class="row-main">
          <span class="row-top">
            <span class="row-title">{title}</span>
            {last && <time dateTime={last.createdAt}>{shortTime(last.createdAt)}</time>}
          </span>
          <span class="row-bottom">
            {typers.length ? (
              <span class="typing">{c.kind === "group" ? t.someoneTyping(s.person(typers[0])?.displayName ?? "…") : t.typing}</span>
            ) : (
              <span class="row-preview">
                {mine && last && <Ticks status={s.statusOf(c, last)} />}
                {line}
              </span>
            )}
            {c.settings.pinned && <span class="pin" role="img" aria-label={t.pinned}><Icon name="pin" size={16} /></span>}
            {c.unreadCount > 0 && (
              <span class={"badge" + (c.settings.mutedUntil ? " muted" : "")} aria-label={t.unread(c.unreadCount)}>
                {c.unreadCount}
              </span>
            )}
          </span>
        </span>
      </a>
    </li>
  );
}

interface Hit {
  message: s.Message;
  conversation: s.Conversation;
}

/** Messages matching the filter box, over all the caller's chats (the server's full-text search). */
function useMessageSearch(q: string): Hit[] {
  const [hits, setHits] = useState<Hit[]>([]);
  useEffect(() => {
    const needle = q.trim();
    if (needle.length < 2) return setHits([]);
    const timer = setTimeout(() => {
      get<{ items: Hit[] }>(`/search/messages?q=${encodeURIComponent(needle)}&limit=20`).then((r) => setHits(r.items)).catch(() => setHits([]));
    }, 250);
    return () => clearTimeout(timer);
  }, [q]);
  return hits;
}

export function ChatList({ onNew }: { onNew: () => void }) {
  const [folder, setFolder] = useState<Folder>("chats");
  const [filter, setFilter] = useState("");
  const hits = useMessageSearch(filter);
  const all = s.sortedConversations.value;
  const requests = all.filter((c) => inFolder(c, "requests")).length;
  const archived = all.filter((c) => inFolder(c, "archived")).length;
  const needle = filter.trim().toLowerCase();
  const shown = all.filter((c) => inFolder(c, folder) && (!needle || s.titleOf(c).toLowerCase().includes(needle)));
  return (
    <nav class="chatlist" aria-label={t.chats}>
      <div class="toolbar">
        {folder === "chats" ? <h2>{t.chats}</h2> : (
          <button class="icon" aria-label={t.back} onClick={() => setFolder("chats")}><Icon name="back" /></button>
        )}
        {folder !== "chats" && <h2>{folder === "requests" ? t.requests : t.archived}</h2>}
        <button class="icon" aria-label={t.newChat} title={t.newChat} onClick={onNew}><Icon name="plus" /></button>
      </div>
      <input class="filter" type="search" aria-label={t.search} placeholder={t.search} value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
      {folder === "chats" && requests > 0 && (
        <button class="folder" onClick={() => setFolder("requests")}>{t.requests} <span class="badge">{requests}</span></button>
      )}
      {folder === "chats" && archived > 0 && (
        <button class="folder" onClick={() => setFolder("archived")}>{t.archived} <span class="count">{archived}</span></button>
      )}
      <ul class="rows" role="list">
        {shown.map((c) => <Row key={c.id} c={c} selected={s.openId.value === c.id} />)}
      </ul>
      {!shown.length && !needle && folder === "chats" && <p class="muted empty">{t.noChats}</p>}
      {hits.length > 0 && (
        <section class="hits" aria-label={t.searchMessages}>
          <h3>{t.searchMessages}</h3>
          <ul class="rows" role="list">
            {hits.map((h) => (
              <li>
                <a class="row" href={`#/c/${h.conversation.id}`}>
                  <span class="row-main">
                    <span class="row-top">
                      <span class="row-title">{s.titleOf(h.conversation)}</span>
                      <time dateTime={h.message.createdAt}>{shortTime(h.message.createdAt)}</time>
                    </span>
                    <span class="row-preview">{preview(h.message)}</span>
                  </span>
                </a>
              </li>
            ))}
          </ul>
        </section>
      )}
    </nav>
  );
}
