// Small pieces several screens use: avatars, ticks, protected media.

import { useEffect, useState } from "preact/hooks";
import { blobUrl } from "../api";
import { hueOf, initials } from "../format";
import type { Message } from "../state";
import { t } from "../strings";

export function Avatar({ id, name, online, size = 44 }: { id: string; name: string; online?: boolean; size?: number }) {
  return (
    <span class="avatar" style={{ width: `${size}px`, height: `${size}px`, background: `hsl(${hueOf(id)} 45% 32%)` }} aria-hidden="true">
      {initials(name)}
      {online && <span class="dot" />}
    </span>
  );
}

/** ✓ sent, ✓✓ delivered, blue ✓✓ read; a clock while sending, ! when not sent. */
export function Ticks({ status }: { status: Message["status"] }) {
  const glyph = { pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" }[status];
  return (
    <span class={`ticks ${status}`} role="img" aria-label={t.status[status]} title={t.status[status]} data-status={status}>
      {glyph}
    </span>
  );
}

/** A protected download shown through a blob URL (media need the bearer token). */
export function useBlob(path: string | undefined): string | null {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    if (!path) return;
    let made: string | null = null;
    let live = true;
    blobUrl(path)
      .then((u) => (live ? setUrl((made = u)) : URL.revokeObjectURL(u)))
      .catch(() => undefined);
    return () => {
      live = false;
      if (made) URL.revokeObjectURL(made);
    };
  }, [path]);
  return url;
}
