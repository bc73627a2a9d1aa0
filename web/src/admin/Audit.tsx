// The audit log: who did what, when, to what — newest first, a page at a time.

import { useEffect, useState } from "preact/hooks";
import { get } from "../api";
import { useGuard } from "../guard";
import { t } from "../strings";
import { when } from "../format";
import { Messages } from "./kit";

interface Entry {
  id: string;
  at: string;
  actor: { id: string; name: string } | null;
  action: string;
  target: { type: string; id: string | null };
  details: unknown;
}

export function Audit() {
  const [items, setItems] = useState<Entry[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const { error, guard } = useGuard();
  const more = (cursor: string | null) =>
    guard(async () => {
      const page = await get<{ items: Entry[]; nextCursor: string | null }>(`/audit?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      setItems((all) => (cursor ? all.concat(page.items) : page.items));
      setNext(page.nextCursor);
    })();
  useEffect(() => void more(null), []);
  return (
    <section class="stack card-section" aria-label={t.admin.audit}>
      <h2>{t.admin.audit}</h2>
      <Messages error={error} />
      <table>
        <thead><tr><th>{t.admin.when}</th><th>{t.admin.who}</th><th>{t.admin.action}</th><th>{t.admin.target}</th><th>{t.admin.details}</th></tr></thead>
        <tbody>
          {items.map((e) => (
            <tr>
              <td>{when(e.at)}</td>
              <td>{e.actor?.name ?? t.admin.system}</td>
              <td>{e.action}</td>
              <td>{e.target.type}{e.target.id ? ` ${e.target.id.slice(0, 8)}…` : ""}</td>
              <td><code class="details">{JSON.stringify(e.details)}</code></td>
            </tr>
          ))}
        </tbody>
      </table>
      {next && <button onClick={() => void more(next)}>{t.admin.more}</button>}
    </section>
  );
}
