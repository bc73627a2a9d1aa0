// First measurements of the Socket.IO gateway, until `palaver bench` exists (issue 7).
// Needs `npm ci` in e2e/ (for socket.io-client) and a running server with PALAVER_RATE_LIMITS=off.
//
//   node bench/socket.mjs send [pairs=50] [window=8] [seconds=10]
//       pairs of users in direct chats; each sender keeps `window` sends in flight; receivers
//       count message:new. Reports deliveries/s and ack latency percentiles.
//   node bench/socket.mjs idle [connections=2000]
//       opens idle authenticated sockets; with PALAVER_PID set, reports server RSS per socket.
//
// PALAVER_URL (default http://127.0.0.1:3000). The client is one Node.js process, so on a
// 2-core machine it competes with the server: figures are a floor, not the server's ceiling.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(new URL("../e2e/package.json", import.meta.url));
const { io } = require("socket.io-client");
const base = process.env.PALAVER_URL || "http://127.0.0.1:3000";
const [mode = "send", a1, a2, a3] = process.argv.slice(2);

async function call(method, path, token, body) {
  const res = await fetch(base + "/api/v1" + path, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.json();
}
const tag = Math.random().toString(36).slice(2, 8);
async function user(name) {
  const r = await call("POST", "/auth/signup", null, { email: `${name}-${tag}@bench.example`, password: "bench password", displayName: name });
  return { id: r.user.id, token: r.accessToken };
}
function connect(token) {
  return new Promise((resolve, reject) => {
    const s = io(base, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true });
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}
const rss = () => process.env.PALAVER_PID ? Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${process.env.PALAVER_PID}/status`, "utf8"))[1]) : NaN;
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

if (mode === "send") {
  const pairs = Number(a1 || 50), window = Number(a2 || 8), seconds = Number(a3 || 10);
  const setup = [];
  for (let i = 0; i < pairs; i++) {
    const a = await user(`a${i}`), b = await user(`b${i}`);
    const conv = (await call("POST", "/conversations/direct", a.token, { userId: b.id })).id;
    setup.push({ a, b, conv, sa: await connect(a.token), sb: await connect(b.token) });
  }
  let delivered = 0, errors = 0, acked = 0, running = true;
  const latencies = [];
  for (const p of setup) p.sb.on("message:new", () => { if (running) delivered++; });
  const started = Date.now();
  await Promise.all(setup.map(async (p, i) => {
    let n = 0;
    const lane = async () => {
      while (running) {
        const t0 = performance.now();
        const ack = await p.sa.emitWithAck("message:send", { conversationId: p.conv, clientMsgId: `${tag}-${i}-${n++}`, type: "text", text: "bench" });
        if (ack.ok) { acked++; latencies.push(performance.now() - t0); } else errors++;
      }
    };
    setTimeout(() => { running = false; }, seconds * 1000);
    await Promise.all(Array.from({ length: window }, lane));
  }));
  const elapsed = (Date.now() - started) / 1000;
  latencies.sort((x, y) => x - y);
  console.log(JSON.stringify({
    mode, pairs, window, seconds: elapsed, acked, delivered, errors,
    deliveriesPerSecond: Math.round(delivered / elapsed),
    ackMs: { p50: +pct(latencies, 0.5).toFixed(2), p99: +pct(latencies, 0.99).toFixed(2) },
    serverRssKb: rss(),
  }));
  for (const p of setup) { p.sa.close(); p.sb.close(); }
} else if (mode === "idle") {
  const n = Number(a1 || 2000);
  const u = await user("idle");
  const before = rss();
  const sockets = [];
  for (let i = 0; i < n; i += 100) {
    sockets.push(...await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => connect(u.token))));
  }
  await new Promise((resolve) => setTimeout(resolve, 2000)); // let allocations settle before reading RSS
  const after = rss();
  console.log(JSON.stringify({ mode, connections: sockets.length, serverRssBeforeKb: before, serverRssAfterKb: after, kbPerConnection: +((after - before) / sockets.length).toFixed(2) }));
  for (const s of sockets) s.close();
}
process.exit(0);
