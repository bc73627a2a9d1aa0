// Template campaigns: drafts (channel, template, parameters, the audience by tags and stages),
// their states (schedule, pause, resume, cancel) and each one's funnel.

import { useEffect, useState } from "preact/hooks";
import { post } from "../api";
import { useGuard } from "../guard";
import { t } from "../strings";
import { when } from "../format";
import { Bars, Messages, useLoad } from "./kit";

interface Campaign {
  id: string;
  name: string;
  channelId: string | null;
  templateId: string | null;
  parameters: string[];
  audience: { tags?: string[]; stages?: string[] };
  status: string;
  scheduledAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
}

type Stats = Record<"audience" | "queued" | "sent" | "delivered" | "read" | "failed" | "replied", number>;

const STEPS: (keyof Stats)[] = ["audience", "queued", "sent", "delivered", "read", "replied", "failed"];

/** The transitions each state allows. */
const MOVES: Record<string, string[]> = { draft: ["schedule", "cancel"], scheduled: ["cancel"], running: ["pause", "cancel"], paused: ["resume", "cancel"] };

const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);

function NewCampaign({ onDone }: { onDone: () => void }) {
  const [channels] = useLoad<{ items: { id: string; name: string | null; phoneNumberId: string }[] }>("/channels?limit=100");
  const [templates] = useLoad<{ items: { id: string; name: string; language: string; parameterCount: number; status: string }[] }>("/templates?limit=100");
  const [form, setForm] = useState({ name: "", channelId: "", templateId: "", parameters: "", tags: "", stages: "" });
  const { error, guard } = useGuard();
  const set = (k: keyof typeof form) => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });
  const template = templates?.items.find((x) => x.id === form.templateId);
  const save = guard(async () => {
    const audience: Record<string, string[]> = {};
    if (form.tags) audience.tags = list(form.tags);
    if (form.stages) audience.stages = list(form.stages);
    await post("/campaigns", { name: form.name, channelId: form.channelId, templateId: form.templateId, parameters: list(form.parameters), audience });
    onDone();
  });
  return (
    <form class="stack card-section" onSubmit={save} aria-label={t.admin.newCampaign}>
      <h3>{t.admin.newCampaign}</h3>
      <Messages error={error} />
      <label>{t.admin.name}<input required value={form.name} onInput={set("name")} /></label>
      <label>{t.admin.channel}
        <select required value={form.channelId} onChange={set("channelId")}>
          <option value="" />
          {channels?.items.map((c) => <option value={c.id}>{c.name ?? c.phoneNumberId}</option>)}
        </select>
      </label>
      <label>{t.inbox.template}
        <select required value={form.templateId} onChange={set("templateId")}>
          <option value="" />
          {templates?.items.filter((x) => x.status.toLowerCase() === "approved").map((x) => <option value={x.id}>{x.name} ({x.language})</option>)}
        </select>
      </label>
      {template && template.parameterCount > 0 && (
        <label>{t.admin.parameters(template.parameterCount)}<input value={form.parameters} onInput={set("parameters")} placeholder="{{lead.name}}, …" /></label>
      )}
      <div class="row-form">
        <label>{t.admin.audienceTags}<input value={form.tags} onInput={set("tags")} /></label>
        <label>{t.admin.audienceStages}<input value={form.stages} onInput={set("stages")} /></label>
      </div>
      <p class="muted small">{t.admin.optedInOnly}</p>
      <button class="primary">{t.admin.saveDraft}</button>
    </form>
  );
}

const ACTIVE = ["scheduled", "running"];

/** Calls `fn` every two seconds while `on`: a campaign under way moves by itself. */
function usePoll(on: boolean, fn: () => void) {
  useEffect(() => {
    if (!on) return;
    const timer = setInterval(fn, 2000);
    return () => clearInterval(timer);
  }, [on, fn]);
}

function Funnel({ c }: { c: Campaign }) {
  const [stats, reload] = useLoad<Stats>(`/campaigns/${c.id}/stats`);
  usePoll(ACTIVE.includes(c.status), reload);
  // Once more when the state moves (the last sends land as it completes).
  useEffect(reload, [c.status]);
  if (!stats) return null;
  return (
    <section class="stack card-section" aria-label={t.admin.funnelOf(c.name)}>
      <h3>{t.admin.funnelOf(c.name)}</h3>
      <Bars title={t.admin.funnelOf(c.name)} labels={STEPS.map((x) => t.admin.steps[x])} series={[{ name: c.name, color: "#0b6e4f", values: STEPS.map((x) => stats[x]) }]} />
      <dl class="attributes">
        {STEPS.map((x) => (
          <>
            <dt>{t.admin.steps[x]}</dt>
            <dd data-step={x}>{stats[x]}</dd>
          </>
        ))}
      </dl>
    </section>
  );
}

export function Campaigns() {
  const [page, reload] = useLoad<{ items: Campaign[] }>("/campaigns?limit=100");
  const [creating, setCreating] = useState(false);
  const [shownId, setShown] = useState<string | null>(null);
  const { error, guard } = useGuard();
  usePoll(!!page?.items.some((c) => ACTIVE.includes(c.status)), reload);
  const shown = page?.items.find((c) => c.id === shownId);
  return (
    <div class="admin-grid">
      <section class="stack card-section" aria-label={t.admin.campaigns}>
        <h2>{t.admin.campaigns}</h2>
        <Messages error={error} />
        <table>
          <thead><tr><th>{t.admin.name}</th><th>{t.admin.status}</th><th>{t.admin.started}</th><th /></tr></thead>
          <tbody>
            {page?.items.map((c) => (
              <tr>
                <td>{c.name}</td>
                <td data-status={c.status}>{t.admin.states[c.status] ?? c.status}{c.error ? ` — ${c.error}` : ""}</td>
                <td>{c.startedAt ? when(c.startedAt) : c.scheduledAt ? when(c.scheduledAt) : ""}</td>
                <td>
                  {(MOVES[c.status] ?? []).map((m) => (
                    <button onClick={guard(async () => (await post(`/campaigns/${c.id}/${m}`, m === "schedule" ? {} : undefined), reload()))}>{t.admin.moves[m]}</button>
                  ))}{" "}
                  <button onClick={() => setShown(c.id)}>{t.admin.funnel}</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <button onClick={() => setCreating(true)}>{t.admin.newCampaign}</button>
      </section>
      {creating && <NewCampaign onDone={() => (setCreating(false), reload())} />}
      {shown && <Funnel key={shown.id} c={shown} />}
    </div>
  );
}
