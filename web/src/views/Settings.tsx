// The caller's own account: profile, last-seen privacy, notifications on this device, the
// signed-in devices (sign one out, or all), a new email, the people they blocked, and erasing
// the account.

import { useEffect, useRef, useState } from "preact/hooks";
import { del, get, patch, post, session, saveSession, signOut, type User } from "../api";
import { useGuard } from "../guard";
import { t } from "../strings";
import { when } from "../format";
import { Icon } from "./icons";
import { PushToggle } from "./Push";

interface Me extends User {
  about: string;
  privacy: { lastSeen: "everyone" | "contacts" | "nobody"; pushPreviews: boolean };
}

interface SessionRow {
  id: string;
  deviceName: string | null;
  deviceId: string;
  createdAt: string;
  lastUsedAt: string;
  current: boolean;
}

/** A new address (with the password, when the account has one); verified by a mailed link. */
function EmailChange() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const { error, status, guard } = useGuard();
  const save = guard(async () => {
    await patch("/users/me", { email, currentPassword: password || undefined });
    setEmail("");
    setPassword("");
  }, t.emailChanged);
  return (
    <form class="stack" onSubmit={save} aria-label={t.changeEmail}>
      <h3>{t.changeEmail}</h3>
      {error && <p role="alert" class="error">{error}</p>}
      {status && <p role="status">{status}</p>}
      <label>{t.newEmail}<input type="email" required autocomplete="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} /></label>
      <label>{t.currentPassword}<input type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} /></label>
      <button>{t.changeEmail}</button>
    </form>
  );
}

/** Erasing the account (GDPR), after typing DELETE. */
function Erase() {
  const [word, setWord] = useState("");
  const { error, guard } = useGuard();
  const erase = guard(async () => {
    await del("/users/me");
    await signOut();
  });
  return (
    <form class="stack" onSubmit={erase} aria-label={t.eraseAccount}>
      <h3>{t.eraseAccount}</h3>
      {error && <p role="alert" class="error">{error}</p>}
      <label>{t.eraseConfirm}<input value={word} onInput={(e) => setWord(e.currentTarget.value)} /></label>
      <button class="danger" disabled={word !== "DELETE"}>{t.erase}</button>
    </form>
  );
}

export function Settings({ onClose }: { onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [me, setMe] = useState<Me | null>(null);
  const [sessions, setSessions] = useState<SessionRow[]>([]);
  const [blocked, setBlocked] = useState<User[]>([]);
  const { error, status, guard } = useGuard();

  const load = () => {
    get<Me>("/users/me").then(setMe).catch(() => undefined);
    get<{ items: SessionRow[] }>("/sessions").then((r) => setSessions(r.items)).catch(() => undefined);
    get<{ items: User[] }>("/blocks?limit=100").then((r) => setBlocked(r.items)).catch(() => undefined);
  };
  useEffect(() => {
    dialog.current?.showModal();
    load();
  }, []);

  const save = guard(async () => {
    const updated = await patch<Me>("/users/me", { displayName: me!.displayName, about: me!.about, privacy: { lastSeen: me!.privacy.lastSeen } });
    setMe(updated);
    const s = session.value!;
    saveSession({ ...s, user: { ...s.user, displayName: updated.displayName } });
  }, t.saved);

  return (
    <dialog ref={dialog} class="sheet" aria-label={t.settings} onClose={onClose}>
      <div class="toolbar">
        <h2>{t.settings}</h2>
        <button class="icon" aria-label={t.close} onClick={onClose}><Icon name="close" /></button>
      </div>
      <div class="sheet-body stack">
        {error && <p role="alert" class="error">{error}</p>}
        {status && <p role="status">{status}</p>}
        {me && (
          <form class="stack" onSubmit={(e) => (e.preventDefault(), save())}>
            <label>{t.displayName}<input value={me.displayName} required maxLength={64} onInput={(e) => setMe({ ...me, displayName: e.currentTarget.value })} /></label>
            <label>{t.about}<input value={me.about} maxLength={140} onInput={(e) => setMe({ ...me, about: e.currentTarget.value })} /></label>
            <label>
              {t.whoSeesLastSeen}
              <select value={me.privacy.lastSeen} onChange={(e) => setMe({ ...me, privacy: { ...me.privacy, lastSeen: e.currentTarget.value as Me["privacy"]["lastSeen"] } })}>
                <option value="everyone">{t.lastSeenEveryone}</option>
                <option value="contacts">{t.lastSeenContacts}</option>
                <option value="nobody">{t.lastSeenNobody}</option>
              </select>
            </label>
            <p class="muted">{me.email ?? me.phone}</p>
            <button class="primary">{t.save}</button>
          </form>
        )}
        <PushToggle />
        <h3>{t.devices}</h3>
        <ul class="rows" role="list">
          {sessions.map((x) => (
            <li class="row">
              <span class="row-main">
                <span class="row-title">{x.deviceName ?? x.deviceId}{x.current ? ` — ${t.thisDevice}` : ""}</span>
                <span class="muted">{t.lastActive(when(x.lastUsedAt))}</span>
              </span>
              {!x.current && <button onClick={guard(async () => (await del(`/sessions/${x.id}`), load()))}>{t.signOutDevice}</button>}
            </li>
          ))}
        </ul>
        <button onClick={guard(async () => (await post("/auth/logout-all"), await signOut()))}>{t.signOutEverywhere}</button>
        <EmailChange />
        <h3>{t.blocked}</h3>
        {!blocked.length && <p class="muted">{t.noneBlocked}</p>}
        <ul class="rows" role="list">
          {blocked.map((u) => (
            <li class="row">
              <span class="row-main"><span class="row-title">{u.displayName}</span></span>
              <button onClick={guard(async () => (await del(`/blocks/${u.id}`), load()))}>{t.unblock(u.displayName)}</button>
            </li>
          ))}
        </ul>
        <Erase />
      </div>
    </dialog>
  );
}
