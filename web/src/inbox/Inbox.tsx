// The agents' inbox: views with counts (mine, unassigned, all open, pending, closed; by
// channel, tag and stage), the conversations of the view, and the open one beside its panel.

import { useEffect, useState } from "preact/hooks";
import { get } from "../api";
import { listen } from "../realtime";
import * as s from "../state";
import { t } from "../strings";
import { preview, shortTime } from "../format";
import { Avatar } from "../views/bits";
import { Chat } from "../views/Chat";
import { Panel } from "./Panel";

interface Counts {
  open: number;
  mine: number;
  unassigned: number;
  pending: number;
}

interface View {
  key: string;
  label: string;
  query: string;
  count?: keyof Counts;
}

const VIEWS: View[] = [
  { key: "mine", label: t.inbox.mine, query: "status=open&assignee=me", count: "mine" },
  { key: "unassigned", label: t.inbox.unassigned, query: "status=open&assignee=none", count: "unassigned" },
  { key: "open", label: t.inbox.allOpen, query: "status=open", count: "open" },
  { key: "pending", label: t.inbox.pending, query: "status=pending", count: "pending" },
  { key: "closed", label: t.inbox.closed, query: "status=closed" },
];

/** Something changed in the inbox: lists and counts are fetched again (at most every 300 ms). */
const changed = (() => {
  const fns = new Set<() => void>();
  let timer = 0;
  const fire = () => {
    clearTimeout(timer);
    timer = window.setTimeout(() => fns.forEach((f) => f()), 300);
  };
  for (const e of ["conversation:updated", "message:new"]) listen(e, fire);
  return (fn: () => void) => {
    fns.add(fn);
    return () => void fns.delete(fn);
  };
})();

function useRefetch<T>(path: string, initial: T): T {
  const [value, setValue] = useState<T>(initial);
  useEffect(() => {
    const load = () => get<T>(path).then(setValue).catch(() => undefined);
    load();
    return changed(load);
  }, [path]);
  return value;
}

interface Filters {
  channel: string;
  tag: string;
  stage: string;
}

function ViewList({ view, filters, setFilters }: { view: string; filters: Filters; setFilters: (f: Filters) => void }) {
  const counts = useRefetch<Counts | null>("/inbox/counts", null);
  const channels = useRefetch<{ items: { id: string; name: string }[] }>("/channels?limit=100", { items: [] });
  const stages = useRefetch<{ stages: string[] }>("/leads/stages", { stages: [] });
  return (
    <nav class="views" aria-label={t.inbox.views}>
      <h2>{t.inbox.title}</h2>
      <ul role="list">
        {VIEWS.map((v) => (
          <li>
            <a href={`#/inbox/${v.key}`} aria-current={view === v.key ? "page" : undefined} class={view === v.key ? "selected" : ""}>
              <span>{v.label}</span>
              {v.count && counts && <span class="count" data-count={v.key}>{counts[v.count]}</span>}
            </a>
          </li>
        ))}
      </ul>
      <label>
        {t.inbox.channel}
        <select value={filters.channel} onChange={(e) => setFilters({ ...filters, channel: e.currentTarget.value })}>
          <option value="">{t.inbox.any}</option>
          <option value="support">{t.inbox.supportDesk}</option>
          {channels.items.map((c) => <option value={c.id}>{c.name}</option>)}
        </select>
      </label>
      <label>
        {t.inbox.stage}
        <select value={filters.stage} onChange={(e) => setFilters({ ...filters, stage: e.currentTarget.value })}>
          <option value="">{t.inbox.any}</option>
          {stages.stages.map((x) => <option value={x}>{x}</option>)}
        </select>
      </label>
      <label>
        {t.inbox.tag}
        <input value={filters.tag} onChange={(e) => setFilters({ ...filters, tag: e.currentTarget.value.trim() })} />
      </label>
    </nav>
  );
}

function query(view: string, f: Filters): string {
  const base = VIEWS.find((v) => v.key === view)?.query ?? VIEWS[0].query;
  const kind = f.channel === "support" ? "support" : "inbox";
  let q = `/conversations?kind=${kind}&${base}&limit=100`;
  if (f.channel && f.channel !== "support") q += `&channel=${encodeURIComponent(f.channel)}`;
  if (f.tag) q += `&tag=${encodeURIComponent(f.tag)}`;
  if (f.stage) q += `&stage=${encodeURIComponent(f.stage)}`;
  return q;
}

function Conversations({ view, filters, openId }: { view: string; filters: Filters; openId: string | null }) {
  const list = useRefetch<{ items: s.Conversation[] }>(query(view, filters), { items: [] });
  useEffect(() => {
    for (const c of list.items) if (!s.conversations.value[c.id]) s.upsertConversation(c);
  }, [list]);
  return (
    <section class="inbox-list" aria-label={t.inbox.conversations}>
      <ul class="rows" role="list">
        {list.items.map((c) => {
          const title = s.titleOf(c);
          const live = s.conversations.value[c.id] ?? c;
          return (
            <li>
              <a href={`#/inbox/${view}/${c.id}`} class={"row" + (openId === c.id ? " selected" : "")} aria-current={openId === c.id ? "page" : undefined}>
                <Avatar id={c.id} name={title} size={40} />
                <span class="row-main">
                  <span class="row-top">
                    <span class="row-title">{title}</span>
                    {live.lastMessage && <time dateTime={live.lastMessage.createdAt}>{shortTime(live.lastMessage.createdAt)}</time>}
                  </span>
                  <span class="row-bottom">
                    <span class="row-preview">{live.lastMessage ? preview(live.lastMessage, s.nameOf) : ""}</span>
                    <span class={"tag kind-" + c.kind}>{c.kind === "support" ? t.inbox.supportDesk : t.inbox.whatsapp}</span>
                    {live.unreadCount > 0 && <span class="badge">{live.unreadCount}</span>}
                  </span>
                  <span class="muted small">{live.assigneeId ? t.inbox.assignedTo(s.nameOf(live.assigneeId)) : t.inbox.unassigned}</span>
                </span>
              </a>
            </li>
          );
        })}
      </ul>
      {!list.items.length && <p class="muted empty">{t.inbox.empty}</p>}
    </section>
  );
}

export function Inbox({ view, openId }: { view: string; openId: string | null }) {
  const [filters, setFilters] = useState<Filters>({ channel: "", tag: "", stage: "" });
  return (
    <div class={"inbox" + (openId ? " has-chat" : "")}>
      <ViewList view={view} filters={filters} setFilters={setFilters} />
      <Conversations view={view} filters={filters} openId={openId} />
      {openId ? (
        <>
          <div class="inbox-chat"><Chat key={openId} id={openId} back={`#/inbox/${view}`} /></div>
          <Panel key={openId} id={openId} view={view} />
        </>
      ) : (
        <div class="welcome"><p class="muted">{t.inbox.pick}</p></div>
      )}
    </div>
  );
}
