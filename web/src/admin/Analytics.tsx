// Analytics: the inbox's days (opened, closed, messages in and out), response and resolution
// times in wall and business time, per agent and per channel; each also as CSV.

import { useState } from "preact/hooks";
import { useGuard } from "../guard";
import { t } from "../strings";
import { Bars, download, Messages, useLoad } from "./kit";

interface Times {
  count: number;
  medianSeconds: number | null;
  p90Seconds: number | null;
  businessMedianSeconds: number | null;
  businessP90Seconds: number | null;
}

interface Figures {
  opened: number;
  reopened: number;
  closed: number;
  messagesIn: number;
  messagesOut: number;
  firstResponse: Times;
  resolution: Times;
}

interface Overview extends Figures {
  from: string;
  to: string;
  timezone: string;
  days: (Figures & { date: string })[];
}

const span = (s: number | null) => (s === null ? "—" : s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);

function TimesRow({ name, x }: { name: string; x: Times }) {
  return (
    <tr>
      <th scope="row">{name}</th>
      <td>{x.count}</td>
      <td>{span(x.medianSeconds)}</td>
      <td>{span(x.p90Seconds)}</td>
      <td>{span(x.businessMedianSeconds)}</td>
      <td>{span(x.businessP90Seconds)}</td>
    </tr>
  );
}

function TimesTable({ rows }: { rows: [string, Times][] }) {
  return (
    <table>
      <thead><tr><th /><th>{t.admin.count}</th><th>{t.admin.median}</th><th>p90</th><th>{t.admin.businessMedian}</th><th>{t.admin.businessP90}</th></tr></thead>
      <tbody>{rows.map(([name, x]) => <TimesRow name={name} x={x} />)}</tbody>
    </table>
  );
}

export function Analytics() {
  const [days, setDays] = useState(30);
  const from = new Date(Date.now() - (days - 1) * 86400e3).toISOString().slice(0, 10);
  const to = new Date().toISOString().slice(0, 10);
  const range = `from=${from}&to=${to}`;
  const [overview, , error] = useLoad<Overview>(`/analytics/overview?${range}`);
  const [agents] = useLoad<{ agents: { userId: string; name: string; assigned: number; replied: number; closed: number; response: Times; firstResponse: Times }[] }>(`/analytics/agents?${range}`);
  const [channels] = useLoad<{ channels: (Figures & { channelId: string | null; name: string })[] }>(`/analytics/channels?${range}`);
  const csv = useGuard();
  const save = (report: string) => csv.guard(() => download(`/analytics/${report}.csv?${range}`, `${report}-${from}-${to}.csv`))();
  return (
    <div class="stack">
      <div class="row-form">
        <label>
          {t.admin.period}
          <select value={days} onChange={(e) => setDays(Number(e.currentTarget.value))}>
            {[7, 30, 90].map((d) => <option value={d}>{t.admin.lastDays(d)}</option>)}
          </select>
        </label>
        {["overview", "agents", "channels", "campaigns"].map((r) => <button onClick={() => save(r)}>{t.admin.csv(r)}</button>)}
      </div>
      <Messages error={error ?? csv.error} />
      {overview && (
        <>
          <section class="kpis" aria-label={t.admin.totals}>
            {(["opened", "reopened", "closed", "messagesIn", "messagesOut"] as const).map((k) => (
              <div class="kpi" data-kpi={k}><span class="kpi-value">{overview[k]}</span><span class="muted">{t.admin.kpis[k]}</span></div>
            ))}
          </section>
          <div class="admin-grid">
            <section class="card-section" aria-label={t.admin.conversationsPerDay}>
              <h3>{t.admin.conversationsPerDay}</h3>
              <Bars title={t.admin.conversationsPerDay} labels={overview.days.map((d) => d.date)} series={[
                { name: t.admin.kpis.opened, color: "#0b6e4f", values: overview.days.map((d) => d.opened + d.reopened) },
                { name: t.admin.kpis.closed, color: "#9aa5ab", values: overview.days.map((d) => d.closed) },
              ]} />
            </section>
            <section class="card-section" aria-label={t.admin.messagesPerDay}>
              <h3>{t.admin.messagesPerDay}</h3>
              <Bars title={t.admin.messagesPerDay} labels={overview.days.map((d) => d.date)} series={[
                { name: t.admin.kpis.messagesIn, color: "#1f5fa8", values: overview.days.map((d) => d.messagesIn) },
                { name: t.admin.kpis.messagesOut, color: "#d08a16", values: overview.days.map((d) => d.messagesOut) },
              ]} />
            </section>
          </div>
          <section class="card-section" aria-label={t.admin.times}>
            <h3>{t.admin.times}</h3>
            <TimesTable rows={[[t.admin.firstResponse, overview.firstResponse], [t.admin.resolution, overview.resolution]]} />
          </section>
        </>
      )}
      {agents && (
        <section class="card-section" aria-label={t.admin.agents}>
          <h3>{t.admin.agents}</h3>
          <table>
            <thead><tr><th>{t.admin.name}</th><th>{t.admin.assigned}</th><th>{t.admin.replied}</th><th>{t.admin.kpis.closed}</th><th>{t.admin.medianResponse}</th><th>{t.admin.medianFirst}</th></tr></thead>
            <tbody>
              {agents.agents.map((a) => (
                <tr><td>{a.name}</td><td>{a.assigned}</td><td>{a.replied}</td><td>{a.closed}</td><td>{span(a.response.medianSeconds)}</td><td>{span(a.firstResponse.medianSeconds)}</td></tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      {channels && (
        <section class="card-section" aria-label={t.admin.byChannel}>
          <h3>{t.admin.byChannel}</h3>
          <table>
            <thead><tr><th>{t.admin.name}</th><th>{t.admin.kpis.opened}</th><th>{t.admin.kpis.closed}</th><th>{t.admin.kpis.messagesIn}</th><th>{t.admin.kpis.messagesOut}</th><th>{t.admin.medianFirst}</th></tr></thead>
            <tbody>
              {channels.channels.map((c) => (
                <tr><td>{c.name}</td><td>{c.opened}</td><td>{c.closed}</td><td>{c.messagesIn}</td><td>{c.messagesOut}</td><td>{span(c.firstResponse.medianSeconds)}</td></tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
    </div>
  );
}
