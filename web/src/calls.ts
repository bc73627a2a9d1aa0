// 1:1 calls: WebRTC between the two browsers, signalled through the socket (`call:*`), with the
// ICE servers the API hands out (TURN credentials included). One call at a time per tab.

import { signal } from "@preact/signals";
import { get } from "./api";
import { emit, listen, request } from "./realtime";

export type Phase = "calling" | "ringing" | "connecting" | "connected" | "ended";

export interface Call {
  id: string | null;
  conversationId: string;
  /** The other person. */
  peer: { id: string; displayName: string };
  media: "audio" | "video";
  direction: "outgoing" | "incoming";
  phase: Phase;
  /** Why it ended: rejected, ended, missed, busy, failed, answered_elsewhere. */
  reason?: string;
  connectedAt?: number;
  local?: MediaStream;
  remote?: MediaStream;
  muted: boolean;
  cameraOff: boolean;
}

export const call = signal<Call | null>(null);

let pc: RTCPeerConnection | null = null;
let offer: string | null = null;
/** Candidates that came before the peer's description, and ours before the call had an id. */
let remoteCandidates: RTCIceCandidateInit[] = [];
let localCandidates: RTCIceCandidateInit[] = [];
/** Calls that ended before their invite's ack came back (busy, say). */
const endedEarly = new Map<string, string>();

function update(change: Partial<Call>) {
  if (call.value) call.value = { ...call.value, ...change };
}

async function connection(media: "audio" | "video"): Promise<RTCPeerConnection> {
  const { iceServers } = await get<{ iceServers: RTCIceServer[] }>("/calls/ice-servers").catch(() => ({ iceServers: [] }));
  const local = await navigator.mediaDevices.getUserMedia({ audio: true, video: media === "video" });
  const p = new RTCPeerConnection({ iceServers });
  for (const track of local.getTracks()) p.addTrack(track, local);
  const remote = new MediaStream();
  p.ontrack = (e) => {
    remote.addTrack(e.track);
    update({ remote });
  };
  p.onicecandidate = ({ candidate }) => {
    if (!candidate) return;
    const id = call.value?.id;
    if (id) emit("call:ice", { callId: id, candidate: candidate.toJSON() });
    else localCandidates.push(candidate.toJSON());
  };
  p.onconnectionstatechange = () => {
    if (p.connectionState === "connected" && call.value?.phase !== "connected") update({ phase: "connected", connectedAt: Date.now() });
    if (p.connectionState === "failed") void hangUp();
  };
  update({ local });
  pc = p;
  return p;
}

async function remoteDescription(description: RTCSessionDescriptionInit) {
  await pc!.setRemoteDescription(description);
  for (const c of remoteCandidates) await pc!.addIceCandidate(c).catch(() => undefined);
  remoteCandidates = [];
}

function cleanup(reason: string) {
  pc?.close();
  pc = null;
  offer = null;
  remoteCandidates = [];
  localCandidates = [];
  const c = call.value;
  c?.local?.getTracks().forEach((t) => t.stop());
  if (c) {
    call.value = { ...c, phase: "ended", reason, local: undefined, remote: undefined };
    // The ended screen stays a moment, then goes (unless another call took its place).
    setTimeout(() => call.value?.phase === "ended" && call.value.id === c.id && (call.value = null), 2500);
  }
}

export async function start(conversationId: string, peer: Call["peer"], media: "audio" | "video") {
  if (call.value && call.value.phase !== "ended") return;
  call.value = { id: null, conversationId, peer, media, direction: "outgoing", phase: "calling", muted: false, cameraOff: false };
  try {
    const p = await connection(media);
    const description = await p.createOffer();
    await p.setLocalDescription(description);
    const ack = await request<{ callId: string }>("call:invite", { conversationId, media, sdp: description.sdp });
    update({ id: ack.callId });
    const early = endedEarly.get(ack.callId);
    if (early) return cleanup(early);
    for (const candidate of localCandidates) emit("call:ice", { callId: ack.callId, candidate });
    localCandidates = [];
  } catch (e: any) {
    cleanup(e?.code === "call_not_allowed" ? "not_allowed" : "failed");
  }
}

export async function accept() {
  const c = call.value;
  if (!c?.id || c.phase !== "ringing" || !offer) return;
  update({ phase: "connecting" });
  try {
    const p = await connection(c.media);
    await remoteDescription({ type: "offer", sdp: offer });
    const answer = await p.createAnswer();
    await p.setLocalDescription(answer);
    await request("call:accept", { callId: c.id, sdp: answer.sdp });
  } catch {
    void hangUp();
  }
}

export async function reject() {
  const id = call.value?.id;
  if (id) await request("call:reject", { callId: id }).catch(() => undefined);
  cleanup("rejected");
}

export async function hangUp() {
  const id = call.value?.id;
  if (id) await request("call:end", { callId: id }).catch(() => undefined);
  cleanup("ended");
}

export function toggleMute() {
  const c = call.value;
  c?.local?.getAudioTracks().forEach((t) => (t.enabled = c.muted));
  update({ muted: !c?.muted });
}

export function toggleCamera() {
  const c = call.value;
  c?.local?.getVideoTracks().forEach((t) => (t.enabled = c.cameraOff));
  update({ cameraOff: !c?.cameraOff });
}

listen("call:incoming", (e: { callId: string; conversationId: string; from: Call["peer"]; media: "audio" | "video"; sdp: string }) => {
  // Busy here: the server already answers an invite to someone in a call; a second tab rings too.
  if (call.value && call.value.phase !== "ended") return;
  offer = e.sdp;
  call.value = { id: e.callId, conversationId: e.conversationId, peer: e.from, media: e.media, direction: "incoming", phase: "ringing", muted: false, cameraOff: false };
});

listen("call:accepted", (e: { callId: string; sdp: string }) => {
  if (call.value?.id !== e.callId || !pc) return;
  update({ phase: "connecting" });
  void remoteDescription({ type: "answer", sdp: e.sdp });
});

listen("call:ice", (e: { callId: string; candidate: RTCIceCandidateInit }) => {
  if (call.value?.id !== e.callId) return;
  if (pc?.remoteDescription) void pc.addIceCandidate(e.candidate).catch(() => undefined);
  else remoteCandidates.push(e.candidate);
});

listen("call:ended", (e: { callId: string; reason: string }) => {
  if (call.value?.id === e.callId) cleanup(e.reason);
  else if (call.value?.phase === "calling" && !call.value.id) endedEarly.set(e.callId, e.reason);
});
