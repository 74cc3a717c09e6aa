// A socket that connects without a token (SPEC §5): accepted but unauthenticated until it sends
// `authenticate` within AUTH_TIMEOUT (1 s here).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assertAckError,
  assertAckOk,
  login,
  registerUser,
  useServer,
} from "../helpers.mjs";

const AUTH_TIMEOUT_MS = 1000;
const fx = useServer({ AUTH_TIMEOUT: "1s" });

test("without a token the socket connects, but every event is refused with unauthenticated", async () => {
  const bob = await registerUser(fx.server, "Bob");
  const socket = await fx.connect({ label: "anonymous" });
  assert.equal(socket.socket.connected, true);

  const attempts = [
    ["sendMessage", { to: bob.id, content: "hello" }],
    ["typing", { to: bob.id, isTyping: true }],
    ["getOnlineUsers", undefined],
    ["markRead", { userId: bob.id, upTo: bob.id }],
    ["sync", { since: null }],
    ["ping", { ts: 1 }],
  ];
  // All at once: the whole exchange must fit in AUTH_TIMEOUT.
  const replies = await Promise.all(attempts.map(([event, payload]) => socket.ack(event, payload)));
  replies.forEach((reply, i) => assertAckError(reply, "unauthenticated", attempts[i][0]));
  for (const _ of attempts) {
    const notice = await socket.next("authError");
    assert.equal(notice.code, "unauthenticated", `authError: ${JSON.stringify(notice)}`);
  }
  assert.equal(socket.all("authenticated").length, 0);
  assert.equal(socket.all("getOnlineUsers").length, 0, "an unauthenticated socket got the online users");
  assert.equal(socket.all("pong").length, 0);
  assert.equal(socket.socket.connected, true, "refused events must not disconnect");
});

test("authenticate with a valid token acks {ok, user, sessionId} and emits authenticated", async () => {
  const carol = await registerUser(fx.server, "Carol");
  const socket = await fx.connect({ label: "carol" });

  const reply = await socket.ack("authenticate", { token: carol.token });
  assertAckOk(reply, "authenticate");
  assert.equal(reply.user.id, carol.id);
  assert.equal(reply.user.email, carol.email);
  assert.equal(reply.sessionId, carol.session.id);

  const welcome = await socket.next("authenticated");
  assert.equal(welcome.user.id, carol.id);
  assert.equal(welcome.sessionId, carol.session.id);
  const online = await socket.next("getOnlineUsers");
  assert.ok(online.users.some((u) => u.userId === carol.id), JSON.stringify(online));

  // Past AUTH_TIMEOUT the authenticated socket is still there and its events work.
  await new Promise((r) => setTimeout(r, AUTH_TIMEOUT_MS + 300));
  assert.equal(socket.socket.connected, true, `disconnected: ${socket.summary()}`);
  assert.equal(socket.all("authError").length, 0, JSON.stringify(socket.all("authError")));
  await socket.barrier();
});

test("authenticate with a bad token gets authError and the socket is disconnected", async () => {
  const socket = await fx.connect({ label: "intruder" });
  const disconnected = socket.next("disconnect");
  const reply = await socket.ack("authenticate", { token: "not-a-jwt" });
  assertAckError(reply, "invalid_token", "authenticate");
  const notice = await socket.next("authError");
  assert.equal(notice.code, "invalid_token");
  assert.equal(typeof notice.message, "string");
  assert.equal(await disconnected, "io server disconnect");
});

test("authenticate with the token of a logged-out session gets authError session_revoked", async () => {
  const dave = await registerUser(fx.server, "Dave");
  const bye = await fetch(`${fx.server.url}/api/auth/logout`, {
    method: "POST",
    headers: { authorization: `Bearer ${dave.token}`, "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(bye.status, 200);
  const socket = await fx.connect({ label: "dave" });
  const disconnected = socket.next("disconnect");
  socket.socket.emit("authenticate", { token: dave.token }); // no ack: the event still answers
  const notice = await socket.next("authError");
  assert.equal(notice.code, "session_revoked");
  assert.equal(await disconnected, "io server disconnect");
});

test("a socket that never authenticates gets authError auth_timeout and is disconnected", async () => {
  const started = Date.now();
  const socket = await fx.connect({ label: "idle" });
  const notice = await socket.next("authError", { ms: AUTH_TIMEOUT_MS + 3000 });
  assert.equal(notice.code, "auth_timeout");
  assert.equal(typeof notice.message, "string");
  assert.equal(await socket.next("disconnect"), "io server disconnect");
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= AUTH_TIMEOUT_MS - 100, `disconnected after only ${elapsed} ms`);
});

test("a token in the query string is ignored", async () => {
  const erin = await registerUser(fx.server, "Erin");
  const socket = await fx.connect({ label: "query", query: { token: erin.token } });
  const reply = await socket.ack("getOnlineUsers");
  assertAckError(reply, "unauthenticated", "getOnlineUsers");
  assert.equal(socket.all("authenticated").length, 0);
});

test("authenticate again re-authenticates the same user, and refuses another user's token", async () => {
  const frank = await registerUser(fx.server, "Frank");
  const gina = await registerUser(fx.server, "Gina");
  const socket = await fx.connect({ label: "frank", token: frank.token });

  const laptop = await login(fx.server, frank);
  const again = await socket.ack("authenticate", { token: laptop.token });
  assertAckOk(again, "re-authenticate");
  assert.equal(again.user.id, frank.id);
  assert.equal(again.sessionId, laptop.session.id);
  const welcome = await socket.next("authenticated");
  assert.equal(welcome.sessionId, laptop.session.id);

  const foreign = await socket.ack("authenticate", { token: gina.token });
  assert.equal(foreign.ok, false, `switching users must be refused: ${JSON.stringify(foreign)}`);
  assert.equal(typeof foreign.error?.code, "string");
  await socket.barrier();
  const online = await socket.ack("getOnlineUsers");
  assertAckOk(online, "getOnlineUsers");
  // The handshake's and the re-authentication's, not a third one for the refused switch.
  assert.equal(socket.all("authenticated").length, 2, "a refused switch must not re-authenticate");
  assert.ok(socket.all("authenticated").every((w) => w.user.id === frank.id));
});
