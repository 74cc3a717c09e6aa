// The namespace server for older clients (SPEC §5 "Two servers on one port", README "Older
// clients: the namespace server"): `io(url + "/messenger", {path: "/api/socket-namespaces",
// auth: {token}})`, three namespaces multiplexed over one connection, each with the events of its
// topic; force_logout on every one of them.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Manager, io } from "socket.io-client";

import {
  NAMESPACES_PATH,
  WAIT_MS,
  api,
  apiOk,
  assertAckError,
  assertAckOk,
  registerUser,
  useServer,
} from "../helpers.mjs";

const fx = useServer({ PRESENCE_INTERVAL: "200ms" });
const NAMESPACES = ["/auth", "/messenger", "/notifications"];

/** The admin: the first user of the database, so registered before anyone else. */
let adminPromise;
function theAdmin() {
  adminPromise ??= registerUser(fx.server, "Admin");
  return adminPromise;
}

/** Registers a user (after the admin). */
async function person(name) {
  await theAdmin();
  return registerUser(fx.server, name);
}

/**
 * Polls `GET /api/sessions` until the server counts `count` sockets for the session of `token`:
 * a namespace socket is counted when the server has put it in its user's rooms, and
 * `/notifications` emits nothing on connection that a client could wait for.
 */
async function counted(token, count) {
  const deadline = Date.now() + WAIT_MS;
  let sessions;
  while (Date.now() < deadline) {
    sessions = (await apiOk(fx.server, "GET", "/api/sessions", { token })).sessions;
    if (sessions.find((s) => s.current)?.connections === count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`the server does not count ${count} sockets: ${JSON.stringify(sessions)}`);
}

/**
 * One device of `user` on the namespace server, the way an older client connects: one Manager
 * (one connection) and a socket per namespace. Answers `{"/auth": probe, …}` once all three are
 * connected and counted (`also` more sockets of the same session already are).
 */
async function namespaceSockets(user, label, also = 0) {
  const manager = new Manager(fx.server.url, { path: NAMESPACES_PATH, reconnection: false });
  const probes = Object.fromEntries(
    NAMESPACES.map((ns) => [
      ns,
      fx.socket({ label: `${label} ${ns}`, socket: manager.socket(ns, { auth: { token: user.token } }) }),
    ]),
  );
  await Promise.all(Object.values(probes).map((p) => p.connected()));
  await counted(user.token, NAMESPACES.length + also);
  return probes;
}

/** A connection refused by the namespace server: the `connect_error` message. */
async function refusal(ns, auth) {
  const socket = io(`${fx.server.url}${ns}`, {
    path: NAMESPACES_PATH,
    forceNew: true,
    reconnection: false,
    ...(auth ? { auth } : {}),
  });
  const probe = fx.socket({ label: `refused ${ns}`, socket });
  const error = await probe.next("connect_error");
  assert.equal(socket.connected, false);
  return error.message;
}

test("io(url + namespace, {path, auth}) gives three sockets on one Manager, each greeted on its topic", async () => {
  const alice = await person("Alice");
  const options = { path: NAMESPACES_PATH, auth: { token: alice.token }, reconnection: false };
  // The only sockets of this file made through io()'s Manager cache, as an app would.
  const account = fx.socket({ label: "alice /auth", socket: io(`${fx.server.url}/auth`, options) });
  const messenger = fx.socket({
    label: "alice /messenger",
    socket: io(`${fx.server.url}/messenger`, options),
  });
  const notifications = fx.socket({
    label: "alice /notifications",
    socket: io(`${fx.server.url}/notifications`, options),
  });
  assert.equal(account.socket.io, messenger.socket.io, "one Manager for /auth and /messenger");
  assert.equal(messenger.socket.io, notifications.socket.io, "one Manager for all three");
  await Promise.all([account, messenger, notifications].map((p) => p.connected()));

  const welcome = await account.next("authenticated");
  assert.equal(welcome.user.id, alice.id);
  assert.equal(welcome.sessionId, alice.session.id);
  const online = await messenger.next("getOnlineUsers");
  assert.ok(
    online.users.some((u) => u.userId === alice.id),
    `alice is online: ${JSON.stringify(online)}`,
  );
  await counted(alice.token, 3);
  for (const probe of [account, messenger, notifications]) await probe.barrier();
  assert.deepEqual(account.all("getOnlineUsers"), [], account.summary());
  assert.deepEqual(messenger.all("authenticated"), [], messenger.summary());
  assert.deepEqual(notifications.all("authenticated"), [], notifications.summary());
  assert.deepEqual(notifications.all("getOnlineUsers"), [], notifications.summary());
});

test("every namespace refuses a missing or bad token with connect_error", async () => {
  for (const ns of NAMESPACES) {
    assert.equal(await refusal(ns), "invalid_token", `${ns} without a token`);
    assert.equal(await refusal(ns, { token: "not-a-token" }), "invalid_token", `${ns} bad token`);
  }
});

test("a message arrives on main and /messenger, a notification on main and /notifications, each once", async () => {
  const [alice, bob] = await Promise.all([
    person("Alice"),
    person("Bob"),
  ]);
  const alicePhone = await fx.connect({ label: "alice", token: alice.token });
  const bobMain = await fx.connect({ label: "bob main", token: bob.token });
  const bobOld = await namespaceSockets(bob, "bob", 1);

  const sent = await alicePhone.ack("sendMessage", { to: bob.id, content: "hello old client" });
  assertAckOk(sent, "sendMessage");
  const admin = await theAdmin();
  await apiOk(
    fx.server,
    "POST",
    "/api/notifications",
    { token: admin.token, body: { userId: bob.id, title: "Hi", body: "for Bob" } },
    201,
  );
  for (const probe of [bobMain, ...Object.values(bobOld)]) await probe.barrier();

  const count = (probe, event) => probe.all(event).length;
  assert.deepEqual(
    [bobMain, bobOld["/auth"], bobOld["/messenger"], bobOld["/notifications"]].map((p) => [
      count(p, "newMessage"),
      count(p, "notification"),
    ]),
    [
      [1, 1],
      [0, 0],
      [1, 0],
      [0, 1],
    ],
    "[newMessage, notification] on main, /auth, /messenger, /notifications",
  );
  assert.equal(bobOld["/messenger"].all("newMessage")[0].message.id, sent.message.id);
  assert.equal(bobOld["/notifications"].all("notification")[0].notification.title, "Hi");
});

test("sendMessage, typing and markRead work from /messenger with acks; other topics get unknown_event", async () => {
  const [alice, bob] = await Promise.all([
    person("Alice"),
    person("Bob"),
  ]);
  const aliceOld = await namespaceSockets(alice, "alice");
  const bobMain = await fx.connect({ label: "bob main", token: bob.token });
  const messenger = aliceOld["/messenger"];

  const sent = await messenger.ack("sendMessage", { to: bob.id, content: "from /messenger" });
  assertAckOk(sent, "sendMessage");
  assert.equal(sent.delivered, true);
  assert.equal((await bobMain.next("newMessage")).message.id, sent.message.id);
  assert.equal((await messenger.next("messageSent")).message.id, sent.message.id);

  assertAckOk(await messenger.ack("typing", { to: bob.id, isTyping: true }), "typing");
  assert.deepEqual(await bobMain.next("userTyping"), {
    userId: alice.id,
    isTyping: true,
    conversationId: sent.message.conversationId,
  });

  const reply = await bobMain.ack("sendMessage", { to: alice.id, content: "answer" });
  assertAckOk(reply);
  await messenger.next("newMessage");
  const read = await messenger.ack("markRead", { userId: bob.id, upTo: reply.message.id });
  assertAckOk(read, "markRead");
  assert.equal(read.count, 1);
  assert.equal((await bobMain.next("messagesRead")).by, alice.id);

  for (const ns of NAMESPACES) {
    assertAckOk(await aliceOld[ns].ack("ping", { ts: 7 }), `ping on ${ns}`);
    const sync = await aliceOld[ns].ack("sync", { since: sent.message.id });
    assertAckOk(sync, `sync on ${ns}`);
    assert.deepEqual(
      sync.messages.map((m) => m.id),
      [reply.message.id],
      `sync on ${ns}`,
    );
  }
  const wrong = await aliceOld["/notifications"].ack("sendMessage", { to: bob.id, content: "no" });
  assertAckError(wrong, "unknown_event", "sendMessage on /notifications");
  const alsoWrong = await aliceOld["/auth"].ack("typing", { to: bob.id, isTyping: true });
  assertAckError(alsoWrong, "unknown_event", "typing on /auth");
});

test("logout sends force_logout to the main socket and all three namespace sockets", async () => {
  const carol = await person("Carol");
  const main = await fx.connect({ label: "carol main", token: carol.token });
  const old = await namespaceSockets(carol, "carol", 1);

  const bye = await apiOk(fx.server, "POST", "/api/auth/logout", { token: carol.token, body: {} });
  assert.equal(bye.socketsDisconnected, 4, JSON.stringify(bye));
  for (const probe of [main, ...Object.values(old)]) {
    assert.deepEqual(await probe.next("force_logout"), { reason: "logout" }, probe.label);
    assert.equal(await probe.next("disconnect"), "io server disconnect", probe.label);
  }
  const res = await api(fx.server, "GET", "/api/auth/me", { token: carol.token });
  assert.equal(res.status, 401);
});
