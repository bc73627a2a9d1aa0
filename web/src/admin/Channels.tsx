// WhatsApp channels (the secrets are written, never read back: the screen only says whether
// each is set) and the message templates, written here or pulled from WhatsApp.

import { useState } from "preact/hooks";
import { del, patch, post } from "../api";
import { useGuard } from "../guard";
import { t } from "../strings";
import { Messages, useLoad } from "./kit";

interface Channel {
  id: string;
  name: string | null;
  phoneNumberId: string;
  displayPhoneNumber: string | null;
  wabaId: string | null;
  graphBaseUrl: string;
  accessTokenSet: boolean;
  appSecretSet: boolean;
  verifyTokenSet: boolean;
}

interface Template {
  id: string;
  channelId: string | null;
  name: string;
  language: string;
  category: string;
  status: string;
  components: { type: string; text?: string }[];
}

const FIELDS = ["name", "phoneNumberId", "displayPhoneNumber", "wabaId"] as const;
const SECRETS = ["accessToken", "appSecret", "verifyToken"] as const;

function ChannelForm({ channel, onDone }: { channel: Channel | null; onDone: () => void }) {
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(FIELDS.map((f) => [f, (channel?.[f] as string | null) ?? ""])),
  );
  const [secrets, setSecrets] = useState<Record<string, string>>({});
  const { error, guard } = useGuard();
  const save = guard(async () => {
    // A field or secret left empty stays as it is (on a new channel: not given).
    const body: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...values, ...secrets })) if (v.trim()) body[k] = v.trim();
    if (channel) await patch(`/channels/${channel.id}`, body);
    else await post("/channels", body);
    onDone();
  });
  return (
    <form class="stack card-section" onSubmit={save} aria-label={channel ? t.admin.editChannel : t.admin.newChannel}>
      <h3>{channel ? t.admin.editChannel : t.admin.newChannel}</h3>
      <Messages error={error} />
      {FIELDS.map((f) => (
        <label>{t.admin.channelFields[f]}<input value={values[f]} required={f === "phoneNumberId"} onInput={(e) => setValues({ ...values, [f]: e.currentTarget.value })} /></label>
      ))}
      {SECRETS.map((f) => {
        const set = channel?.[`${f}Set` as keyof Channel];
        return (
          <label>
            {t.admin.channelFields[f]} {set ? `(${t.admin.secretSet})` : ""}
            <input type="password" autocomplete="off" placeholder={set ? t.admin.keepSecret : ""} required={!channel} value={secrets[f] ?? ""} onInput={(e) => setSecrets({ ...secrets, [f]: e.currentTarget.value })} />
          </label>
        );
      })}
      <p class="muted small">{t.admin.webhookAt(location.origin + "/webhooks/whatsapp")}</p>
      <button class="primary">{t.save}</button>
    </form>
  );
}

function Templates({ channels }: { channels: Channel[] }) {
  const [page, reload] = useLoad<{ items: Template[] }>("/templates?limit=100");
  const [name, setName] = useState("");
  const [language, setLanguage] = useState("en_US");
  const [body, setBody] = useState("");
  const { error, status, guard } = useGuard();
  const create = guard(async () => {
    await post("/templates", { name, language, category: "UTILITY", components: [{ type: "BODY", text: body }] });
    setName("");
    setBody("");
    reload();
  });
  return (
    <section class="stack card-section" aria-label={t.admin.templates}>
      <h2>{t.admin.templates}</h2>
      <Messages error={error} status={status} />
      <div class="row-form">
        {channels.map((c) => (
          <button onClick={guard(async () => (await post("/templates/sync", { channelId: c.id }), reload()), t.admin.synced)}>{t.admin.syncFrom(c.name ?? c.phoneNumberId)}</button>
        ))}
      </div>
      <table>
        <thead><tr><th>{t.admin.name}</th><th>{t.admin.language}</th><th>{t.admin.status}</th><th>{t.admin.text}</th><th /></tr></thead>
        <tbody>
          {page?.items.map((x) => (
            <tr>
              <td>{x.name}</td>
              <td>{x.language}</td>
              <td>{x.status}</td>
              <td>{x.components.find((c) => c.type.toLowerCase() === "body")?.text ?? ""}</td>
              <td><button class="danger" onClick={guard(async () => (await del(`/templates/${x.id}`), reload()))}>{t.admin.remove}</button></td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="stack" onSubmit={create}>
        <h3>{t.admin.newTemplate}</h3>
        <div class="row-form">
          <label>{t.admin.name}<input required pattern="[a-z0-9_]+" value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
          <label>{t.admin.language}<input required value={language} onInput={(e) => setLanguage(e.currentTarget.value)} /></label>
        </div>
        <label>{t.admin.text}<textarea required rows={3} placeholder="Hi {{1}}, your order {{2}} is ready." value={body} onInput={(e) => setBody(e.currentTarget.value)} /></label>
        <button>{t.add}</button>
      </form>
    </section>
  );
}

export function Channels() {
  const [page, reload] = useLoad<{ items: Channel[] }>("/channels?limit=100");
  const [editing, setEditing] = useState<Channel | "new" | null>(null);
  const { error, guard } = useGuard();
  const channels = page?.items ?? [];
  return (
    <div class="admin-grid">
      <section class="stack card-section" aria-label={t.admin.channels}>
        <h2>{t.admin.channels}</h2>
        <Messages error={error} />
        <table>
          <thead><tr><th>{t.admin.name}</th><th>{t.admin.number}</th><th>{t.admin.secrets}</th><th /></tr></thead>
          <tbody>
            {channels.map((c) => (
              <tr>
                <td>{c.name}</td>
                <td>{c.displayPhoneNumber ?? c.phoneNumberId}</td>
                <td>{SECRETS.map((f) => (c[`${f}Set` as keyof Channel] ? "✓ " : "✗ ") + t.admin.channelFields[f]).join(", ")}</td>
                <td>
                  <button onClick={() => setEditing(c)}>{t.edit}</button>{" "}
                  <button class="danger" onClick={guard(async () => (await del(`/channels/${c.id}`), reload()))}>{t.admin.remove}</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <button onClick={() => setEditing("new")}>{t.admin.newChannel}</button>
        {editing && <ChannelForm key={editing === "new" ? "new" : editing.id} channel={editing === "new" ? null : editing} onDone={() => (setEditing(null), reload())} />}
      </section>
      <Templates channels={channels} />
    </div>
  );
}
