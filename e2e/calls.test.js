// Call signalling (inbox-ai-calls.md, "Calls") with the npm socket.io-client: two clients set
// up a call through Palaver, exchange candidates, and hang up; the call is in the log and in
// the chat.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { backends, startServer, record } from "./harness.js";

const OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
const ANSWER = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";

for (const backend of backends) {
  describe(`calls on ${backend}`, () => {
    let server;
    before(async () => { server = await startServer(backend); });
    after(async () => { await server.stop(); });

    async function friends() {
      const alice = await server.signup("Alice");
      const bob = await server.signup("Bob");
      const conv = await server.direct(alice, bob);
      for (const [user, id] of [[alice, "a"], [bob, "b"]]) {
        const r = await server.call("POST", `/conversations/${conv}/messages`, user.token, { clientMsgId: id, type: "text", text: "hi" });
        assert.equal(r.status, 201, JSON.stringify(r.body));
      }
      return { alice, bob, conv };
    }

    it("sets up a call end to end, with candidates both ways, and logs it", async () => {
      const { alice, bob, conv } = await friends();
      const caller = await server.connect(alice);
      const phone = await server.connect(bob);
      const tablet = await server.connect(await server.device(bob, "bob-tablet"));
      const atCaller = record(caller, "call:accepted", "call:ice", "call:ended");
      const atPhone = record(phone, "call:incoming", "call:ice", "call:ended", "message:new");
      const atTablet = record(tablet, "call:incoming", "call:ended");

      const invited = await caller.emitWithAck("call:invite", { conversationId: conv, media: "audio", sdp: OFFER });
      assert.equal(invited.ok, true);
      const ring = await atPhone.waitFor((e) => e.name === "call:incoming");
      assert.deepEqual(ring.data, { callId: invited.callId, conversationId: conv, from: { id: alice.id, displayName: "Alice" }, media: "audio", sdp: OFFER });
      await atTablet.waitFor((e) => e.name === "call:incoming");

      const accepted = await phone.emitWithAck("call:accept", { callId: invited.callId, sdp: ANSWER });
      assert.deepEqual(accepted, { ok: true, callId: invited.callId });
      const answer = await atCaller.waitFor((e) => e.name === "call:accepted");
      assert.equal(answer.data.sdp, ANSWER);
      const stopped = await atTablet.waitFor((e) => e.name === "call:ended");
      assert.equal(stopped.data.reason, "answered_elsewhere");

      const candidate = { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host", sdpMid: "0", sdpMLineIndex: 0 };
      assert.equal((await caller.emitWithAck("call:ice", { callId: invited.callId, candidate })).ok, true);
      assert.deepEqual((await atPhone.waitFor((e) => e.name === "call:ice")).data, { callId: invited.callId, candidate });
      assert.equal((await phone.emitWithAck("call:ice", { callId: invited.callId, candidate })).ok, true);
      await atCaller.waitFor((e) => e.name === "call:ice");

      assert.equal((await phone.emitWithAck("call:end", { callId: invited.callId })).ok, true);
      for (const r of [atCaller, atPhone]) {
        const ended = await r.waitFor((e) => e.name === "call:ended");
        assert.equal(ended.data.reason, "ended");
        assert.ok(ended.data.durationMs >= 0);
      }
      const message = await atPhone.waitFor((e) => e.name === "message:new" && e.data.message.type === "call");
      assert.deepEqual(message.data.message.call, { callId: invited.callId, media: "audio", outcome: "answered", durationMs: message.data.message.call.durationMs });
      const log = await server.call("GET", "/calls", bob.token);
      assert.equal(log.body.items[0].id, invited.callId);
      assert.equal(log.body.items[0].direction, "incoming");
      assert.equal(log.body.items[0].outcome, "answered");
      assert.equal(atTablet.seen.filter((e) => e.name === "call:ended").length, 1, "the tablet stopped ringing once");
    });

    it("tells a second caller the callee is busy", async () => {
      const { alice, bob, conv } = await friends();
      const carol = await server.signup("Carol");
      const second = await server.direct(carol, bob);
      for (const [user, id] of [[carol, "c"], [bob, "d"]]) {
        await server.call("POST", `/conversations/${second}/messages`, user.token, { clientMsgId: id, type: "text", text: "hi" });
      }
      const a = await server.connect(alice);
      const c = await server.connect(carol);
      const b = await server.connect(bob);
      const atBob = record(b, "call:incoming");
      const atCarol = record(c, "call:ended");
      const first = await a.emitWithAck("call:invite", { conversationId: conv, media: "video", sdp: OFFER });
      await atBob.waitFor((e) => e.data.callId === first.callId);
      const busy = await c.emitWithAck("call:invite", { conversationId: second, media: "audio", sdp: OFFER });
      assert.equal(busy.ok, true);
      const ended = await atCarol.waitFor((e) => e.data.callId === busy.callId);
      assert.deepEqual(ended.data, { callId: busy.callId, reason: "busy", durationMs: 0 });
      const refused = await c.emitWithAck("call:invite", { conversationId: conv, media: "audio", sdp: OFFER });
      assert.deepEqual(refused.error.code, "not_found", "not a member of that chat");
    });
  });
}
