// The agent's composer tools: canned responses after a `/` (filled in for the conversation by
// the server), and the template picker for a WhatsApp customer whose 24-hour window is closed.

import { useEffect, useState } from "preact/hooks";
import { get, post, Problem } from "../api";
import { enqueue } from "../outbox";
import type { Conversation } from "../state";
import { t } from "../strings";

interface Canned {
  id: string;
  shortCode: string;
  text: string;
}

/** The canned responses whose short code starts with what follows the `/`. */
export function CannedMenu({ c, text, onPick, keys }: { c: Conversation; text: string; onPick: (text: string) => void; keys: { current: ((e: KeyboardEvent) => boolean) | null } }) {
  const prefix = /^\/(\S*)$/.exec(text)?.[1];
  const [items, setItems] = useState<Canned[]>([]);
  const [at, setAt] = useState(0);
  useEffect(() => {
    if (prefix === undefined) return setItems([]);
    const timer = setTimeout(() => {
      get<Canned[]>(`/canned-responses?q=${encodeURIComponent(prefix)}`).then((r) => (setItems(r.slice(0, 8)), setAt(0))).catch(() => setItems([]));
    }, 120);
    return () => clearTimeout(timer);
  }, [prefix]);
  const pick = async (item: Canned) => {
    const rendered = await post<{ text: string }>(`/canned-responses/${item.id}/render`, { conversationId: c.id }).catch(() => ({ text: item.text }));
    onPick(rendered.text);
    setItems([]);
  };
  // The composer's keys go here first while the menu is open.
  keys.current = items.length
    ? (e: KeyboardEvent) => {
        if (e.key === "ArrowDown") setAt((at + 1) % items.length);
        else if (e.key === "ArrowUp") setAt((at + items.length - 1) % items.length);
        else if (e.key === "Enter" || e.key === "Tab") void pick(items[at]);
        else if (e.key === "Escape") setItems([]);
        else return false;
        e.preventDefault();
        return true;
      }
    : null;
  if (!items.length) return null;
  return (
    <ul class="canned" role="listbox" aria-label={t.inbox.canned}>
      {items.map((item, i) => (
        <li role="option" aria-selected={i === at} onMouseDown={(e) => (e.preventDefault(), void pick(item))}>
          <strong>/{item.shortCode}</strong> <span class="muted">{item.text}</span>
        </li>
      ))}
    </ul>
  );
}

interface Template {
  id: string;
  channelId: string | null;
  name: string;
  language: string;
  status: string;
  parameterCount: number;
  components: { type: string; text?: string }[];
}

/** Whether only a template may be sent now (a WhatsApp customer silent for 24 hours). */
export function windowClosed(c: Conversation): boolean {
  if (c.kind !== "channel") return false;
  return !c.windowExpiresAt || new Date(c.windowExpiresAt) <= new Date();
}

export function TemplatePicker({ c }: { c: Conversation }) {
  const [templates, setTemplates] = useState<Template[]>([]);
  const [chosen, setChosen] = useState<Template | null>(null);
  const [values, setValues] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    get<{ items: Template[] }>("/templates?limit=100")
      .then((r) => setTemplates(r.items.filter((x) => x.status.toLowerCase() === "approved" && (!x.channelId || x.channelId === c.channel?.id))))
      .catch((e) => setError(e instanceof Problem ? e.message : t.problem));
  }, [c.id]);
  const body = chosen?.components.find((x) => x.type.toLowerCase() === "body")?.text ?? "";
  const send = (e: Event) => {
    e.preventDefault();
    if (!chosen) return;
    enqueue({ conversationId: c.id, type: "template", template: { name: chosen.name, language: chosen.language, parameters: values } });
    setChosen(null);
    setValues([]);
  };
  return (
    <form class="templates stack" onSubmit={send}>
      <p class="window-note" role="note">{t.inbox.windowClosed}</p>
      {error && <p role="alert" class="error">{error}</p>}
      <label>
        {t.inbox.template}
        <select value={chosen?.id ?? ""} onChange={(e) => {
          const next = templates.find((x) => x.id === e.currentTarget.value) ?? null;
          setChosen(next);
          setValues(Array(next?.parameterCount ?? 0).fill(""));
        }}>
          <option value="">{t.inbox.chooseTemplate}</option>
          {templates.map((x) => <option value={x.id}>{x.name} ({x.language})</option>)}
        </select>
      </label>
      {chosen && <p class="muted">{body}</p>}
      {values.map((v, i) => (
        <label>
          {`{{${i + 1}}}`}
          <input required value={v} onInput={(e) => setValues(values.map((x, j) => (j === i ? e.currentTarget.value : x)))} />
        </label>
      ))}
      <button class="primary" disabled={!chosen}>{t.inbox.sendTemplate}</button>
    </form>
  );
}
