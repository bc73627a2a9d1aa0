// The admin screens of a workspace (owners and admins), one section at a time.

import { t } from "../strings";
import { Members } from "./Members";
import { Channels } from "./Channels";
import { Automations } from "./Automations";
import { Campaigns } from "./Campaigns";
import { Analytics } from "./Analytics";
import { Ai } from "./Ai";
import { Audit } from "./Audit";

const SECTIONS = {
  members: Members,
  channels: Channels,
  automations: Automations,
  campaigns: Campaigns,
  analytics: Analytics,
  ai: Ai,
  audit: Audit,
};

export function Admin({ section }: { section: string }) {
  const key = (section in SECTIONS ? section : "members") as keyof typeof SECTIONS;
  const Section = SECTIONS[key];
  return (
    <div class="admin">
      <nav class="views" aria-label={t.admin.title}>
        <h2>{t.admin.title}</h2>
        <ul role="list">
          {Object.keys(SECTIONS).map((k) => (
            <li>
              <a href={`#/admin/${k}`} class={k === key ? "selected" : ""} aria-current={k === key ? "page" : undefined}>{t.admin.sections[k]}</a>
            </li>
          ))}
        </ul>
      </nav>
      <main class="admin-main"><Section /></main>
    </div>
  );
}
