// Text offered to a conversation's composer from elsewhere (the AI's suggested reply): the
// composer takes it in, for the agent to edit or send.

import { signal } from "@preact/signals";

export const offered = signal<{ conversationId: string; text: string; n: number } | null>(null);

let n = 0;
export function suggest(conversationId: string, text: string) {
  offered.value = { conversationId, text, n: ++n };
}
