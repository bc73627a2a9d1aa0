// Palaver's service worker: the app shell from the cache when the network is away, and the
// notifications the server pushes while no tab of this device is connected.
const SHELL = "palaver-shell-v1";
const FILES = ["/", "/app.js", "/app.css", "/icon.svg", "/icon-192.png", "/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// The shell: the network first (so an update shows at once), the cache when it fails.
// Everything else (the API, media, the socket) is never cached here.
self.addEventListener("fetch", (event) => {
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
self.addEventListener("push", (event) => {
  let n = {};
  try {
    n = event.data ? event.data.json() : {};
  } catch {
    n = { title: "Palaver", body: event.data ? event.data.text() : "" };
  }
  const conversation = n.conversationId ? `/#/c/${n.conversationId}` : "/";
  const title = n.type === "call" ? (n.from && n.from.displayName ? `${n.from.displayName} is calling` : "Incoming call") : n.title || "Palaver";
  const options = {
    body: n.type === "call" ? (n.media === "video" ? "Video call" : "Voice call") : n.body || "",
    tag: n.type === "call" ? `call-${n.callId}` : `conversation-${n.conversationId || ""}`,
    renotify: true,
    icon: "/icon-192.png",
    data: { url: conversation },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((tabs) => {
      const tab = tabs.find((c) => new URL(c.url).origin === location.origin);
      if (tab) return tab.navigate(url).then((c) => (c || tab).focus());
      return self.clients.openWindow(url);
    }),
  );
});
