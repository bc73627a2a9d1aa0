// Notifications on this device: the service worker, a Web Push subscription made with the
// server's VAPID key and registered with the API (it belongs to this session), and its removal.

import { useEffect, useState } from "preact/hooks";
import { del, get, post } from "../api";
import { t } from "../strings";

const supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;

/** The service worker: app shell offline, notifications. Registered once signed in. */
export function registerWorker(): Promise<ServiceWorkerRegistration | null> {
  if (!("serviceWorker" in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => null);
}

async function subscription(): Promise<PushSubscription | null> {
  const reg = await navigator.serviceWorker.ready;
  return reg.pushManager.getSubscription();
}

async function subscribe() {
  if ((await Notification.requestPermission()) !== "granted") throw new Error(t.notificationsDenied);
  const { publicKey } = await get<{ publicKey: string }>("/push/vapid-public-key");
  const reg = await navigator.serviceWorker.ready;
  const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: publicKey });
  await post("/push/subscriptions", sub.toJSON());
}

async function unsubscribe() {
  const sub = await subscription();
  if (!sub) return;
  const mine = await get<{ items: { id: string; endpoint: string }[] }>("/push/subscriptions");
  for (const s of mine.items.filter((x) => x.endpoint === sub.endpoint)) await del(`/push/subscriptions/${s.id}`);
  await sub.unsubscribe();
}

export function PushToggle() {
  const [on, setOn] = useState<boolean | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (supported) subscription().then((s) => setOn(!!s)).catch(() => setOn(false));
  }, []);
  if (!supported) return <p class="muted">{t.notificationsUnsupported}</p>;
  const toggle = async () => {
    setError(null);
    try {
      await (on ? unsubscribe() : subscribe());
      setOn(!on);
    } catch (e: any) {
      setError(e?.message ?? t.problem);
    }
  };
  return (
    <div class="stack">
      <label class="switch">
        <input type="checkbox" role="switch" checked={!!on} disabled={on === null} onChange={toggle} />
        {t.notifications}
      </label>
      {error && <p role="alert" class="error">{error}</p>}
    </div>
  );
}
