// Writing: text (Enter sends, Shift+Enter breaks the line), a reply or an edit under way,
// attachments (photos and documents, uploaded first, then sent by id), voice notes recorded
// here, typing events; for agents, canned responses on `/`, an offered (AI) reply, and the
// template picker when a WhatsApp customer's window is closed.

import { useEffect, useRef, useState } from "preact/hooks";
import { call } from "../api";
import { enqueue } from "../outbox";
import { request, typingIn } from "../realtime";
import * as s from "../state";
import { t } from "../strings";
import { preview } from "../format";
import { Icon } from "./icons";
import { offered } from "../inbox/draft";
import { CannedMenu, TemplatePicker, windowClosed } from "../inbox/Tools";

async function upload(file: Blob, name: string, kind?: string): Promise<{ id: string; kind: string }> {
  const form = new FormData();
  if (kind) form.append("kind", kind);
  form.append("file", file, name);
  return call("POST", "/media", { form });
}

/** A voice message in the making: the microphone through a MediaRecorder (Opus in Ogg or WebM). */
function useRecorder(onDone: (audio: Blob) => void, onError: (message: string) => void) {
  const [seconds, setSeconds] = useState<number | null>(null);
  const recorder = useRef<MediaRecorder | null>(null);
  const keep = useRef(true);
  useEffect(() => {
    if (seconds === null) return;
    const timer = setTimeout(() => setSeconds(seconds + 1), 1000);
    return () => clearTimeout(timer);
  }, [seconds]);
  const start = async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const type = ["audio/ogg;codecs=opus", "audio/webm;codecs=opus"].find((x) => MediaRecorder.isTypeSupported(x));
      const rec = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
      const chunks: Blob[] = [];
      rec.ondataavailable = (e) => e.data.size && chunks.push(e.data);
      rec.onstop = () => {
        stream.getTracks().forEach((tr) => tr.stop());
        setSeconds(null);
        if (keep.current && chunks.length) onDone(new Blob(chunks, { type: rec.mimeType }));
      };
      keep.current = true;
      recorder.current = rec;
      rec.start();
      setSeconds(0);
    } catch {
      onError(t.micDenied);
    }
  };
  const stop = (send: boolean) => {
    keep.current = send;
    recorder.current?.stop();
    recorder.current = null;
  };
  return { seconds, start, stop };
}

const TYPE_OF_KIND: Record<string, string> = { image: "image", video: "video", audio: "audio", voice: "voice" };

export function Composer({ c, replyTo, editing, onDone }: { c: s.Conversation; replyTo: s.Message | null; editing: s.Message | null; onDone: () => void }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [uploading, setUploading] = useState(false);
  const box = useRef<HTMLTextAreaElement>(null);
  const menuKeys = useRef<((e: KeyboardEvent) => boolean) | null>(null);
  const staffSide = (c.kind === "channel" || c.kind === "support") && !!c.status;

  // A reply offered from elsewhere (the AI's suggestion) lands here, to edit or send.
  const offer = offered.value;
  useEffect(() => {
    if (offer?.conversationId === c.id) {
      setText(offer.text);
      box.current?.focus();
    }
  }, [offer?.n]);
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

  const recorder = useRecorder(
    (audio) => void attach(audio, audio.type.includes("ogg") ? "voice.ogg" : "voice.webm", "voice"),
    setError,
  );

  const attach = async (f: Blob, name: string, kind?: string) => {
    setUploading(true);
    setError(null);
    try {
      const media = await upload(f, name, kind);
      enqueue({ conversationId: c.id, type: TYPE_OF_KIND[media.kind] ?? "document", mediaId: media.id, replyToId: replyTo?.id });
      onDone();
    } catch (e: any) {
      setError(e.message ?? t.problem);
    } finally {
      setUploading(false);
    }
  };

  if (c.requestState === "declined") return null;
  if (staffSide && windowClosed(c)) return <div class="composer"><TemplatePicker c={c} /></div>;
  return (
    <form class="composer" onSubmit={submit}>
      {staffSide && <CannedMenu c={c} text={text} keys={menuKeys} onPick={(x) => (setText(x), box.current?.focus())} />}
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
          if (f) void attach(f, f.name);
        }} />
        {recorder.seconds !== null ? (
          <p class="recording" role="status">{t.recording(recorder.seconds)}</p>
        ) : (
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
            if (menuKeys.current?.(e)) return;
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) void submit(e);
            if (e.key === "Escape" && (editing || replyTo)) (setText(""), onDone());
          }}
          onBlur={() => typingIn(c.id, false)}
        />
        )}
        {recorder.seconds !== null ? (
          <>
            <button type="button" class="icon" aria-label={t.cancel} onClick={() => recorder.stop(false)}><Icon name="close" /></button>
            <button type="button" class="send primary" aria-label={t.stopRecording} onClick={() => recorder.stop(true)}><Icon name="stop" /></button>
          </>
        ) : text.trim() || editing ? (
          <button class="send primary" aria-label={t.send} disabled={!text.trim()}><Icon name="send" /></button>
        ) : (
          <button type="button" class="send primary" aria-label={t.record} disabled={uploading} onClick={recorder.start}><Icon name="mic" /></button>
        )}
      </div>
    </form>
  );
}
