// Bot rules: the list (enabled or not, what starts each, what it does), a rule's editor (the
// trigger by its fields; conditions and actions as JSON, checked by the server field by field)
// and each rule's recent runs.

import { useState } from "preact/hooks";
import { del, patch, post } from "../api";
import { useGuard } from "../guard";
import { t } from "../strings";
import { when } from "../format";
import { Messages, useLoad } from "./kit";

interface Trigger {
  type: string;
  keyword?: string;
  regex?: string;
  minutes?: number;
  hours?: number;
  stage?: string;
  tag?: string;
}

interface Rule {
  id: string;
  name: string;
  enabled: boolean;
  trigger: Trigger;
  conditions: unknown[];
  actions: { type: string }[];
  cooldownMinutes: number;
}

interface Run {
  id: string;
  at: string;
  conversationId: string | null;
  trigger: string;
  outcome: string;
  error: string | null;
}

const TRIGGERS = ["message_received", "first_message", "conversation_opened", "outside_business_hours", "no_agent_reply", "no_customer_reply", "stage_changed", "tag_added"];
/** The trigger's own field, where it has one. */
const TRIGGER_FIELD: Record<string, keyof Trigger> = { message_received: "keyword", no_agent_reply: "minutes", no_customer_reply: "hours", stage_changed: "stage", tag_added: "tag" };

function Editor({ rule, onDone }: { rule: Rule | null; onDone: () => void }) {
  const [name, setName] = useState(rule?.name ?? "");
  const [trigger, setTrigger] = useState<Trigger>(rule?.trigger ?? { type: "first_message" });
  const [conditions, setConditions] = useState(JSON.stringify(rule?.conditions ?? [], null, 1));
  const [actions, setActions] = useState(JSON.stringify(rule?.actions ?? [{ type: "send_text", text: "Hello! An agent will be with you shortly." }], null, 1));
  const { error, guard, setError } = useGuard();
  const field = TRIGGER_FIELD[trigger.type];
  const save = guard(async () => {
    let parsed;
    try {
      parsed = { conditions: JSON.parse(conditions), actions: JSON.parse(actions) };
    } catch {
      return setError(t.admin.badJson);
    }
    const body = { name, trigger, ...parsed };
    if (rule) await patch(`/automations/${rule.id}`, body);
    else await post("/automations", { ...body, enabled: true });
    onDone();
  });
  const numeric = field === "minutes" || field === "hours";
  return (
    <form class="stack card-section" onSubmit={save} aria-label={rule ? t.admin.editRule : t.admin.newRule}>
      <h3>{rule ? t.admin.editRule : t.admin.newRule}</h3>
      <Messages error={error} />
      <label>{t.admin.name}<input required value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
      <div class="row-form">
        <label>
          {t.admin.trigger}
          <select value={trigger.type} onChange={(e) => setTrigger({ type: e.currentTarget.value })}>
            {TRIGGERS.map((x) => <option value={x}>{t.admin.triggers[x]}</option>)}
          </select>
        </label>
        {field && (
          <label>
            {t.admin.triggerField[field]}
            {numeric ? (
              <input type="number" min={1} required value={(trigger[field] as number | undefined) ?? ""} onInput={(e) => setTrigger({ type: trigger.type, [field]: Number(e.currentTarget.value) })} />
            ) : (
              <input value={(trigger[field] as string | undefined) ?? ""} onInput={(e) => setTrigger({ type: trigger.type, [field]: e.currentTarget.value || undefined })} />
            )}
          </label>
        )}
      </div>
      <label>{t.admin.conditions}<textarea rows={3} class="code" value={conditions} onInput={(e) => setConditions(e.currentTarget.value)} /></label>
      <label>{t.admin.actions}<textarea rows={5} class="code" value={actions} onInput={(e) => setActions(e.currentTarget.value)} /></label>
      <p class="muted small">{t.admin.actionsHelp}</p>
      <button class="primary">{t.save}</button>
    </form>
  );
}

function Runs({ rule }: { rule: Rule }) {
  const [page] = useLoad<{ items: Run[] }>(`/automations/${rule.id}/runs?limit=20`);
  return (
    <section class="stack card-section" aria-label={t.admin.runsOf(rule.name)}>
      <h3>{t.admin.runsOf(rule.name)}</h3>
      {!page?.items.length && <p class="muted">{t.admin.noRuns}</p>}
      <ul class="plain-list">
        {page?.items.map((r) => <li>{when(r.at)} — {r.trigger}: <strong>{r.outcome}</strong>{r.error ? ` (${r.error})` : ""}</li>)}
      </ul>
    </section>
  );
}

export function Automations() {
  const [rules, reload] = useLoad<Rule[]>("/automations");
  const [editing, setEditing] = useState<Rule | "new" | null>(null);
  const [runs, setRuns] = useState<Rule | null>(null);
  const { error, guard } = useGuard();
  return (
    <div class="admin-grid">
      <section class="stack card-section" aria-label={t.admin.automations}>
        <h2>{t.admin.automations}</h2>
        <Messages error={error} />
        <table>
          <thead><tr><th>{t.admin.name}</th><th>{t.admin.trigger}</th><th>{t.admin.actions}</th><th>{t.admin.enabled}</th><th /></tr></thead>
          <tbody>
            {rules?.map((r) => (
              <tr>
                <td>{r.name}</td>
                <td>{t.admin.triggers[r.trigger.type] ?? r.trigger.type}</td>
                <td>{r.actions.map((a) => a.type).join(", ")}</td>
                <td><input type="checkbox" role="switch" aria-label={t.admin.enabledOf(r.name)} checked={r.enabled} onChange={guard(async () => (await patch(`/automations/${r.id}`, { enabled: !r.enabled }), reload()))} /></td>
                <td>
                  <button onClick={() => setEditing(r)}>{t.edit}</button> <button onClick={() => setRuns(r)}>{t.admin.runs}</button>{" "}
                  <button class="danger" onClick={guard(async () => (await del(`/automations/${r.id}`), reload()))}>{t.admin.remove}</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <button onClick={() => setEditing("new")}>{t.admin.newRule}</button>
      </section>
      {editing && <Editor key={editing === "new" ? "new" : editing.id} rule={editing === "new" ? null : editing} onDone={() => (setEditing(null), reload())} />}
      {runs && <Runs key={runs.id} rule={runs} />}
    </div>
  );
}
