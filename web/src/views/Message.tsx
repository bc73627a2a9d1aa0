// A message on screen: sender (in groups), reply preview, content by type, reactions, time,
// ticks; and its actions (reply, react, edit, delete for me or for everyone).

import { useState } from "preact/hooks";
import { request } from "../realtime";
import { discard, type Pending } from "../outbox";
import * as s from "../state";
import { t } from "../strings";
import { bytes, clock, duration, hueOf, preview, systemText } from "../format";
import { Ticks, useBlob } from "./bits";
import { Icon } from "./icons";
import { Forward } from "./Forward";

const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
const EDIT_WINDOW = 15 * 60e3;
const DELETE_WINDOW = 48 * 3600e3;

function MediaView({ m }: { m: s.Message }) {
  const media = m.media!;
  const isImage = m.type === "image" || m.type === "sticker";
  const src = useBlob(isImage ? media.thumbnailUrl ?? media.url : m.type === "voice" || m.type === "audio" ? media.url : undefined);
  const [full, setFull] = useState<string | null>(null);
  if (isImage) {
    return src ? <img class="photo" src={src} alt={media.fileName ?? t.media.image} width={media.width} height={media.height} /> : <div class="photo placeholder" />;
  }
  if (m.type === "voice" || m.type === "audio") {
    return src ? <audio controls src={src} aria-label={t.media[m.type]} /> : <span>{t.media[m.type]}</span>;
  }
  const open = async () => {
    const { blobUrl } = await import("../api");
    const url = full ?? (await blobUrl(media.url));
    setFull(url);
    const a = document.createElement("a");
    a.href = url;
    a.download = media.fileName ?? "download";
    a.click();
  };
  return (
    <button class="file" onClick={open}>
      <Icon name="file" /> <span>{media.fileName ?? t.media[m.type] ?? m.type}</span> <small>{bytes(media.size)}</small>
    </button>
  );
}

function Actions({ c, m, mine, onReply, onEdit, onForward }: { c: s.Conversation; m: s.Message; mine: boolean; onReply: (m: s.Message) => void; onEdit: (m: s.Message) => void; onForward: () => void }) {
  const age = Date.now() - new Date(m.createdAt).getTime();
  const isAdmin = c.members.find((x) => x.userId === s.me())?.role !== "member" && c.kind === "group";
  const run = (event: string, payload: unknown) => request(event, payload).catch((e) => alert(e.message));
  return (
    <div class="actions" role="menu" aria-label={t.messageActions}>
      <div class="reactions-pick">
        {REACTIONS.map((e) => (
          <button role="menuitem" aria-label={t.reactWith(e)} onClick={() => run("message:react", { messageId: m.id, emoji: e })}>{e}</button>
        ))}
      </div>
      <button role="menuitem" onClick={() => onReply(m)}>{t.reply}</button>
      {m.type !== "call" && <button role="menuitem" onClick={onForward}>{t.forward}</button>}
      {mine && m.type === "text" && age < EDIT_WINDOW && <button role="menuitem" onClick={() => onEdit(m)}>{t.edit}</button>}
      <button role="menuitem" onClick={() => run("message:delete", { messageId: m.id, for: "me" }).then(() => hideLocally(m))}>{t.deleteForMe}</button>
      {(mine || isAdmin) && age < DELETE_WINDOW && (
        <button role="menuitem" onClick={() => run("message:delete", { messageId: m.id, for: "everyone" })}>{t.deleteForEveryone}</button>
      )}
    </div>
  );
}

function hideLocally(m: s.Message) {
  const tl = s.timelines.value[m.conversationId];
  if (tl) s.setTimeline(m.conversationId, { ...tl, items: tl.items.filter((x) => x.id !== m.id) });
}

export function Bubble({ c, m, prev, onReply, onEdit }: { c: s.Conversation; m: s.Message; prev?: s.Message; onReply: (m: s.Message) => void; onEdit: (m: s.Message) => void }) {
  const [menu, setMenu] = useState(false);
  const [forwarding, setForwarding] = useState(false);
  if (m.type === "system") {
    return <li class="system">{systemText(m, s.nameOf)}</li>;
  }
  const mine = m.sender.type === "user" && m.sender.id === s.me();
  const showName = c.kind !== "direct" && !mine && (prev?.sender.id !== m.sender.id || prev?.type === "system");
  const name = m.sender.type === "lead" ? s.titleOf(c) : s.person(m.sender.id)?.displayName ?? "…";
  const counts = new Map<string, number>();
  for (const r of m.reactions) counts.set(r.emoji, (counts.get(r.emoji) ?? 0) + 1);
  return (
    <li class={"bubble " + (mine ? "mine" : "theirs")} data-seq={m.seq} data-id={m.id}>
      <div class="bubble-body">
        {showName && <div class="sender" style={{ color: `hsl(${hueOf(m.sender.id ?? "")} 55% 28%)` }}>{name}</div>}
        {m.forwarded && <div class="forwarded">↪ {t.forwarded}</div>}
        {m.replyTo && (
          <div class="quote">
            <strong>{m.replyTo.sender.id === s.me() ? t.you : s.person(m.replyTo.sender.id)?.displayName ?? "…"}</strong>
            <span>{m.replyTo.text ?? t.media[m.replyTo.type] ?? ""}</span>
          </div>
        )}
        {m.deletedAt ? (
          <p class="text deleted">{t.deleted}</p>
        ) : (
          <>
            {m.media && <MediaView m={m} />}
            {m.call && (
              <p class={"text call-log " + m.call.outcome}>
                <Icon name={m.call.media === "video" ? "video" : "phone"} size={16} /> {preview(m)}
                {m.call.outcome === "answered" && <small> · {duration(m.call.durationMs)}</small>}
              </p>
            )}
            {m.text && <p class="text">{m.text}</p>}
            {!m.text && !m.media && !m.call && <p class="text">{preview(m)}</p>}
          </>
        )}
        <div class="meta">
          {m.editedAt && !m.deletedAt && <span>{t.edited}</span>}
          <time dateTime={m.createdAt}>{clock(m.createdAt)}</time>
          {mine && <Ticks status={s.statusOf(c, m)} />}
        </div>
        {counts.size > 0 && (
          <div class="reactions" aria-label={t.reactions}>
            {[...counts].map(([e, n]) => <span>{e}{n > 1 ? ` ${n}` : ""}</span>)}
          </div>
        )}
      </div>
      {!m.deletedAt && (
        <button class="more" aria-label={t.messageActions} aria-expanded={menu} onClick={() => setMenu(!menu)}><Icon name="more" size={18} /></button>
      )}
      {menu && <Actions c={c} m={m} mine={mine} onReply={(x) => (setMenu(false), onReply(x))} onEdit={(x) => (setMenu(false), onEdit(x))} onForward={() => (setMenu(false), setForwarding(true))} />}
      {forwarding && <Forward m={m} onClose={() => setForwarding(false)} />}
    </li>
  );
}

/** A message waiting for the server's ack: greyed with a clock, or marked as not sent. */
export function PendingBubble({ p }: { p: Pending }) {
  return (
    <li class="bubble mine pending" data-client-msg-id={p.clientMsgId}>
      <div class="bubble-body">
        {p.text && <p class="text">{p.text}</p>}
        {!p.text && <p class="text">{t.media[p.type] ?? p.type}</p>}
        <div class="meta">
          <time dateTime={p.createdAt}>{clock(p.createdAt)}</time>
          <Ticks status={p.failed ? "failed" : "pending"} />
        </div>
        {p.failed && (
          <p class="error">
            {p.failed} <button class="link" onClick={() => discard(p.clientMsgId)}>{t.discard}</button>
          </p>
        )}
      </div>
    </li>
  );
}
