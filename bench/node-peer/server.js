// The peer: what a team builds today with the ordinary Node.js stack — Express for HTTP,
// Socket.IO v4 for real time, node-postgres for storage — speaking the part of Palaver's
// contract that `palaver bench` drives for P1, P3 and P4:
//
//   POST /api/v1/auth/signup {email, password, displayName} → {user: {id}, accessToken}
//   POST /api/v1/conversations/direct {userId}              → {id}
//   GET  /readyz
//   Socket.IO with auth.token:
//     message:send {conversationId, clientMsgId, type: "text", text} → ack {ok, message}
//       (stored in a transaction with the conversation's next seq, idempotent on clientMsgId,
//       then `message:new {message}` to the other members' sockets)
//     sync:request {cursor?, limit?} → {ok, events: [{type: "message:new", data: {message}}],
//       cursor, hasMore} (without a cursor: an empty page and the current position)
//
// Written the way such servers usually are (a pool, a transaction per send, rooms per user),
// not tuned for the benchmark. Settings: PORT (3900), DATABASE_URL
// (postgres://postgres@127.0.0.1:5432/palaver_node_peer); the schema is dropped and made
// afresh at start.
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const { promisify } = require('node:util');
const express = require('express');
const jwt = require('jsonwebtoken');
const { Pool } = require('pg');
const { Server } = require('socket.io');

const PORT = Number(process.env.PORT || 3900);
const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/palaver_node_peer';
const SECRET = crypto.randomBytes(32);
const scrypt = promisify(crypto.scrypt);

const pool = new Pool({ connectionString: DATABASE_URL, max: 20 });

const SCHEMA = `
DROP TABLE IF EXISTS messages, members, conversations, users;
CREATE TABLE users (
  id uuid PRIMARY KEY,
  email text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  display_name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE conversations (
  id uuid PRIMARY KEY,
  kind text NOT NULL,
  last_seq bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE members (
  conversation_id uuid NOT NULL REFERENCES conversations(id),
  user_id uuid NOT NULL REFERENCES users(id),
  PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members(user_id);
CREATE TABLE messages (
  id bigserial PRIMARY KEY,
  uid uuid NOT NULL,
  conversation_id uuid NOT NULL REFERENCES conversations(id),
  seq bigint NOT NULL,
  sender_id uuid NOT NULL REFERENCES users(id),
  client_msg_id text NOT NULL,
  type text NOT NULL,
  text text,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (conversation_id, seq),
  UNIQUE (sender_id, client_msg_id)
);
CREATE INDEX messages_conversation_id ON messages(conversation_id, id);
`;

function problem(res, status, code, message) {
  res.status(status).type('application/problem+json').send({ type: 'about:blank', title: message, status, code });
}

function auth(req, res, next) {
  const header = req.get('authorization') || '';
  try {
    req.userId = jwt.verify(header.replace(/^Bearer /, ''), SECRET).sub;
    next();
  } catch {
    problem(res, 401, 'unauthorized', 'a valid access token is required');
  }
}

function view(row) {
  return {
    id: row.uid,
    conversationId: row.conversation_id,
    seq: Number(row.seq),
    senderId: row.sender_id,
    clientMsgId: row.client_msg_id,
    type: row.type,
    text: row.text,
    createdAt: row.created_at,
  };
}

const app = express();
app.use(express.json({ limit: '1mb' }));

app.get('/readyz', (_req, res) => res.send({ status: 'ready' }));

app.post('/api/v1/auth/signup', async (req, res) => {
  const { email, password, displayName } = req.body || {};
  if (typeof email !== 'string' || typeof password !== 'string' || password.length < 8) {
    return problem(res, 422, 'validation_failed', 'email and a password of 8+ characters');
  }
  const salt = crypto.randomBytes(16);
  const hash = await scrypt(password, salt, 32);
  const id = crypto.randomUUID();
  try {
    await pool.query('INSERT INTO users (id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)', [
      id, email.toLowerCase(), `${salt.toString('hex')}:${hash.toString('hex')}`, displayName || email,
    ]);
  } catch (e) {
    if (e.code === '23505') return problem(res, 409, 'conflict', 'that email is taken');
    throw e;
  }
  const accessToken = jwt.sign({ sub: id }, SECRET, { expiresIn: '1h' });
  res.status(201).send({ user: { id, email, displayName }, accessToken });
});

app.post('/api/v1/conversations/direct', auth, async (req, res) => {
  const other = req.body && req.body.userId;
  if (typeof other !== 'string') return problem(res, 422, 'validation_failed', 'userId is required');
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const found = await client.query(
      `SELECT c.id FROM conversations c
         JOIN members a ON a.conversation_id = c.id AND a.user_id = $1
         JOIN members b ON b.conversation_id = c.id AND b.user_id = $2
        WHERE c.kind = 'direct' LIMIT 1`,
      [req.userId, other],
    );
    let id = found.rows[0] && found.rows[0].id;
    let status = 200;
    if (!id) {
      id = crypto.randomUUID();
      status = 201;
      await client.query("INSERT INTO conversations (id, kind) VALUES ($1, 'direct')", [id]);
      await client.query('INSERT INTO members (conversation_id, user_id) VALUES ($1, $2), ($1, $3)', [id, req.userId, other]);
    }
    await client.query('COMMIT');
    res.status(status).send({ id, kind: 'direct' });
  } catch (e) {
    await client.query('ROLLBACK');
    if (e.code === '23503') return problem(res, 404, 'not_found', 'no such user');
    throw e;
  } finally {
    client.release();
  }
});

app.use((err, _req, res, _next) => {
  console.error(err);
  problem(res, 500, 'internal', 'internal error');
});

const server = http.createServer(app);
const io = new Server(server, { serveClient: false, cors: { origin: false } });

io.use((socket, next) => {
  try {
    socket.data.userId = jwt.verify((socket.handshake.auth || {}).token || '', SECRET).sub;
    next();
  } catch {
    const err = new Error('unauthorized');
    err.data = { code: 'unauthorized' };
    next(err);
  }
});

async function send(userId, input) {
  const { conversationId, clientMsgId, type, text } = input || {};
  if (typeof conversationId !== 'string' || typeof clientMsgId !== 'string' || type !== 'text' || typeof text !== 'string') {
    return { ok: false, error: { code: 'validation_failed', message: 'conversationId, clientMsgId, type text and text' } };
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const member = await client.query('SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2', [conversationId, userId]);
    if (member.rowCount === 0) {
      await client.query('ROLLBACK');
      return { ok: false, error: { code: 'not_found', message: 'no such conversation' } };
    }
    const existing = await client.query('SELECT * FROM messages WHERE sender_id = $1 AND client_msg_id = $2', [userId, clientMsgId]);
    if (existing.rowCount > 0) {
      await client.query('ROLLBACK');
      return { ok: true, message: view(existing.rows[0]), duplicate: true };
    }
    const seq = await client.query('UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq', [conversationId]);
    const inserted = await client.query(
      `INSERT INTO messages (uid, conversation_id, seq, sender_id, client_msg_id, type, text)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
      [crypto.randomUUID(), conversationId, seq.rows[0].last_seq, userId, clientMsgId, type, text],
    );
    const others = await client.query('SELECT user_id FROM members WHERE conversation_id = $1 AND user_id <> $2', [conversationId, userId]);
    await client.query('COMMIT');
    const message = view(inserted.rows[0]);
    for (const row of others.rows) io.to(`user:${row.user_id}`).emit('message:new', { message });
    return { ok: true, message };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    console.error(e);
    return { ok: false, error: { code: 'internal', message: 'internal error' } };
  } finally {
    client.release();
  }
}

async function sync(userId, input) {
  const { cursor, limit } = input || {};
  if (cursor === undefined || cursor === null) {
    const last = await pool.query('SELECT coalesce(max(id), 0) AS id FROM messages');
    return { ok: true, events: [], cursor: String(last.rows[0].id), hasMore: false };
  }
  const after = Number(cursor);
  const n = Math.min(Math.max(Number(limit) || 500, 1), 1000);
  if (!Number.isSafeInteger(after) || after < 0) {
    return { ok: false, error: { code: 'invalid_cursor', message: 'cursor is not one of ours' } };
  }
  const rows = await pool.query(
    `SELECT m.* FROM messages m
       JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = $1
      WHERE m.id > $2 ORDER BY m.id LIMIT $3`,
    [userId, after, n + 1],
  );
  const page = rows.rows.slice(0, n);
  return {
    ok: true,
    events: page.map((r) => ({ type: 'message:new', data: { message: view(r) } })),
    cursor: String(page.length ? page[page.length - 1].id : after),
    hasMore: rows.rows.length > n,
  };
}

io.on('connection', (socket) => {
  const userId = socket.data.userId;
  socket.join(`user:${userId}`);
  socket.on('message:send', async (input, ack) => {
    const reply = await send(userId, input);
    if (typeof ack === 'function') ack(reply);
  });
  socket.on('sync:request', async (input, ack) => {
    try {
      const reply = await sync(userId, input);
      if (typeof ack === 'function') ack(reply);
    } catch (e) {
      console.error(e);
      if (typeof ack === 'function') ack({ ok: false, error: { code: 'internal', message: 'internal error' } });
    }
  });
});

(async () => {
  await pool.query(SCHEMA);
  server.listen(PORT, '127.0.0.1', () => console.log(`node peer listening on 127.0.0.1:${PORT}`));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
