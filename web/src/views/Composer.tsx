// Writing: text (Enter sends, Shift+Enter breaks the line), a reply or an edit under way,
// attachments (photos and documents, uploaded first, then sent by id), typing events.

import { useEffect, useRef, useState } from "preact/hooks";
import { call } from "../api";
import { enqueue } from "../outbox";
import { request, typingIn } from "../realtime";
import * as s from "../state";
import { t } from "../strings";
import { preview } from "../format";
import { Icon } from "./icons";

async function upload(file: File): Promise<{ id: string; kind: string }> {
  const form = new FormData();
  form.append("file", file, file.name);
  return call("POST", "/media", { form });
}

const TYPE_OF_KIND: Record<string, string> = { image: "image", video: "video", audio: "audio", voice: "voice" };

export function Composer({ c, replyTo, editing, onDone }: { c: s.Conversation; replyTo: s.Message | null; editing: s.Message | null; onDone: () => void }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [uploading, setUploading] = useState(false);
  const box = useRef<HTMLTextAreaElement>(null);
  const file = useRef<HTMLInputElement>(null);

  useEffect(() => {
    setText(editing?.text ?? "");
    if (editing || replyTo) box.current?.focus();
  }, [editing?.id, replyTo?.id]);
  useEffect(() => () => typingIn(c.id, false), [c.id]);

  const submit = async (ev?: Event) => {
    ev?.preventDefault();
    const body = text.trim();
    if (!body) return;
    setText("");
    typingIn(c.id, false);
    setError(null);
    if (editing) {
      await request("message:edit", { messageId: editing.id, text: body }).catch((e) => setError(e.message));
    } else {
      enqueue({ conversationId: c.id, type: "text", text: body, replyToId: replyTo?.id });
    }
    onDone();
  };

  const attach = async (f: File) => {
    setUploading(true);
    setError(null);
    try {
      const media = await upload(f);
      enqueue({ conversationId: c.id, type: TYPE_OF_KIND[media.kind] ?? "document", mediaId: media.id, replyToId: replyTo?.id });
      onDone();
    } catch (e: any) {
      setError(e.message ?? t.problem);
    } finally {
      setUploading(false);
    }
  };

  if (c.requestState === "declined") return null;
  return (
    <form class="composer" onSubmit={submit}>
      {(replyTo || editing) && (
        <div class="replying">
          <span>
            <strong>{editing ? t.editing : t.replyingTo}</strong> {preview((editing ?? replyTo)!)}
          </span>
          <button type="button" class="icon" aria-label={t.cancel} onClick={() => (setText(""), onDone())}><Icon name="close" /></button>
        </div>
      )}
      {error && <p role="alert" class="error">{error}</p>}
      <div class="compose-row">
        <button type="button" class="icon" aria-label={t.attach} title={t.attach} disabled={uploading || !!editing} onClick={() => file.current?.click()}><Icon name="clip" /></button>
        <input ref={file} type="file" hidden accept="image/*,application/pdf,audio/*,video/*,.doc,.docx,.xls,.xlsx,.txt" onChange={(e) => {
          const f = e.currentTarget.files?.[0];
          e.currentTarget.value = "";
          if (f) void attach(f);
        }} />
        <textarea
          ref={box}
          rows={1}
          aria-label={t.typeMessage}
          placeholder={t.typeMessage}
          value={text}
          onInput={(e) => {
            setText(e.currentTarget.value);
            typingIn(c.id, e.currentTarget.value.length > 0);
          }}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) void submit(e);
            if (e.key === "Escape" && (editing || replyTo)) (setText(""), onDone());
          }}
          onBlur={() => typingIn(c.id, false)}
        />
        <button class="send primary" aria-label={t.send} disabled={!text.trim()}><Icon name="send" /></button>
      </div>
    </form>
  );
}
