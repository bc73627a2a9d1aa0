// Forwarding a message to other chats (up to 20), copies marked "forwarded".

import { useEffect, useRef, useState } from "preact/hooks";
import { call, Problem } from "../api";
import * as s from "../state";
import { t } from "../strings";
import { Avatar } from "./bits";
import { Icon } from "./icons";

export function Forward({ m, onClose }: { m: s.Message; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [picked, setPicked] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  // One key per dialog: a retried forward makes the same copies, not more.
  const key = useRef(crypto.randomUUID());
  useEffect(() => dialog.current?.showModal(), []);
  const targets = s.sortedConversations.value.filter((c) => c.requestState !== "declined" && c.kind !== "channel");
  const send = async () => {
    setError(null);
    try {
      const copies = await call<{ items: s.Message[] }>("POST", `/messages/${m.id}/forward`, { body: { conversationIds: picked }, idempotencyKey: key.current });
      for (const copy of copies.items) s.putMessage(copy, false);
      onClose();
    } catch (e) {
      setError(e instanceof Problem ? e.message : t.problem);
    }
  };
  return (
    <dialog ref={dialog} class="sheet" aria-label={t.forwardTo} onClose={onClose}>
      <div class="toolbar">
        <h2>{t.forwardTo}</h2>
        <button class="icon" aria-label={t.close} onClick={onClose}><Icon name="close" /></button>
      </div>
      <ul class="rows" role="list">
        {targets.map((c) => (
          <li>
            <label class="row">
              <input type="checkbox" checked={picked.includes(c.id)} disabled={!picked.includes(c.id) && picked.length >= 20}
                onChange={() => setPicked(picked.includes(c.id) ? picked.filter((x) => x !== c.id) : picked.concat(c.id))} />
              <Avatar id={c.id} name={s.titleOf(c)} size={32} />
              <span class="row-title">{s.titleOf(c)}</span>
            </label>
          </li>
        ))}
      </ul>
      {error && <p role="alert" class="error">{error}</p>}
      <button class="primary" disabled={!picked.length} onClick={send}>{t.forward}</button>
    </dialog>
  );
}
