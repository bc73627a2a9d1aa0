// About a chat: the caller's own settings (mute, pin, archive), the person (block) or the group
// (name, description, members and their roles, adding, removing, leaving).

import { useEffect, useRef, useState } from "preact/hooks";
import { call, del, get, patch, post, type User } from "../api";
import { useGuard } from "../guard";

type Guard = ReturnType<typeof useGuard>["guard"];
import * as s from "../state";
import { t } from "../strings";
import { when } from "../format";
import { Avatar } from "./bits";
import { Icon } from "./icons";

const MUTES: [string, number | null][] = [
  [t.mute8h, 8 * 3600e3],
  [t.muteWeek, 7 * 86400e3],
  [t.muteAlways, null],
];

async function settings(c: s.Conversation, change: Record<string, unknown>) {
  s.upsertConversation(await patch<s.Conversation>(`/conversations/${c.id}/settings`, change));
}

function Mine({ c, guard }: { c: s.Conversation; guard: Guard }) {
  const muted = c.settings.mutedUntil && new Date(c.settings.mutedUntil) > new Date();
  return (
    <section aria-label={t.chatSettings} class="stack">
      {muted ? (
        <button onClick={guard(() => settings(c, { mutedUntil: null }))}>{t.unmute}</button>
      ) : (
        <fieldset class="mutes">
          <legend>{t.mute}</legend>
          {MUTES.map(([label, ms]) => (
            // "Always" is a date far ahead: the API mutes until a time.
            <button onClick={guard(() => settings(c, { mutedUntil: new Date(Date.now() + (ms ?? 100 * 365 * 86400e3)).toISOString() }))}>{label}</button>
          ))}
        </fieldset>
      )}
      <button onClick={guard(() => settings(c, { pinned: !c.settings.pinned }))}>{c.settings.pinned ? t.unpin : t.pin}</button>
      <button onClick={guard(() => settings(c, { archived: !c.settings.archived }))}>{c.settings.archived ? t.unarchive : t.archive}</button>
    </section>
  );
}

function Person({ c, guard }: { c: s.Conversation; guard: Guard }) {
  const peer = s.peerOf(c)!;
  const p = s.person(peer);
  const [blocked, setBlocked] = useState<boolean | null>(null);
  useEffect(() => {
    get<{ items: User[] }>("/blocks?limit=100").then((r) => setBlocked(r.items.some((u) => u.id === peer))).catch(() => undefined);
  }, [peer]);
  const toggle = async () => {
    await call(blocked ? "DELETE" : "PUT", `/blocks/${peer}`);
    setBlocked(!blocked);
  };
  const seen = s.presence.value[peer];
  return (
    <section class="stack">
      <p>{p?.about}</p>
      {seen?.online ? <p class="muted">{t.online}</p> : seen?.lastSeenAt && <p class="muted">{t.lastSeen(when(seen.lastSeenAt))}</p>}
      {blocked !== null && <button class={blocked ? "" : "danger"} onClick={guard(toggle)}>{blocked ? t.unblock(p?.displayName ?? "") : t.block(p?.displayName ?? "")}</button>}
    </section>
  );
}

function Group({ c, guard }: { c: s.Conversation; guard: Guard }) {
  const mine = c.members.find((m) => m.userId === s.me());
  const admin = mine && mine.role !== "member";
  const [title, setTitle] = useState(c.title ?? "");
  const [description, setDescription] = useState(c.description ?? "");
  const [adding, setAdding] = useState("");
  const [found, setFound] = useState<User[]>([]);
  useEffect(() => {
    if (!adding.trim()) return setFound([]);
    const timer = setTimeout(() => {
      get<{ items: User[] }>(`/users/search?q=${encodeURIComponent(adding.trim())}`)
        .then((r) => setFound(r.items.filter((u) => !c.members.some((m) => m.userId === u.id))))
        .catch(() => setFound([]));
    }, 200);
    return () => clearTimeout(timer);
  }, [adding]);
  const reload = async () => s.upsertConversation(await get<s.Conversation>(`/conversations/${c.id}`));
  return (
    <section class="stack">
      {admin ? (
        <form class="stack" onSubmit={(e) => (e.preventDefault(), guard(async () => s.upsertConversation(await patch(`/conversations/${c.id}`, { title, description })))())}>
          <label>{t.groupTitle}<input value={title} required onInput={(e) => setTitle(e.currentTarget.value)} /></label>
          <label>{t.description}<textarea rows={2} value={description} onInput={(e) => setDescription(e.currentTarget.value)} /></label>
          <button>{t.save}</button>
        </form>
      ) : (
        c.description && <p>{c.description}</p>
      )}
      <h3>{t.members(c.memberCount)}</h3>
      <ul class="rows" role="list">
        {c.members.map((m) => {
          const name = m.userId === s.me() ? t.you : s.person(m.userId)?.displayName ?? "…";
          return (
            <li class="row">
              <Avatar id={m.userId} name={name} size={32} online={s.presence.value[m.userId]?.online} />
              <span class="row-main">
                <span class="row-title">{name}</span>
                {m.role !== "member" && <span class="muted">{t.roles[m.role] ?? m.role}</span>}
              </span>
              {admin && m.userId !== s.me() && m.role !== "owner" && (
                <>
                  <button onClick={guard(async () => (await patch(`/conversations/${c.id}/members/${m.userId}`, { role: m.role === "admin" ? "member" : "admin" }), reload()))}>
                    {m.role === "admin" ? t.dismissAdmin : t.makeAdmin}
                  </button>
                  <button class="danger" aria-label={t.removeFrom(name)} onClick={guard(async () => (await del(`/conversations/${c.id}/members/${m.userId}`), reload()))}>
                    <Icon name="close" size={16} />
                  </button>
                </>
              )}
            </li>
          );
        })}
      </ul>
      {admin && (
        <>
          <input type="search" aria-label={t.addMembers} placeholder={t.addMembers} value={adding} onInput={(e) => setAdding(e.currentTarget.value)} />
          <ul class="rows" role="list">
            {found.map((u) => (
              <li class="row">
                <Avatar id={u.id} name={u.displayName} size={32} />
                <span class="row-main"><span class="row-title">{u.displayName}</span></span>
                <button onClick={guard(async () => (s.upsertConversation(await post(`/conversations/${c.id}/members`, { userIds: [u.id] })), setAdding("")))}>{t.add}</button>
              </li>
            ))}
          </ul>
        </>
      )}
      {mine && (
        <button class="danger" onClick={guard(async () => {
          await del(`/conversations/${c.id}/members/${s.me()}`);
          location.hash = "#/";
        })}>{t.leaveGroup}</button>
      )}
    </section>
  );
}

export function ChatInfo({ c, onClose }: { c: s.Conversation; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const { error, guard } = useGuard();
  useEffect(() => dialog.current?.showModal(), []);
  const title = s.titleOf(c);
  return (
    <dialog ref={dialog} class="sheet" aria-label={t.aboutChat(title)} onClose={onClose}>
      <div class="toolbar">
        <Avatar id={c.id} name={title} size={48} />
        <h2>{title}</h2>
        <button class="icon" aria-label={t.close} onClick={onClose}><Icon name="close" /></button>
      </div>
      <div class="sheet-body stack">
        {error && <p role="alert" class="error">{error}</p>}
        {c.kind === "direct" && <Person c={c} guard={guard} />}
        {c.kind === "group" && <Group c={c} guard={guard} />}
        <Mine c={c} guard={guard} />
      </div>
    </dialog>
  );
}
