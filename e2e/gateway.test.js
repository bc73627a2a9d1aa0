// The Socket.IO contract (realtime.md) with the client the seed frontends use.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { backends, startServer, record } from "./harness.js";

for (const backend of backends) {
  describe(`gateway on ${backend}`, () => {
    let server;
    before(async () => { server = await startServer(backend); });
    after(async () => { await server.stop(); });

    it("refuses a handshake without a valid token with data.code unauthorized", async () => {
      for (const auth of [undefined, { token: "not-a-token" }, { token: "" }]) {
        const socket = server.raw({ auth });
        const err = await new Promise((resolve) => socket.once("connect_error", resolve));
        assert.equal(err.data?.code, "unauthorized");
        assert.equal(socket.connected, false);
        socket.close();
      }
    });

    it("delivers a message once to every other device, and acks the sender with the stored message", async () => {
      const alice = await server.signup("Alice");
      const bob = await server.signup("Bob");
      const conv = await server.direct(alice, bob);
      const a1 = await server.connect(alice);
      const a2 = await server.connect(await server.device(alice, "alice-tablet"));
      const b1 = await server.connect(bob, { transports: ["polling", "websocket"] });
      const seen = [a1, a2, b1].map((s) => record(s, "message:new"));

      const ack = await a1.emitWithAck("message:send", { conversationId: conv, clientMsgId: "m1", type: "text", text: "hi bob" });
      assert.equal(ack.ok, true);
      assert.equal(ack.message.seq, 1);
      assert.equal(ack.message.text, "hi bob");
      assert.equal(ack.message.sender.id, alice.id);
      // A second message marks the end of the first one's deliveries (events keep log order).
      await a1.emitWithAck("message:send", { conversationId: conv, clientMsgId: "m2", type: "text", text: "marker" });
      for (const r of [seen[1], seen[2]]) {
        await r.waitFor((e) => e.data.message.text === "marker");
        const first = r.seen.filter((e) => e.data.message.id === ack.message.id);
        assert.equal(first.length, 1, "exactly once");
        assert.ok(first[0].data.cursor, "live events carry a cursor");
      }
      assert.equal(seen[0].seen.length, 0, "the sending device gets the ack, not an event");
      // Live order: seq order.
      assert.deepEqual(seen[2].seen.map((e) => e.data.message.seq), [1, 2]);
    });

    it("works over long-polling alone, and after an upgrade from it", async () => {
      const cat = await server.signup("Cat");
      const dan = await server.signup("Dan");
      const conv = await server.direct(cat, dan);
      const polling = await server.connect(cat, { transports: ["polling"] });
      const upgraded = await server.connect(dan, { transports: ["polling", "websocket"] });
      await new Promise((resolve) => {
        if (upgraded.io.engine.transport.name === "websocket") resolve();
        else upgraded.io.engine.once("upgrade", resolve);
      });
      const atCat = record(polling, "message:new");
      const atDan = record(upgraded, "message:new");
      for (let i = 1; i <= 20; i++) {
        const ack = await polling.emitWithAck("message:send", { conversationId: conv, clientMsgId: `p${i}`, type: "text", text: `from polling ${i}` });
        assert.equal(ack.ok, true);
      }
      const back = await upgraded.emitWithAck("message:send", { conversationId: conv, clientMsgId: "u1", type: "text", text: "from a websocket" });
      assert.equal(back.ok, true);
      await atDan.waitFor((e) => e.data.message.text === "from polling 20");
      await atCat.waitFor((e) => e.data.message.text === "from a websocket");
      assert.deepEqual(atDan.seen.map((e) => e.data.message.seq), Array.from({ length: 20 }, (_, i) => i + 1));
      assert.equal(polling.io.engine.transport.name, "polling");
      assert.equal(upgraded.io.engine.transport.name, "websocket");
    });

    it("answers a retried clientMsgId with the original and no new event", async () => {
      const a = await server.signup("Ann");
      const b = await server.signup("Ben");
      const conv = await server.direct(a, b);
      const sa = await server.connect(a);
      const sb = await server.connect(b);
      const seen = record(sb, "message:new");
      const body = { conversationId: conv, clientMsgId: "retry-1", type: "text", text: "once" };
      const first = await sa.emitWithAck("message:send", body);
      const again = await sa.emitWithAck("message:send", body);
      assert.equal(again.ok, true);
      assert.equal(again.message.id, first.message.id);
      await sa.emitWithAck("message:send", { ...body, clientMsgId: "retry-2", text: "next" });
      await seen.waitFor((e) => e.data.message.text === "next");
      assert.deepEqual(seen.seen.map((e) => e.data.message.seq), [1, 2]);
    });

    it("reports failures in the ack", async () => {
      const a = await server.signup("Fay");
      const sa = await server.connect(a);
      const missing = await sa.emitWithAck("message:send", { conversationId: "nope", clientMsgId: "x", type: "text", text: "x" });
      assert.deepEqual([missing.ok, missing.error.code], [false, "not_found"]);
      const invalid = await sa.emitWithAck("message:send", { conversationId: "nope", clientMsgId: "x", type: "text" });
      assert.deepEqual([invalid.ok, invalid.error.code], [false, "validation_failed"]);
      const unknown = await sa.emitWithAck("no:such:event", {});
      assert.equal(unknown.ok, false);
    });

    it("moves receipts only forward and tells the sender", async () => {
      const a = await server.signup("Rae");
      const b = await server.signup("Rob");
      const conv = await server.direct(a, b);
      const sa = await server.connect(a);
      const sb = await server.connect(b);
      // B answers first: reads of a message request that is still pending stay private.
      await sb.emitWithAck("message:send", { conversationId: conv, clientMsgId: "b-hi", type: "text", text: "hi" });
      const statuses = record(sa, "message:status");
      for (const i of [1, 2, 3]) await sa.emitWithAck("message:send", { conversationId: conv, clientMsgId: `r${i}`, type: "text", text: `r${i}` });
      const read = await sb.emitWithAck("message:read", { conversationId: conv, seq: 3 });
      assert.deepEqual([read.ok, read.readSeq, read.deliveredSeq], [true, 3, 3]);
      const back = await sb.emitWithAck("message:read", { conversationId: conv, seq: 2 });
      assert.deepEqual([back.ok, back.readSeq], [true, 3], "never backwards");
      await sb.emitWithAck("message:delivered", { conversationId: conv, seq: 4 });
      const delivered = await statuses.waitFor((e) => e.data.status === "delivered");
      const readEvent = statuses.seen.find((e) => e.data.status === "read");
      assert.deepEqual([readEvent.data.userId, readEvent.data.upToSeq], [b.id, 3]);
      assert.equal(delivered.data.upToSeq, 4);
      assert.equal(statuses.seen.filter((e) => e.data.status === "read").length, 1, "no event for the backwards read");
    });

    it("lets an offline device catch up with sync:request, nothing missed or repeated", async () => {
      const a = await server.signup("Cat");
      const b = await server.signup("Dan");
      const conv = await server.direct(a, b);
      const sa = await server.connect(a);
      const phone = await server.connect(b);
      const start = await phone.emitWithAck("sync:request", {});
      assert.equal(start.ok, true);
      phone.close();

      const sent = [];
      for (const i of [1, 2, 3]) sent.push((await sa.emitWithAck("message:send", { conversationId: conv, clientMsgId: `o${i}`, type: "text", text: `while offline ${i}` })).message);
      await sa.emitWithAck("message:edit", { messageId: sent[0].id, text: "edited while offline" });
      await sa.emitWithAck("message:delete", { messageId: sent[1].id, for: "everyone" });
      const laptop = await server.connect(await server.device(b, "dan-laptop"));
      await laptop.emitWithAck("message:react", { messageId: sent[2].id, emoji: "👍" });

      // Back online: page through with a small limit.
      const again = await server.connect(await server.device(b, "dan-phone-2"));
      let cursor = start.cursor;
      const events = [];
      for (;;) {
        const page = await again.emitWithAck("sync:request", { cursor, limit: 2 });
        assert.equal(page.ok, true);
        events.push(...page.events);
        cursor = page.cursor;
        if (!page.hasMore) break;
      }
      const cursors = events.map((e) => e.cursor);
      assert.equal(new Set(cursors).size, cursors.length, "no repeats");
      assert.deepEqual(events.filter((e) => e.type === "message:new").map((e) => e.data.message.seq), [1, 2, 3]);
      const latest = (id) => events.filter((e) => e.data.message?.id === id).at(-1).data.message;
      assert.equal(latest(sent[0].id).text, "edited while offline");
      assert.equal(latest(sent[1].id).text, null);
      assert.ok(latest(sent[1].id).deletedAt);
      assert.deepEqual(latest(sent[2].id).reactions.map((r) => r.emoji), ["👍"]);
      const nothing = await again.emitWithAck("sync:request", { cursor });
      assert.deepEqual([nothing.events.length, nothing.hasMore], [0, false]);
    });

    it("shares typing with the other members and ends a start without stop after 6 s", async () => {
      const a = await server.signup("Gus");
      const b = await server.signup("Hal");
      const conv = await server.direct(a, b);
      const sa = await server.connect(a);
      await sa.emitWithAck("message:send", { conversationId: conv, clientMsgId: "t0", type: "text", text: "hello" });
      await server.call("POST", `/conversations/${conv}/accept`, b.token);
      const sb = await server.connect(b);
      const typing = record(sb, "typing");
      const own = record(sa, "typing");
      sa.emit("typing:start", { conversationId: conv });
      const on = await typing.waitFor((e) => e.data.typing === true);
      assert.deepEqual(on.data, { conversationId: conv, userId: a.id, typing: true });
      sa.emit("typing:stop", { conversationId: conv });
      await typing.waitFor((e) => e.data.typing === false);
      // A start that never stops: the server ends it.
      const started = Date.now();
      sa.emit("typing:start", { conversationId: conv });
      await typing.waitFor((e, i) => e.data.typing === true && typing.seen.filter((x) => x.data.typing).length === 2);
      await typing.waitFor((e) => e.data.typing === false && typing.seen.filter((x) => !x.data.typing).length === 2);
      const waited = Date.now() - started;
      assert.ok(waited >= 5500 && waited < 9000, `expired after ${waited} ms`);
      assert.equal(own.seen.length, 0, "the typer's own devices are not told");
    });

    it("announces presence online and offline with lastSeenAt", async () => {
      const a = await server.signup("Ida");
      const b = await server.signup("Jo");
      const conv = await server.direct(a, b);
      await server.call("POST", `/conversations/${conv}/messages`, a.token, { clientMsgId: "p0", type: "text", text: "hi" });
      await server.call("POST", `/conversations/${conv}/accept`, b.token);
      const sb = await server.connect(b);
      const presence = record(sb, "presence");
      const sa = await server.connect(a);
      const online = await presence.waitFor((e) => e.data.userId === a.id && e.data.online === true);
      assert.equal(online.data.lastSeenAt, null);
      sa.close();
      const offline = await presence.waitFor((e) => e.data.userId === a.id && e.data.online === false && presence.seen.indexOf(e) > presence.seen.indexOf(online));
      assert.ok(Date.parse(offline.data.lastSeenAt) > 0);
      const profile = await server.call("GET", `/users/${a.id}`, b.token);
      assert.equal(profile.body.lastSeenAt, offline.data.lastSeenAt);
    });

    it("closes the sockets of a session that logs out", async () => {
      const a = await server.signup("Kim");
      const sa = await server.connect(a);
      const gone = new Promise((resolve) => sa.once("disconnect", resolve));
      const r = await server.call("POST", "/auth/logout", a.token);
      assert.equal(r.status, 204);
      assert.equal(await gone, "io server disconnect");
      const again = server.raw({ auth: { token: a.token } });
      const err = await new Promise((resolve) => again.once("connect_error", resolve));
      assert.equal(err.data.code, "unauthorized");
    });

    it("loses nothing when a socket drops mid-stream and reconnects", async () => {
      const a = await server.signup("Eve");
      const b = await server.signup("Fin");
      const conv = await server.direct(a, b);
      const sa = await server.connect(a);
      let sb = await server.connect(b);
      const seen = record(sb, "message:new");
      const got = new Set();
      for (let i = 1; i <= 10; i++) {
        await sa.emitWithAck("message:send", { conversationId: conv, clientMsgId: `d${i}`, type: "text", text: `n${i}` });
        if (i === 4) {
          await seen.waitFor((e) => e.data.message.seq === 4);
          sb.close();
        }
      }
      let cursor;
      for (const e of seen.seen) { got.add(e.data.message.seq); cursor = e.data.cursor; }
      sb = await server.connect(await server.device(b, "fin-2"));
      const page = await sb.emitWithAck("sync:request", { cursor });
      for (const e of page.events) if (e.type === "message:new") got.add(e.data.message.seq);
      assert.deepEqual([...got].sort((x, y) => x - y), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    });
  });
}
