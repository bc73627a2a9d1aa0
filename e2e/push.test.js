// Web Push checked by a counterpart that shares no code with the server: Node's own crypto
// (OpenSSL) verifies the VAPID token (RFC 8292) and decrypts the aes128gcm payload (RFC 8291)
// with the subscription's keys, as a browser would.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, verify } from "node:crypto";
import { backends, startServer } from "./harness.js";
import { b64u, browserKeys, decrypt, pushService } from "./webpush.js";

function checkVapid(headers, audience, serverKey) {
  const match = /^vapid t=([^,]+), k=(.+)$/.exec(headers.authorization);
  assert.ok(match, headers.authorization);
  const [, token, k] = match;
  assert.equal(k, serverKey);
  const point = Buffer.from(k, "base64url");
  const key = createPublicKey({ format: "jwk", key: { kty: "EC", crv: "P-256", x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33)) } });
  const [header, claims, signature] = token.split(".");
  const ok = verify("sha256", Buffer.from(`${header}.${claims}`), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(signature, "base64url"));
  assert.ok(ok, "the VAPID token verifies with the key it names");
  const c = JSON.parse(Buffer.from(claims, "base64url"));
  assert.equal(c.aud, audience);
  assert.ok(c.exp > Date.now() / 1000);
}

for (const backend of backends) {
  describe(`web push on ${backend}`, () => {
    let server;
    let service;
    before(async () => {
      server = await startServer(backend, { PALAVER_OUTBOUND_ALLOW: "127.0.0.1" });
      service = await pushService();
    });
    after(async () => { service.close(); await server.stop(); });

    it("notifies an offline device of a message and of a call, decryptably", async () => {
      const alice = await server.signup("Alice");
      const bob = await server.signup("Bob");
      const conv = await server.direct(alice, bob);
      for (const [user, id] of [[alice, "a"], [bob, "b"]]) {
        await server.call("POST", `/conversations/${conv}/messages`, user.token, { clientMsgId: id, type: "text", text: "hi" });
      }
      const { body: { publicKey } } = await server.call("GET", "/push/vapid-public-key", bob.token);
      const keys = browserKeys();
      const sub = { endpoint: `${service.base}/send/bob`, expirationTime: null, keys: { p256dh: b64u(keys.ecdh.getPublicKey()), auth: b64u(keys.auth) } };
      assert.equal((await server.call("POST", "/push/subscriptions", bob.token, sub)).status, 201);

      await server.call("POST", `/conversations/${conv}/messages`, alice.token, { clientMsgId: "c", type: "text", text: "are you there?" });
      const push = await service.next();
      assert.equal(push.headers["content-encoding"], "aes128gcm");
      checkVapid(push.headers, service.base, publicKey);
      const note = decrypt(keys, push.body);
      assert.equal(note.type, "message");
      assert.equal(note.conversationId, conv);
      assert.equal(note.body, "are you there?");
      assert.equal(note.title, "Alice");

      const caller = await server.connect(alice);
      const invited = await caller.emitWithAck("call:invite", { conversationId: conv, media: "audio", sdp: "v=0" });
      const ring = await service.next();
      assert.equal(ring.headers.urgency, "high");
      checkVapid(ring.headers, service.base, publicKey);
      const call = decrypt(keys, ring.body);
      assert.equal(call.type, "call");
      assert.equal(call.callId, invited.callId);
      assert.equal(call.from.id, alice.id);
    });
  });
}
