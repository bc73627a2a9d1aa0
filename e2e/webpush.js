// Web Push's counterpart for the tests: a stand-in push service, a browser's subscription keys,
// and the decryption a browser does (RFC 8291 aes128gcm), on Node's own crypto (OpenSSL).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createECDH, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

export const b64u = (buf) => Buffer.from(buf).toString("base64url");

/** A stand-in push service: resolves each POST it receives, in order. */
export async function pushService() {
  const waiting = [];
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const push = { path: req.url, headers: req.headers, body: Buffer.concat(chunks) };
      const w = waiting.shift();
      if (w) w(push); else received.push(push);
      res.writeHead(201).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    next() {
      if (received.length) return Promise.resolve(received.shift());
      return new Promise((resolve, reject) => {
        waiting.push(resolve);
        setTimeout(() => reject(new Error("no push arrived")), 15_000).unref();
      });
    },
    close() { server.close(); },
  };
}

/** A browser's subscription keys. */
export function browserKeys() {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  return { ecdh, auth: randomBytes(16) };
}

export function decrypt({ ecdh, auth }, body) {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const serverPublic = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  const shared = ecdh.computeSecret(serverPublic);
  const info = Buffer.concat([Buffer.from("WebPush: info\0"), ecdh.getPublicKey(), serverPublic]);
  const ikm = Buffer.from(hkdfSync("sha256", shared, auth, info, 32));
  const cek = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const plain = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  let end = plain.length - 1;
  while (plain[end] === 0) end--;
  assert.equal(plain[end], 2, "the last record's delimiter");
  return JSON.parse(plain.subarray(0, end).toString());
}
