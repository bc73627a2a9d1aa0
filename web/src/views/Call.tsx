// The call screen over everything: an incoming call (answer, decline), an outgoing one
// ringing, the call itself (the other's video or voice, one's own picture, mute, camera,
// hang up, the time), and why it ended.

import { useEffect, useRef, useState } from "preact/hooks";
import * as calls from "../calls";
import { t } from "../strings";
import { Avatar } from "./bits";
import { Icon } from "./icons";

function Media({ stream, muted, class: cls, video }: { stream?: MediaStream; muted?: boolean; class: string; video: boolean }) {
  const el = useRef<HTMLVideoElement & HTMLAudioElement>(null);
  useEffect(() => {
    if (el.current && stream && el.current.srcObject !== stream) el.current.srcObject = stream;
  }, [stream, stream?.getTracks().length]);
  return video ? <video ref={el} class={cls} autoplay playsInline muted={muted} /> : <audio ref={el} autoplay muted={muted} />;
}

function Timer({ since }: { since: number }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  const s = Math.max(0, Math.floor((now - since) / 1000));
  return <span class="timer">{`${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`}</span>;
}

export function CallScreen() {
  const c = calls.call.value;
  if (!c) return null;
  const video = c.media === "video";
  const status =
    c.phase === "ringing" ? t.calls.incoming(c.media) :
    c.phase === "calling" ? t.calls.calling :
    c.phase === "connecting" ? t.calls.connecting :
    c.phase === "ended" ? t.calls.ended(c.reason ?? "ended") : "";
  return (
    <div class={`call ${c.phase}`} role="dialog" aria-modal="true" aria-label={t.calls.with(c.peer.displayName)} data-phase={c.phase}>
      {video && c.remote && <Media class="remote" stream={c.remote} video />}
      {!video && c.remote && <Media class="remote" stream={c.remote} video={false} />}
      {video && c.local && <Media class="local" stream={c.local} muted video />}
      <div class="call-who">
        {!(video && c.phase === "connected") && <Avatar id={c.peer.id} name={c.peer.displayName} size={96} />}
        <h2>{c.peer.displayName}</h2>
        <p role="status">{c.phase === "connected" && c.connectedAt ? <Timer since={c.connectedAt} /> : status}</p>
      </div>
      <div class="call-actions">
        {c.phase === "ringing" ? (
          <>
            <button class="round decline" aria-label={t.calls.decline} onClick={() => void calls.reject()}><Icon name="close" /></button>
            <button class="round answer" aria-label={t.calls.answer} onClick={() => void calls.accept()}><Icon name="phone" /></button>
          </>
        ) : c.phase !== "ended" && (
          <>
            <button class="round" aria-pressed={c.muted} aria-label={c.muted ? t.calls.unmute : t.calls.mute} onClick={calls.toggleMute}><Icon name="mic" /></button>
            {video && <button class="round" aria-pressed={c.cameraOff} aria-label={c.cameraOff ? t.calls.cameraOn : t.calls.cameraOff} onClick={calls.toggleCamera}><Icon name="video" /></button>}
            <button class="round decline" aria-label={t.calls.hangUp} onClick={() => void calls.hangUp()}><Icon name="phone" /></button>
          </>
        )}
      </div>
    </div>
  );
}
