// The app's entry: which screen to show (signed out, a mail link, the messenger, the inbox,
// the admin) and the messenger's layout — the chat list beside the open chat, one at a time on
// a phone.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { effect, signal } from "@preact/signals";
import { session, signOut } from "./api";
import { connect, disconnect, whenOnline } from "./realtime";
import { clear, flush } from "./outbox";
import * as s from "./state";
import { t } from "./strings";
import { choose, current, isAdmin, isStaff, loadWorkspaces, workspaceId, workspaces } from "./workspace";
import { MailLink, SignIn } from "./views/Auth";
import { ChatList } from "./views/ChatList";
import { Chat } from "./views/Chat";
import { NewChat } from "./views/NewChat";
import { Settings } from "./views/Settings";
import { registerWorker } from "./views/Push";
import { Icon } from "./views/icons";
import { CallScreen } from "./views/Call";
import { Inbox } from "./inbox/Inbox";
import { Admin } from "./admin/Admin";

const route = signal(location.hash);
addEventListener("hashchange", () => (route.value = location.hash));

whenOnline(() => void flush());

// One socket while signed in, acting in the chosen workspace; none, and nothing remembered,
// when signed out.
let connectedAs: string | null = null;
effect(() => {
  const key = session.value ? `${session.value.user.id}/${workspaceId.value}` : null;
  if (key === connectedAs) return;
  const first = !connectedAs?.startsWith(session.value?.user.id ?? "-");
  if (connectedAs) disconnect();
  connectedAs = key;
  if (!key) return clear();
  if (first) {
    // Which workspaces, and the role in each, before the first connection.
    loadWorkspaces().catch(() => undefined).finally(() => {
      if (connectedAs === key) connect();
      void registerWorker();
    });
  } else {
    connect();
  }
});

function StatusBar() {
  const state = s.connection.value;
  if (state === "online") return null;
  return (
    <div class={"statusbar " + state} role="status">
      {state === "connecting" ? t.connecting : t.offline}
    </div>
  );
}

function TopBar({ onSettings }: { onSettings: () => void }) {
  const user = session.value!.user;
  const at = route.value.startsWith("#/inbox") ? "inbox" : route.value.startsWith("#/admin") ? "admin" : "chats";
  return (
    <header class="me">
      <strong>{user.displayName}</strong>
      <span class="top-actions">
        {workspaces.value.length > 1 && (
          <select aria-label={t.workspace} value={workspaceId.value ?? ""} onChange={(e) => choose(e.currentTarget.value)}>
            {workspaces.value.map((w) => <option value={w.id}>{w.name}</option>)}
          </select>
        )}
        {isStaff.value && (
          <nav class="sections" aria-label={t.sections}>
            <a class="switch-link" href="#/" aria-current={at === "chats" ? "page" : undefined}>{t.inbox.chats}</a>
            <a class="switch-link" href="#/inbox/mine" aria-current={at === "inbox" ? "page" : undefined}>{t.inbox.open}</a>
            {isAdmin.value && <a class="switch-link" href="#/admin/members" aria-current={at === "admin" ? "page" : undefined}>{t.admin.open}</a>}
          </nav>
        )}
        <button class="icon" aria-label={t.settings} title={t.settings} onClick={onSettings}><Icon name="gear" /></button>
        <button class="link" onClick={() => void signOut()}>{t.signOut}</button>
      </span>
    </header>
  );
}

function Messenger() {
  const [composing, setComposing] = useState(false);
  const [settings, setSettings] = useState(false);
  const inbox = /^#\/inbox(?:\/([^/?]+))?(?:\/([^/?]+))?/.exec(route.value);
  const match = /^#\/c\/([^/?]+)/.exec(route.value);
  const openId = inbox ? inbox[2] ?? null : match?.[1] ?? null;
  useEffect(() => {
    const c = openId ? s.conversations.value[openId] : null;
    document.title = c ? `${s.titleOf(c)} — ${t.appName}` : inbox ? `${t.inbox.title} — ${t.appName}` : t.appName;
  });
  const admin = /^#\/admin(?:\/([^/?]+))?/.exec(route.value);
  const body = admin && isAdmin.value ? (
    <Admin section={admin[1] ?? "members"} />
  ) : inbox && isStaff.value ? (
    <Inbox view={inbox[1] ?? "mine"} openId={openId} />
  ) : (
    <div class={"messenger" + (openId ? " has-chat" : "")}>
      <aside class="side">
        <ChatList onNew={() => setComposing(true)} />
      </aside>
      <main class="main">
        {openId ? <Chat key={openId} id={openId} /> : <div class="welcome"><img src="/icon.svg" alt="" width={96} height={96} /><p class="muted">{t.tagline}</p></div>}
      </main>
    </div>
  );
  return (
    <div class="shell">
      <StatusBar />
      <TopBar onSettings={() => setSettings(true)} />
      {body}
      {composing && <NewChat onClose={() => setComposing(false)} support={current.value} />}
      {settings && <Settings onClose={() => setSettings(false)} />}
      <CallScreen />
    </div>
  );
}

function App() {
  if (location.pathname === "/reset-password") return <MailLink kind="reset" />;
  if (location.pathname === "/verify-email") return <MailLink kind="verify" />;
  return session.value ? <Messenger /> : <SignIn />;
}

render(<App />, document.getElementById("app")!);
