// The Node.js Socket.IO 4.8 server CraftCode Realtime is measured against (bench/run.sh runs
// both in the same run). The same minimal semantics as ours, without a database:
// - path /api/socket; the handshake's auth.token is an HS256 JWT signed with JWT_SECRET
//   (claims sub, sid); the socket joins user_<sub> and session_<sid> and gets `authenticated`;
//   a bad token is refused with connect_error `invalid_token` / `token_expired`;
// - `sendMessage {to, content, clientId}` -> `newMessage {message}` to user_<to> (asking for an
//   ack; the first ack sends `messageDelivered` to the sender), `messageSent {message}` to
//   user_<sub>, and the ack `{ok: true, message, delivered}`;
// - POST /api/messages/send/:id (Authorization: Bearer <same JWT>) does the same, answering
//   201 {message, delivered, realtime: true};
// - POST /api/socket-test {action: "broadcast", message} (any bearer) emits `testMessage` to
//   every socket; GET /healthz answers {status: "ok"};
// - POST /api/conversations {title, memberIds} (the same JWT) keeps a group in memory and answers
//   201 {conversation: {id}}; a member's sockets join its room group_<id> when they connect (the
//   bench makes the groups first), and `sendMessage {conversationId, content, clientId}` from a
//   member emits `newMessage` to that room except the sender's sockets, `messageSent` to them.
// Environment: JWT_SECRET (required), HOST (127.0.0.1), PORT (3000).
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const jwt = require("jsonwebtoken");
const { Server } = require("socket.io");

const secret = process.env.JWT_SECRET;
if (!secret || secret.length < 32) {
  console.error("JWT_SECRET must be set (at least 32 bytes), the same as the Rust server's");
  process.exit(1);
}
const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || 3000);
const MAX_BODY = 64 * 1024;
const MAX_CONTENT = 4000;
const DELIVERY_ACK_TIMEOUT_MS = 30_000;

/** The user a token belongs to, or throws with the connect_error reason. */
function identify(token) {
  try {
    const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
    if (typeof claims.sub !== "string" || typeof claims.sid !== "string") {
      throw new Error("claims");
    }
    return { id: claims.sub, sessionId: claims.sid, name: claims.name, exp: claims.exp };
  } catch (e) {
    throw new Error(e && e.name === "TokenExpiredError" ? "token_expired" : "invalid_token");
  }
}

function invalid(message) {
  return { status: 400, body: { error: { code: "validation_failed", message } } };
}

/** Groups by id (their member ids), and each user's groups. */
const groups = new Map();
const groupsOf = new Map();

function createGroup(owner, body) {
  const ids = Array.isArray(body?.memberIds) ? body.memberIds.filter((m) => typeof m === "string") : [];
  if (typeof body?.title !== "string" || ids.length === 0) return null;
  const id = crypto.randomUUID();
  const members = new Set([owner, ...ids]);
  groups.set(id, members);
  for (const member of members) {
    if (!groupsOf.has(member)) groupsOf.set(member, []);
    groupsOf.get(member).push(id);
  }
  return { id, kind: "group", title: body.title, memberCount: members.size };
}

/** A message to a group the sender is a member of, to the room of its members' sockets. */
function sendToGroup(from, payload) {
  const members = groups.get(payload.conversationId);
  if (!members || !members.has(from)) {
    return { error: { status: 404, body: { error: { code: "conversation_not_found", message: "no such conversation" } } } };
  }
  const text = typeof payload.content === "string" ? payload.content.trim() : "";
  if (text.length === 0 || text.length > MAX_CONTENT) {
    return { error: invalid("content must be 1 to 4000 characters") };
  }
  const message = {
    id: crypto.randomUUID(),
    conversationId: payload.conversationId,
    kind: "text",
    from,
    to: null,
    content: text,
    clientId: typeof payload.clientId === "string" && payload.clientId.length > 0 ? payload.clientId : null,
    createdAt: new Date().toISOString(),
  };
  io.to(`group_${payload.conversationId}`).except(`user_${from}`).emit("newMessage", { message });
  io.to(`user_${from}`).emit("messageSent", { message });
  return { message, delivered: members.size > 1 };
}

/** Stores nothing: builds the message, pushes it, and answers what the ack / 201 carries. */
function send(from, payload) {
  if (!payload || typeof payload !== "object") return { error: invalid("expected an object") };
  if (typeof payload.conversationId === "string") return sendToGroup(from, payload);
  const { to, content, clientId } = payload;
  if (typeof to !== "string" || to.length === 0) return { error: invalid("to is required") };
  const text = typeof content === "string" ? content.trim() : "";
  if (text.length === 0 || text.length > MAX_CONTENT) {
    return { error: invalid("content must be 1 to 4000 characters") };
  }
  const message = {
    id: crypto.randomUUID(),
    from,
    to,
    content: text,
    clientId: typeof clientId === "string" && clientId.length > 0 ? clientId : null,
    createdAt: new Date().toISOString(),
    deliveredAt: null,
    readAt: null,
  };
  const room = `user_${to}`;
  const recipients = io.of("/").adapter.rooms.get(room);
  const delivered = recipients !== undefined && recipients.size > 0;
  io.to(room)
    .timeout(DELIVERY_ACK_TIMEOUT_MS)
    .emit("newMessage", { message }, (_err, answers) => {
      if (answers && answers.length > 0) {
        const deliveredAt = new Date().toISOString();
        io.to(`user_${from}`).emit("messageDelivered", { messageId: message.id, to, deliveredAt });
      }
    });
  io.to(`user_${from}`).emit("messageSent", { message });
  return { message, delivered };
}

const httpServer = http.createServer((req, res) => {
  const reply = (status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    });
    res.end(text);
  };
  const url = req.url || "/";
  if (req.method === "GET" && url === "/healthz") return reply(200, { status: "ok" });
  const sendMatch = /^\/api\/messages\/send\/([^/?]+)$/.exec(url);
  const isTest = url === "/api/socket-test";
  const isGroup = url === "/api/conversations";
  if (req.method !== "POST" || (!sendMatch && !isTest && !isGroup)) {
    return reply(404, { error: { code: "not_found", message: "no such route" } });
  }
  const auth = req.headers.authorization || "";
  const token = auth.startsWith("Bearer ") ? auth.slice(7) : "";
  let user = null;
  if (sendMatch || isGroup) {
    try {
      user = identify(token);
    } catch (e) {
      return reply(401, { error: { code: e.message, message: "not signed in" } });
    }
  } else if (!token) {
    return reply(401, { error: { code: "unauthorized", message: "not signed in" } });
  }
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      reply(413, { error: { code: "payload_too_large", message: "body over 64 KiB" } });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (size > MAX_BODY) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return reply(400, { error: { code: "invalid_json", message: "malformed JSON" } });
    }
    if (isGroup) {
      const conversation = createGroup(user.id, body);
      if (!conversation) return reply(400, invalid("title and memberIds are required").body);
      return reply(201, { conversation });
    }
    if (isTest) {
      if (!body || body.action !== "broadcast") {
        return reply(400, { error: { code: "invalid_action", message: "only broadcast here" } });
      }
      const message = typeof body.message === "string" ? body.message : "Test message";
      const recipients = io.of("/").sockets.size;
      io.emit("testMessage", { message, action: "broadcast", sentAt: new Date().toISOString() });
      return reply(200, { ok: true, action: "broadcast", recipients });
    }
    const outcome = send(user.id, { ...body, to: decodeURIComponent(sendMatch[1]) });
    if (outcome.error) return reply(outcome.error.status, outcome.error.body);
    return reply(201, { message: outcome.message, delivered: outcome.delivered, realtime: true });
  });
});

const io = new Server(httpServer, {
  path: "/api/socket",
  serveClient: false,
  maxHttpBufferSize: MAX_BODY,
});

io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  try {
    socket.data.user = identify(typeof auth.token === "string" ? auth.token : "");
    next();
  } catch (e) {
    next(new Error(e.message));
  }
});

io.on("connection", (socket) => {
  const user = socket.data.user;
  socket.join([
    `user_${user.id}`,
    `session_${user.sessionId}`,
    ...(groupsOf.get(user.id) ?? []).map((id) => `group_${id}`),
  ]);
  socket.emit("authenticated", {
    user: { id: user.id, name: user.name },
    sessionId: user.sessionId,
    expiresAt: user.exp ? new Date(user.exp * 1000).toISOString() : null,
  });
  socket.on("sendMessage", (payload, ack) => {
    const outcome = send(user.id, payload);
    if (typeof ack !== "function") return;
    if (outcome.error) {
      ack({ ok: false, error: outcome.error.body.error });
    } else {
      ack({ ok: true, message: outcome.message, delivered: outcome.delivered });
    }
  });
});

httpServer.listen(port, host, () => {
  console.error(`node reference (socket.io ${require("socket.io/package.json").version}) on http://${host}:${port}`);
});

const stop = () => {
  io.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
