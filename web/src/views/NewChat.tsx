// Starting a chat: find people by name, phone or email (contacts first); a person opens a direct
// chat, "New group" picks several and a name; "Write to …" opens the workspace's support desk.

import { useEffect, useRef, useState } from "preact/hooks";
import { get, post, Problem, type User } from "../api";
import * as s from "../state";
import { t } from "../strings";
import { Avatar } from "./bits";
import { Icon } from "./icons";
import type { Workspace } from "../workspace";

export function NewChat({ onClose, support }: { onClose: () => void; support: Workspace | null }) {
  const [q, setQ] = useState("");
  const [found, setFound] = useState<User[]>([]);
  const [picked, setPicked] = useState<User[]>([]);
  const [title, setTitle] = useState("");
  const [group, setGroup] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const dialog = useRef<HTMLDialogElement>(null);

  useEffect(() => {
    dialog.current?.showModal();
    get<{ items: User[] }>("/contacts").then((r) => q || setFound(r.items)).catch(() => undefined);
  }, []);

  useEffect(() => {
    const needle = q.trim();
    if (!needle) return;
    const timer = setTimeout(() => {
      get<{ items: User[] }>(`/users/search?q=${encodeURIComponent(needle)}`)
        .then((r) => {
          s.remember(r.items);
          setFound(r.items.filter((u) => u.id !== s.me()));
        })
        .catch(() => setFound([]));
    }, 200);
    return () => clearTimeout(timer);
  }, [q]);

  const open = (id: string) => {
    onClose();
    location.hash = `#/c/${id}`;
  };

  const guard = async (fn: () => Promise<s.Conversation>) => {
    setError(null);
    try {
      const c = await fn();
      s.upsertConversation(c);
      open(c.id);
    } catch (e) {
      setError(e instanceof Problem ? e.message : t.problem);
    }
  };
  const direct = (u: User) => guard(() => post("/conversations/direct", { userId: u.id }));
  const create = () => guard(() => post("/conversations/groups", { title: title.trim(), memberIds: picked.map((u) => u.id) }));

  const desk = support?.settings?.support?.enabled ? support : null;
  const writeToDesk = () => guard(() => post("/support", { workspaceId: desk!.id }));

  const toggle = (u: User) => setPicked(picked.some((p) => p.id === u.id) ? picked.filter((p) => p.id !== u.id) : picked.concat(u));

  return (
    <dialog ref={dialog} class="sheet" aria-label={t.newChat} onClose={onClose}>
      <div class="toolbar">
        <h2>{group ? t.newGroup : t.newChat}</h2>
        <button class="icon" aria-label={t.close} onClick={onClose}><Icon name="close" /></button>
      </div>
      {!group && <button class="folder" onClick={() => setGroup(true)}>{t.newGroup}</button>}
      {!group && desk && <button class="folder" onClick={writeToDesk}>{t.inbox.writeToSupport(desk.name)}</button>}
      <input type="search" autofocus aria-label={t.findPeople} placeholder={t.findPeople} value={q} onInput={(e) => setQ(e.currentTarget.value)} />
      {picked.length > 0 && (
        <p class="chips">
          {picked.map((u) => (
            <button class="chip" onClick={() => toggle(u)} aria-label={t.removeFrom(u.displayName)}>{u.displayName} ✕</button>
          ))}
        </p>
      )}
      <ul class="rows" role="list">
        {found.map((u) => {
          const who = (
            <>
              <Avatar id={u.id} name={u.displayName} size={36} />
              <span class="row-main">
                <span class="row-title">{u.displayName}</span>
                <span class="muted">{u.about || u.phone || ""}</span>
              </span>
            </>
          );
          return (
            <li>
              {group ? (
                <label class="row">
                  <input type="checkbox" checked={picked.some((p) => p.id === u.id)} onChange={() => toggle(u)} />
                  {who}
                </label>
              ) : (
                <button class="row plain" onClick={() => direct(u)}>{who}</button>
              )}
            </li>
          );
        })}
      </ul>
      {q && !found.length && <p class="muted">{t.noneFound}</p>}
      {group && (
        <label>
          {t.groupTitle}
          <input value={title} required onInput={(e) => setTitle(e.currentTarget.value)} />
        </label>
      )}
      {error && <p role="alert" class="error">{error}</p>}
      {group && (
        <button class="primary" disabled={!picked.length || !title.trim()} onClick={create}>
          {t.createGroup}
        </button>
      )}
    </dialog>
  );
}
