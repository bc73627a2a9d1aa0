// Starts the real `palaver` binary on a free port with a fresh database and gives tests
// HTTP helpers and connected socket.io-client sockets. No sleeps: tests wait for events.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { io } from "socket.io-client";

const BIN = process.env.PALAVER_BIN || new URL("../target/debug/palaver", import.meta.url).pathname;

/** The databases to run on: SQLite always, PostgreSQL when TEST_DATABASE_URL is set. */
export const backends = process.env.TEST_DATABASE_URL ? ["sqlite", "postgres"] : ["sqlite"];
if (!process.env.TEST_DATABASE_URL) console.log("# skipped the PostgreSQL runs: TEST_DATABASE_URL is not set");

export async function startServer(backend, extraEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), "palaver-e2e-"));
  const env = { ...process.env, PALAVER_LISTEN: "127.0.0.1:0", PALAVER_DATA_DIR: dir, PALAVER_LOG_FORMAT: "json", PALAVER_LOG: "warn,palaver::cli=info", PALAVER_RATE_LIMITS: "off" };
  delete env.DATABASE_URL;
  Object.assign(env, extraEnv);
  let database;
  if (backend === "postgres") {
    database = `palaver_e2e_${process.pid}_${Date.now()}`;
    execFileSync("psql", [process.env.TEST_DATABASE_URL, "-qc", `CREATE DATABASE "${database}"`]);
    const url = new URL(process.env.TEST_DATABASE_URL);
    url.pathname = "/" + database;
    env.DATABASE_URL = url.toString();
  }
  const child = spawn(BIN, [], { env, stdio: ["ignore", "ignore", "pipe"] });
  const base = await new Promise((resolve, reject) => {
    let buffered = "";
    child.stderr.on("data", (chunk) => {
      if (process.env.PALAVER_E2E_LOGS) process.stderr.write(chunk);
      buffered += chunk;
      for (const line of buffered.split("\n").slice(0, -1)) {
        try {
          const entry = JSON.parse(line);
          if (entry.message === "Palaver is ready") resolve(`http://${entry.address}`);
        } catch { /* not a JSON line */ }
      }
      buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
    });
    child.on("exit", (code) => reject(new Error(`palaver exited with ${code}`)));
  });
  const sockets = [];
  const server = {
    base,
    /** The server's resident memory in KiB, from /proc. */
    rssKb() {
      return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))[1]);
    },
    /** One Prometheus metric's value (summed over labels). */
    async metric(name) {
      const text = await (await fetch(base + "/metrics")).text();
      return text.split("\n").filter((l) => l.startsWith(name + " ") || l.startsWith(name + "{")).reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
    },
    async call(method, path, token, body) {
      const res = await fetch(base + "/api/v1" + path, {
        method,
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
    async signup(name) {
      const email = `${name.toLowerCase()}-${Math.random().toString(36).slice(2)}@example.com`;
      const r = await this.call("POST", "/auth/signup", null, { email, password: "correct horse battery", displayName: name });
      if (r.status !== 201) throw new Error(`signup failed: ${JSON.stringify(r.body)}`);
      return { id: r.body.user.id, token: r.body.accessToken, email };
    },
    /** Signs the user in on another device (a new session and token). */
    async device(user, deviceId) {
      const r = await this.call("POST", "/auth/login", null, { email: user.email, password: "correct horse battery", deviceId });
      return { ...user, token: r.body.accessToken };
    },
    /** A platform admin (`palaver admin create`), who owns the default workspace, signed in. */
    async admin(name) {
      const email = `${name.toLowerCase()}-${Math.random().toString(36).slice(2)}@example.com`;
      execFileSync(BIN, ["admin", "create", "--email", email, "--password", "correct horse battery", "--name", name], { env, stdio: "ignore" });
      const r = await this.call("POST", "/auth/login", null, { email, password: "correct horse battery", deviceId: "admin" });
      return { id: r.body.user.id, token: r.body.accessToken, email };
    },
    async direct(a, b) {
      const r = await this.call("POST", "/conversations/direct", a.token, { userId: b.id });
      return r.body.id;
    },
    /** A connected socket (WebSocket unless told otherwise). */
    async connect(user, options = {}) {
      const socket = io(base, { auth: { token: user.token }, transports: ["websocket"], reconnection: false, forceNew: true, ...options });
      sockets.push(socket);
      await new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", reject);
      });
      return socket;
    },
    raw(options) {
      const socket = io(base, { reconnection: false, forceNew: true, transports: ["websocket"], ...options });
      sockets.push(socket);
      return socket;
    },
    async stop() {
      for (const s of sockets) s.close();
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
      rmSync(dir, { recursive: true, force: true });
      if (database) execFileSync("psql", [process.env.TEST_DATABASE_URL, "-qc", `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`]);
    },
  };
  return server;
}

/** Records every event of these names on a socket. */
export function record(socket, ...names) {
  const seen = [];
  const waiters = [];
  for (const name of names) {
    socket.on(name, (data) => {
      const entry = { name, data };
      seen.push(entry);
      for (const w of [...waiters]) if (w.test(entry)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(entry); }
    });
  }
  return {
    seen,
    /** Resolves with the first recorded (or future) event matching `test`; fails after 10 s. */
    waitFor(test) {
      const found = seen.find(test);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { test, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error("timed out waiting for an event")), 10_000).unref();
      });
    },
  };
}
