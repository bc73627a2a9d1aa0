// A device that stops reading must not make the server buffer without bound: it is
// disconnected once its send buffer is full, and it syncs when it comes back.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { backends, startServer } from "./harness.js";

/** A Socket.IO connection done by hand over a raw WebSocket, so that reading can be paused. */
async function rawConnect(base, token) {
  const ws = new WebSocket(base.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket");
  const frames = [];
  let wake = () => {};
  ws.on("message", (data) => { frames.push(data.toString()); wake(); });
  const next = async (prefix) => {
    for (;;) {
      const i = frames.findIndex((f) => f.startsWith(prefix));
      if (i >= 0) return frames.splice(i, 1)[0];
      await new Promise((resolve) => { wake = resolve; });
    }
  };
  await next("0{");                      // Engine.IO open
  ws.send("40" + JSON.stringify({ token }));
  await next("40{");                     // Socket.IO connect accepted
  return ws;
}

for (const backend of backends) {
  describe(`back-pressure on ${backend}`, () => {
    let server;
    before(async () => { server = await startServer(backend); });
    after(async () => { await server.stop(); });

    it("drops a device that stops reading, with memory bounded", async (t) => {
      const slow = await server.signup("Slow");
      const loud = await server.signup("Loud");
      const conv = await server.direct(loud, slow);
      await server.call("POST", `/conversations/${conv}/messages`, loud.token, { clientMsgId: "hello", type: "text", text: "hi" });
      await server.call("POST", `/conversations/${conv}/accept`, slow.token);

      const ws = await rawConnect(server.base, slow.token);
      ws._socket.pause();               // stop reading: TCP buffers fill, then the server's buffer
      const rssBefore = server.rssKb();
      const text = "x".repeat(60_000);   // ~60 KB per event
      let sent = 0;
      while ((await server.metric("realtime_slow_consumers_dropped_total")) < 1) {
        for (let i = 0; i < 50; i++) {
          const r = await server.call("POST", `/conversations/${conv}/messages`, loud.token, { clientMsgId: `f${sent}`, type: "text", text });
          assert.equal(r.status, 201);
          sent++;
        }
        assert.ok(sent < 3000, "the slow device should have been dropped long before this");
      }
      const grownMb = (server.rssKb() - rssBefore) / 1024;
      t.diagnostic(`dropped after ${sent} events of 60 KB; server RSS grew ${grownMb.toFixed(1)} MB`);
      // 512 buffered events of ~60 KB are ~30 MB at most; an unbounded buffer would hold all sent.
      // On SQLite the batched-send writer's page cache (32 MiB, README) also fills with these
      // large messages as they are stored, so it counts once on top.
      const bound = backend === "sqlite" ? 64 + 32 : 64;
      assert.ok(grownMb < bound, `server memory grew by ${grownMb.toFixed(1)} MB after ${sent} events`);
      // The close completes once its transport task ends; wait for it (bounded).
      const deadline = Date.now() + 10_000;
      while ((await server.metric("realtime_connected_sockets")) !== 0) {
        assert.ok(Date.now() < deadline, "the slow device was not disconnected");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      ws.terminate();

      // It comes back and catches up.
      const back = await server.connect(slow);
      const page = await back.emitWithAck("sync:request", {});
      assert.equal(page.ok, true);
      const history = await server.call("GET", `/conversations/${conv}/messages?limit=1`, slow.token);
      assert.equal(history.body.items[0].seq, sent + 1);
    });
  });
}
