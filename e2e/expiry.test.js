// An access token's expiry ends its socket; the client refreshes and reconnects.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { backends, startServer } from "./harness.js";

describe("token expiry", () => {
  let server;
  // The shortest lifetime the server accepts; one backend is enough for a timer.
  before(async () => { server = await startServer(backends[0], { PALAVER_ACCESS_TOKEN_TTL: "30" }); });
  after(async () => { await server.stop(); });

  it("ends the socket when its access token expires", { timeout: 60_000 }, async () => {
    const u = await server.signup("Tim");
    const started = Date.now();
    const socket = await server.connect(u);
    const reason = await new Promise((resolve) => socket.once("disconnect", resolve));
    const seconds = (Date.now() - started) / 1000;
    assert.equal(reason, "io server disconnect");
    assert.ok(seconds > 25 && seconds < 40, `ended after ${seconds} s`);
    const again = server.raw({ auth: { token: u.token } });
    const err = await new Promise((resolve) => again.once("connect_error", resolve));
    assert.equal(err.data.code, "unauthorized");
  });
});
