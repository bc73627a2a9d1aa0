// The workspace: its name and timezone, the support desk and AI switches, and its members
// with their roles (owners and admins add, change and remove them).

import { useEffect, useState } from "preact/hooks";
import { del, patch, post } from "../api";
import { useGuard } from "../guard";
import { session } from "../api";
import { t } from "../strings";
import { current, loadWorkspaces } from "../workspace";
import { Messages, useLoad } from "./kit";

interface Member {
  userId: string;
  displayName: string;
  email: string | null;
  phone: string | null;
  role: string;
  invited: boolean;
}

const ROLES = ["owner", "admin", "agent", "member"];

function Settings() {
  const w = current.value!;
  const support = w.settings.support ?? {};
  const ai = w.settings.ai ?? {};
  const [name, setName] = useState(w.name);
  const [timezone, setTimezone] = useState<string>(w.settings.timezone ?? "UTC");
  const [desk, setDesk] = useState({ enabled: !!support.enabled, whoMayWrite: support.whoMayWrite ?? "members", showAgentNames: !!support.showAgentNames });
  const [aiOn, setAiOn] = useState(!!ai.enabled);
  const [budget, setBudget] = useState<string>(ai.monthlyTokenBudget ? String(ai.monthlyTokenBudget) : "");
  const { error, status, guard } = useGuard();
  const save = guard(async () => {
    const settings = { timezone, support: desk, ai: { ...ai, enabled: aiOn, monthlyTokenBudget: budget ? Number(budget) : null } };
    await patch(`/workspaces/${w.id}`, { name, settings });
    await loadWorkspaces();
  }, t.saved);
  return (
    <form class="stack card-section" onSubmit={save}>
      <h2>{t.admin.workspace}</h2>
      <Messages error={error} status={status} />
      <label>{t.admin.name}<input required value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
      <label>{t.admin.timezone}<input required value={timezone} onInput={(e) => setTimezone(e.currentTarget.value)} placeholder="Europe/Lisbon" /></label>
      <fieldset class="stack">
        <legend>{t.admin.supportDesk}</legend>
        <label class="switch"><input type="checkbox" checked={desk.enabled} onChange={(e) => setDesk({ ...desk, enabled: e.currentTarget.checked })} /> {t.admin.deskOpen}</label>
        <label>
          {t.admin.whoMayWrite}
          <select value={desk.whoMayWrite} onChange={(e) => setDesk({ ...desk, whoMayWrite: e.currentTarget.value })}>
            <option value="members">{t.admin.deskMembers}</option>
            <option value="anyone">{t.admin.deskAnyone}</option>
          </select>
        </label>
        <label class="switch"><input type="checkbox" checked={desk.showAgentNames} onChange={(e) => setDesk({ ...desk, showAgentNames: e.currentTarget.checked })} /> {t.admin.showAgentNames}</label>
      </fieldset>
      <fieldset class="stack">
        <legend>{t.admin.ai}</legend>
        <label class="switch"><input type="checkbox" checked={aiOn} onChange={(e) => setAiOn(e.currentTarget.checked)} /> {t.admin.aiEnabled}</label>
        <label>{t.admin.budget}<input type="number" min={0} value={budget} onInput={(e) => setBudget(e.currentTarget.value)} /></label>
      </fieldset>
      <button class="primary">{t.save}</button>
    </form>
  );
}

export function Members() {
  const w = current.value!;
  const [page, reload] = useLoad<{ items: Member[] }>(`/workspaces/${w.id}/members?limit=100`);
  const [who, setWho] = useState("");
  const [role, setRole] = useState("agent");
  const { error, status, guard } = useGuard();
  useEffect(() => setWho(""), [page]);
  const add = guard(async () => {
    const key = who.includes("@") ? "email" : who.startsWith("+") ? "phone" : "userId";
    await post(`/workspaces/${w.id}/members`, { [key]: who.trim(), role });
    reload();
  });
  return (
    <div class="admin-grid">
      <Settings />
      <section class="stack card-section" aria-label={t.admin.members}>
        <h2>{t.admin.members}</h2>
        <Messages error={error} status={status} />
        <table>
          <thead><tr><th>{t.admin.name}</th><th>{t.admin.contact}</th><th>{t.admin.role}</th><th /></tr></thead>
          <tbody>
            {page?.items.map((m) => (
              <tr>
                <td>{m.displayName}{m.invited ? ` (${t.admin.invited})` : ""}</td>
                <td>{m.email ?? m.phone ?? ""}</td>
                <td>
                  <select aria-label={t.admin.roleOf(m.displayName)} value={m.role} onChange={(e) => guard(async () => (await patch(`/workspaces/${w.id}/members/${m.userId}`, { role: e.currentTarget.value }), reload()))()}>
                    {ROLES.map((r) => <option value={r}>{t.admin.roles[r]}</option>)}
                  </select>
                </td>
                <td>
                  {m.userId !== session.value?.user.id && (
                    <button class="danger" onClick={guard(async () => (await del(`/workspaces/${w.id}/members/${m.userId}`), reload()))}>{t.admin.remove}</button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <form class="row-form" onSubmit={add}>
          <label>{t.admin.addWho}<input required value={who} onInput={(e) => setWho(e.currentTarget.value)} /></label>
          <label>{t.admin.role}
            <select value={role} onChange={(e) => setRole(e.currentTarget.value)}>{ROLES.map((r) => <option value={r}>{t.admin.roles[r]}</option>)}</select>
          </label>
          <button>{t.add}</button>
        </form>
      </section>
    </div>
  );
}
