// Beside an inbox conversation: who has it and its state (assign, open / pending / closed,
// snooze), the customer as a lead (stage, tags, attributes, opt-in, other conversations), the
// internal notes with @mentions (never sent to the customer), and the AI's insights with a
// reply to use.

import { useEffect, useState } from "preact/hooks";
import { get, patch, post } from "../api";
import { useGuard } from "../guard";
import { listen } from "../realtime";
import * as s from "../state";
import { t } from "../strings";
import { when } from "../format";
import { suggest } from "./draft";

interface Agent {
  userId: string;
  displayName?: string;
  availability: string;
  online: boolean;
}

interface Lead {
  id: string;
  name: string | null;
  waId: string | null;
  phone: string | null;
  email: string | null;
  stage: string;
  tags: string[];
  optIn: { status: string; at: string | null; source: string | null };
  attributes: Record<string, unknown>;
}

interface Note {
  id: string;
  author: { id: string; name: string } | null;
  kind: "note" | "activity";
  text: string;
  mentions: string[];
  createdAt: string;
}

interface Insight {
  id: string;
  summary: string;
  openQuestions: string[];
  recommendations: string[];
  suggestedReply: string | null;
  sentiment: string;
  offline: boolean;
  createdAt: string;
}

function State({ c, agents }: { c: s.Conversation; agents: Agent[] }) {
  const { error, guard } = useGuard();
  const change = (body: Record<string, unknown>) => guard(async () => s.upsertConversation(await patch(`/conversations/${c.id}`, body)));
  const [snooze, setSnooze] = useState("");
  return (
    <section class="stack" aria-label={t.inbox.state}>
      {error && <p role="alert" class="error">{error}</p>}
      <label>
        {t.inbox.assignee}
        <select value={c.assigneeId ?? ""} onChange={(e) => change({ assigneeId: e.currentTarget.value || null })()}>
          <option value="">{t.inbox.unassigned}</option>
          {agents.map((a) => (
            <option value={a.userId}>{(a.userId === s.me() ? t.you : s.nameOf(a.userId)) + (a.online ? " ●" : "")}</option>
          ))}
        </select>
      </label>
      <div class="segmented" role="group" aria-label={t.inbox.status}>
        {["open", "pending", "closed"].map((x) => (
          <button aria-pressed={c.status === x} onClick={change({ status: x })}>{t.inbox.statuses[x]}</button>
        ))}
      </div>
      <form class="row-form" onSubmit={(e) => (e.preventDefault(), change({ snoozedUntil: new Date(snooze).toISOString() })())}>
        <label>
          {t.inbox.snoozeUntil}
          <input type="datetime-local" required value={snooze} onInput={(e) => setSnooze(e.currentTarget.value)} />
        </label>
        <button>{t.inbox.snooze}</button>
      </form>
      {c.snoozedUntil && <p class="muted">{t.inbox.snoozed(when(c.snoozedUntil))}</p>}
    </section>
  );
}

/** The lead's other conversations (a customer may write on WhatsApp and at the desk). */
function Others({ leadId, id, view }: { leadId: string; id: string; view: string }) {
  const [items, setItems] = useState<s.Conversation[]>([]);
  useEffect(() => {
    get<{ items: s.Conversation[] }>(`/conversations?kind=inbox&lead=${encodeURIComponent(leadId)}&limit=20`)
      .then((r) => setItems(r.items.filter((c) => c.id !== id)))
      .catch(() => undefined);
  }, [leadId, id]);
  if (!items.length) return null;
  return (
    <div>
      <span class="label">{t.inbox.otherConversations}</span>
      <ul class="plain-list">
        {items.map((c) => (
          <li>
            <a href={`#/inbox/${view}/${c.id}`}>{c.kind === "support" ? t.inbox.supportDesk : t.inbox.whatsapp} · {t.inbox.statuses[c.status ?? "open"]}</a>
          </li>
        ))}
      </ul>
    </div>
  );
}

function LeadCard({ leadId }: { leadId: string }) {
  const [lead, setLead] = useState<Lead | null>(null);
  const [stages, setStages] = useState<string[]>([]);
  const [tag, setTag] = useState("");
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const { error, guard } = useGuard();
  useEffect(() => {
    get<Lead>(`/leads/${leadId}`).then(setLead).catch(() => undefined);
    get<{ stages: string[] }>("/leads/stages").then((r) => setStages(r.stages)).catch(() => undefined);
  }, [leadId]);
  if (!lead) return null;
  const update = (body: Record<string, unknown>) => guard(async () => setLead(await patch<Lead>(`/leads/${lead.id}`, body)));
  return (
    <section class="stack lead" aria-label={t.inbox.lead}>
      <h3>{t.inbox.lead}</h3>
      {error && <p role="alert" class="error">{error}</p>}
      <p>
        <strong>{lead.name ?? "—"}</strong>
        <br />
        <span class="muted">{[lead.phone ?? (lead.waId ? "+" + lead.waId : null), lead.email].filter(Boolean).join(" · ")}</span>
      </p>
      <label>
        {t.inbox.stage}
        <select value={lead.stage} onChange={(e) => update({ stage: e.currentTarget.value })()}>
          {stages.map((x) => <option value={x}>{x}</option>)}
        </select>
      </label>
      <div>
        <span class="label">{t.inbox.tags}</span>
        <p class="chips">
          {lead.tags.map((x) => (
            <button class="chip" aria-label={t.inbox.removeTag(x)} onClick={update({ tags: lead.tags.filter((y) => y !== x) })}>{x} ✕</button>
          ))}
        </p>
        <form class="row-form" onSubmit={(e) => (e.preventDefault(), tag.trim() && update({ tags: [...new Set(lead.tags.concat(tag.trim()))] })(), setTag(""))}>
          <input aria-label={t.inbox.addTag} placeholder={t.inbox.addTag} value={tag} onInput={(e) => setTag(e.currentTarget.value)} />
          <button>{t.add}</button>
        </form>
      </div>
      <p class="muted">{t.inbox.optIn(lead.optIn.status)}</p>
      <div>
        <span class="label">{t.inbox.attributes}</span>
        <dl class="attributes">
          {Object.entries(lead.attributes ?? {}).map(([k, v]) => (
            <>
              <dt>{k}</dt>
              <dd>{typeof v === "string" ? v : JSON.stringify(v)}</dd>
            </>
          ))}
        </dl>
        <form class="row-form" onSubmit={(e) => (e.preventDefault(), key.trim() && update({ attributes: { ...lead.attributes, [key.trim()]: value } })(), setKey(""), setValue(""))}>
          <input aria-label={t.inbox.attributeName} placeholder={t.inbox.attributeName} value={key} onInput={(e) => setKey(e.currentTarget.value)} />
          <input aria-label={t.inbox.attributeValue} placeholder={t.inbox.attributeValue} value={value} onInput={(e) => setValue(e.currentTarget.value)} />
          <button>{t.save}</button>
        </form>
      </div>
    </section>
  );
}

function Notes({ id, agents }: { id: string; agents: Agent[] }) {
  const [notes, setNotes] = useState<Note[]>([]);
  const [text, setText] = useState("");
  const { error, guard } = useGuard();
  useEffect(() => {
    get<{ items: Note[] }>(`/conversations/${id}/notes?limit=100`).then((r) => setNotes(r.items)).catch(() => undefined);
  }, [id]);
  useEffect(
    () =>
      listen("note:new", (note: Note & { conversationId: string }) => {
        if (note.conversationId === id) setNotes((all) => (all.some((n) => n.id === note.id) ? all : all.concat(note)));
      }),
    [id],
  );
  // "@Name" in the text mentions that agent (the API takes their ids).
  const mentions = agents.filter((a) => text.includes("@" + s.nameOf(a.userId))).map((a) => a.userId);
  const partial = /@(\w*)$/.exec(text)?.[1];
  const offers = partial !== undefined ? agents.filter((a) => s.nameOf(a.userId).toLowerCase().startsWith(partial.toLowerCase())) : [];
  const add = guard(async () => {
    const note = await post<Note>(`/conversations/${id}/notes`, { text: text.trim(), mentions });
    setNotes((all) => (all.some((n) => n.id === note.id) ? all : all.concat(note)));
    setText("");
  });
  return (
    <section class="stack notes" aria-label={t.inbox.notes}>
      <h3>{t.inbox.notes}</h3>
      <ol class="note-list">
        {notes.map((n) => (
          <li class={"note " + n.kind}>
            {n.kind === "note" && <strong>{n.author?.name ?? "—"}</strong>} {n.text}
            <time class="muted" dateTime={n.createdAt}> {when(n.createdAt)}</time>
          </li>
        ))}
      </ol>
      {error && <p role="alert" class="error">{error}</p>}
      <form class="stack" onSubmit={(e) => (e.preventDefault(), text.trim() && add())}>
        <textarea rows={2} aria-label={t.inbox.writeNote} placeholder={t.inbox.writeNote} value={text} onInput={(e) => setText(e.currentTarget.value)} />
        {offers.length > 0 && (
          <p class="chips" role="listbox" aria-label={t.inbox.mention}>
            {offers.map((a) => (
              <button type="button" role="option" class="chip" onClick={() => setText(text.replace(/@\w*$/, "@" + s.nameOf(a.userId) + " "))}>@{s.nameOf(a.userId)}</button>
            ))}
          </p>
        )}
        <button>{t.inbox.addNote}</button>
      </form>
    </section>
  );
}

function Insights({ id }: { id: string }) {
  const [items, setItems] = useState<Insight[]>([]);
  const [asked, setAsked] = useState(false);
  const { error, guard } = useGuard();
  useEffect(() => {
    get<{ items: Insight[] }>(`/conversations/${id}/insights?limit=5`).then((r) => setItems(r.items)).catch(() => undefined);
    return listen("insight:new", (e: { conversationId: string; insight: Insight }) => {
      if (e.conversationId === id) {
        setItems((all) => [e.insight].concat(all.filter((x) => x.id !== e.insight.id)));
        setAsked(false);
      }
    });
  }, [id]);
  const latest = items[0];
  return (
    <section class="stack insights" aria-label={t.inbox.insights}>
      <h3>{t.inbox.insights}</h3>
      {error && <p role="alert" class="error">{error}</p>}
      {latest ? (
        <div class="insight">
          <p>{latest.summary}</p>
          {latest.openQuestions.length > 0 && (
            <>
              <span class="label">{t.inbox.openQuestions}</span>
              <ul>{latest.openQuestions.map((q) => <li>{q}</li>)}</ul>
            </>
          )}
          {latest.recommendations.length > 0 && (
            <>
              <span class="label">{t.inbox.nextSteps}</span>
              <ul>{latest.recommendations.map((q) => <li>{q}</li>)}</ul>
            </>
          )}
          <p class="muted small">{t.inbox.sentiment(latest.sentiment)}{latest.offline ? ` · ${t.inbox.offlineAnalyzer}` : ""} · {when(latest.createdAt)}</p>
          {latest.suggestedReply && (
            <div class="suggested">
              <span class="label">{t.inbox.suggestedReply}</span>
              <p>{latest.suggestedReply}</p>
              <button onClick={() => suggest(id, latest.suggestedReply!)}>{t.inbox.useReply}</button>
            </div>
          )}
        </div>
      ) : (
        <p class="muted">{t.inbox.noInsights}</p>
      )}
      <button disabled={asked} onClick={guard(async () => (await post(`/ai/analyze`, { conversationId: id }), setAsked(true)))}>
        {asked ? t.inbox.analyzing : t.inbox.analyze}
      </button>
    </section>
  );
}

export function Panel({ id, view }: { id: string; view: string }) {
  const c = s.conversations.value[id];
  const [agents, setAgents] = useState<Agent[]>([]);
  useEffect(() => {
    get<Agent[]>("/inbox/agents").then(setAgents).catch(() => undefined);
  }, []);
  if (!c) return null;
  return (
    <aside class="panel" aria-label={t.inbox.details}>
      <State c={c} agents={agents} />
      {c.lead && <LeadCard leadId={c.lead.id} />}
      {c.lead && <Others leadId={c.lead.id} id={id} view={view} />}
      <Notes id={id} agents={agents} />
      <Insights id={id} />
    </aside>
  );
}
