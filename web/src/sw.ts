// Palaver's service worker: the app shell from the cache when the network is away, and the
// notifications the server pushes while no tab of this device is connected. Built by esbuild
// into dist/sw.js on its own (a worker has no DOM; its types are kept loose here).

import { t } from "./strings";

declare const self: any;
const SHELL = "palaver-shell-v1";
const FILES = ["/", "/app.js", "/app.css", "/icon.svg", "/icon-192.png", "/manifest.webmanifest"];

self.addEventListener("install", (event: any) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event: any) => {
  event.waitUntil(
    caches.keys()
      .then((keys: string[]) => Promise.all(keys.filter((k) => k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// The shell: the network first (so an update shows at once), the cache when it fails.
// Everything else (the API, media, the socket) is never cached here.
self.addEventListener("fetch", (event: any) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin || !FILES.includes(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((res) => {
        if (res.ok) {
          const copy = res.clone();
          caches.open(SHELL).then((c) => c.put(event.request, copy));
        }
        return res;
      })
      .catch(() => caches.match(event.request).then((hit) => hit || caches.match("/"))),
  );
});

// {type: "message", conversationId, messageId, unreadCount, title, body}
// {type: "call", callId, conversationId, from: {id, displayName}, media}
self.addEventListener("push", (event: any) => {
  let n: any = {};
  try {
    n = event.data ? event.data.json() : {};
  } catch {
    n = { title: t.appName, body: event.data ? event.data.text() : "" };
  }
  const conversation = n.conversationId ? `/#/c/${n.conversationId}` : "/";
  const title = n.type === "call" ? (n.from?.displayName ? t.calls.isCalling(n.from.displayName) : t.calls.incoming(n.media)) : n.title || t.appName;
  const options = {
    body: n.type === "call" ? (n.media === "video" ? t.calls.video : t.calls.voice) : n.body || "",
    tag: n.type === "call" ? `call-${n.callId}` : `conversation-${n.conversationId || ""}`,
    renotify: true,
    icon: "/icon-192.png",
    data: { url: conversation },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event: any) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((tabs: any[]) => {
      const tab = tabs.find((c) => new URL(c.url).origin === location.origin);
      if (tab) return tab.navigate(url).then((c: any) => (c || tab).focus());
      return self.clients.openWindow(url);
    }),
  );
});
