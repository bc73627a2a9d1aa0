// The workspaces the user belongs to and the one the app acts in (sent as `Palaver-Workspace`
// and in the socket's handshake), with the caller's role there: staff see the inbox,
// owners and admins the admin screens.

import { computed, signal } from "@preact/signals";
import { get } from "./api";

export interface Workspace {
  id: string;
  name: string;
  slug: string;
  isDefault: boolean;
  role: "owner" | "admin" | "agent" | "member";
  settings: Record<string, any>;
}

const KEY = "palaver.workspace";

export const workspaces = signal<Workspace[]>([]);
export const workspaceId = signal<string | null>(localStorage.getItem(KEY));

export const current = computed(() => workspaces.value.find((w) => w.id === workspaceId.value) ?? null);
export const isStaff = computed(() => ["owner", "admin", "agent"].includes(current.value?.role ?? ""));
export const isAdmin = computed(() => ["owner", "admin"].includes(current.value?.role ?? ""));

export async function loadWorkspaces() {
  const list = (await get<{ items: Workspace[] }>("/workspaces?limit=100")).items;
  workspaces.value = list;
  if (!list.some((w) => w.id === workspaceId.value)) {
    choose((list.find((w) => w.isDefault) ?? list[0])?.id ?? null);
  }
}

export function choose(id: string | null) {
  if (id) localStorage.setItem(KEY, id);
  else localStorage.removeItem(KEY);
  workspaceId.value = id;
}
