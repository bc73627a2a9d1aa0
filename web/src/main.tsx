// The app's entry: which screen to show (signed out, a mail link, the messenger) and the
// messenger's layout — the chat list beside the open chat, one at a time on a phone.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { effect, signal } from "@preact/signals";
import { session, signOut } from "./api";
import { connect, disconnect, whenOnline } from "./realtime";
import { flush } from "./outbox";
import * as s from "./state";
import { t } from "./strings";
import { MailLink, SignIn } from "./views/Auth";
import { ChatList } from "./views/ChatList";
import { Chat } from "./views/Chat";
import { NewChat } from "./views/NewChat";
import { Settings } from "./views/Settings";
import { registerWorker } from "./views/Push";
import { Icon } from "./views/icons";
import { CallScreen } from "./views/Call";

const route = signal(location.hash);
addEventListener("hashchange", () => (route.value = location.hash));

whenOnline(() => void flush());

// One socket while signed in; none, and nothing remembered, when signed out.
let connectedAs: string | null = null;
effect(() => {
  const user = session.value?.user.id ?? null;
  if (user === connectedAs) return;
  if (connectedAs) disconnect();
  connectedAs = user;
  if (user) {
    connect();
    void registerWorker();
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

function Messenger() {
  const [composing, setComposing] = useState(false);
  const [settings, setSettings] = useState(false);
  const match = /^#\/c\/([^/?]+)/.exec(route.value);
  const openId = match?.[1] ?? null;
  const user = session.value!.user;
  useEffect(() => {
    document.title = openId && s.conversations.value[openId] ? `${s.titleOf(s.conversations.value[openId])} — ${t.appName}` : t.appName;
  });
  return (
    <div class={"messenger" + (openId ? " has-chat" : "")}>
      <StatusBar />
      <aside class="side">
        <header class="me">
          <strong>{user.displayName}</strong>
          <span>
            <button class="icon" aria-label={t.settings} title={t.settings} onClick={() => setSettings(true)}><Icon name="gear" /></button>
            <button class="link" onClick={() => void signOut()}>{t.signOut}</button>
          </span>
        </header>
        <ChatList onNew={() => setComposing(true)} />
      </aside>
      <main class="main">
        {openId ? <Chat key={openId} id={openId} /> : <div class="welcome"><img src="/icon.svg" alt="" width={96} height={96} /><p class="muted">{t.tagline}</p></div>}
      </main>
      {composing && <NewChat onClose={() => setComposing(false)} />}
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
