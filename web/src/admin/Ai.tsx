// AI: the workspace's provider keys (shown masked; added, rotated with a grace period,
// revoked) and the tokens used, per day, with the month's budget.

import { useState } from "preact/hooks";
import { del, post } from "../api";
import { useGuard } from "../guard";
import { t } from "../strings";
import { when } from "../format";
import { Bars, download, Messages, useLoad } from "./kit";

interface Key {
  id: string;
  name: string;
  masked: string;
  status: string;
  baseUrl: string;
  model: string;
  createdAt: string;
  retiresAt: string | null;
}

interface Usage {
  items: { group: string; calls: number; failures: number; promptTokens: number; completionTokens: number; totalTokens: number }[];
  totals: { calls: number; failures: number; totalTokens: number };
}

function AddKey({ onDone }: { onDone: () => void }) {
  const [form, setForm] = useState({ name: "", apiKey: "", baseUrl: "", model: "" });
  const { error, guard } = useGuard();
  const set = (k: keyof typeof form) => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });
  const save = guard(async () => {
    const body: Record<string, string> = { name: form.name, apiKey: form.apiKey };
    if (form.baseUrl) body.baseUrl = form.baseUrl;
    if (form.model) body.model = form.model;
    await post("/admin/ai/keys", body);
    setForm({ name: "", apiKey: "", baseUrl: "", model: "" });
    onDone();
  });
  return (
    <form class="stack" onSubmit={save} aria-label={t.admin.addKey}>
      <h3>{t.admin.addKey}</h3>
      <Messages error={error} />
      <div class="row-form">
        <label>{t.admin.name}<input required value={form.name} onInput={set("name")} /></label>
        <label>{t.admin.apiKey}<input required type="password" autocomplete="off" value={form.apiKey} onInput={set("apiKey")} /></label>
      </div>
      <div class="row-form">
        <label>{t.admin.baseUrl}<input type="url" placeholder="https://api.openai.com/v1" value={form.baseUrl} onInput={set("baseUrl")} /></label>
        <label>{t.admin.model}<input value={form.model} onInput={set("model")} /></label>
      </div>
      <button>{t.add}</button>
    </form>
  );
}

export function Ai() {
  const [keys, reload] = useLoad<Key[]>("/admin/ai/keys");
  const [usage, , usageError] = useLoad<Usage>("/admin/ai/usage?groupBy=day");
  const [rotating, setRotating] = useState<string | null>(null);
  const [newKey, setNewKey] = useState("");
  const { error, guard } = useGuard();
  const rotate = guard(async () => {
    await post(`/admin/ai/keys/${rotating}/rotate`, { apiKey: newKey });
    setRotating(null);
    setNewKey("");
    reload();
  });
  return (
    <div class="admin-grid">
      <section class="stack card-section" aria-label={t.admin.aiKeys}>
        <h2>{t.admin.aiKeys}</h2>
        <Messages error={error} />
        <table>
          <thead><tr><th>{t.admin.name}</th><th>{t.admin.apiKey}</th><th>{t.admin.status}</th><th>{t.admin.model}</th><th /></tr></thead>
          <tbody>
            {keys?.map((k) => (
              <tr>
                <td>{k.name}</td>
                <td><code>{k.masked}</code></td>
                <td>{k.status}{k.retiresAt ? ` (${when(k.retiresAt)})` : ""}</td>
                <td>{k.model}</td>
                <td>
                  {k.status === "active" && <button onClick={() => setRotating(k.id)}>{t.admin.rotate}</button>}{" "}
                  {k.status !== "revoked" && <button class="danger" onClick={guard(async () => (await del(`/admin/ai/keys/${k.id}`), reload()))}>{t.admin.revoke}</button>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {rotating && (
          <form class="row-form" onSubmit={rotate}>
            <label>{t.admin.newApiKey}<input required type="password" autocomplete="off" value={newKey} onInput={(e) => setNewKey(e.currentTarget.value)} /></label>
            <button class="primary">{t.admin.rotate}</button>
          </form>
        )}
        <AddKey onDone={reload} />
      </section>
      <section class="stack card-section" aria-label={t.admin.aiUsage}>
        <h2>{t.admin.aiUsage}</h2>
        <Messages error={usageError} />
        {usage && (
          <>
            <p>{t.admin.usageTotals(usage.totals.calls, usage.totals.failures, usage.totals.totalTokens)}</p>
            <Bars title={t.admin.tokensPerDay} labels={usage.items.map((x) => x.group)} series={[{ name: t.admin.tokens, color: "#5b3fa0", values: usage.items.map((x) => x.totalTokens) }]} />
            <button onClick={() => void download("/admin/ai/usage.csv?groupBy=day", "ai-usage.csv")}>{t.admin.csv("usage")}</button>
          </>
        )}
      </section>
    </div>
  );
}
