// Notifications with the official client (SPEC §4 "Notifications", §5 `notification`,
// `notificationsRead`, `sync`): pushed to the main server and to `/notifications` of the
// namespace server, read state across devices, to everyone, sync after being offline, bad input.

import assert from "node:assert/strict";
import { test } from "node:test";
import { io } from "socket.io-client";

import {
  NAMESPACES_PATH,
  TIMESTAMP,
  UUID_V7,
  WAIT_MS,
  api,
  apiOk,
  login,
  registerUser,
  restSend,
  useServer,
} from "../helpers.mjs";

const fx = useServer();

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

/** `POST /api/notifications` as the admin, or as the holder of `token`. */
async function notify(body, token) {
  token ??= (await theAdmin()).token;
  return api(fx.server, "POST", "/api/notifications", { token, body });
}

async function notifyOk(body) {
  const res = await notify(body);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

function list(user, query = "") {
  return apiOk(fx.server, "GET", `/api/notifications${query}`, { token: user.token });
}

/** A `/notifications` socket of the namespace server for `token`, connected and counted. */
async function notificationsSocket(token, label, sessionSockets) {
  const socket = io(`${fx.server.url}/notifications`, {
    path: NAMESPACES_PATH,
    auth: { token },
    forceNew: true,
    reconnection: false,
  });
  const probe = fx.socket({ label, socket });
  await probe.connected();
  // Nothing is emitted on `/notifications` at connection: wait until the server counts it.
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const { sessions } = await apiOk(fx.server, "GET", "/api/sessions", { token });
    if (sessions.find((s) => s.current)?.connections === sessionSockets) return probe;
    assert.ok(Date.now() < deadline, `${label} is not counted: ${JSON.stringify(sessions)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test("a notification is pushed to the main socket and /notifications, then listed as unread", async () => {
  const bob = await person("Bob");
  const main = await fx.connect({ label: "bob main", token: bob.token });
  const old = await notificationsSocket(bob.token, "bob /notifications", 2);

  const sent = await notifyOk({
    userId: bob.id,
    title: "Invoice ready",
    body: "November",
    kind: "billing",
    data: { invoiceId: 42 },
  });
  assert.deepEqual(sent, { count: 1 });
  const { notification } = await main.next("notification");
  assert.deepEqual(await old.next("notification"), { notification });
  assert.deepEqual(
    Object.keys(notification).sort(),
    ["body", "createdAt", "data", "id", "kind", "readAt", "title", "userId"],
  );
  assert.match(notification.id, UUID_V7);
  assert.match(notification.createdAt, TIMESTAMP);
  assert.equal(notification.userId, bob.id);
  assert.equal(notification.kind, "billing");
  assert.deepEqual(notification.data, { invoiceId: 42 });
  assert.equal(notification.readAt, null);

  assert.deepEqual(await list(bob), { notifications: [notification], unreadCount: 1 });
  await main.barrier();
  await old.barrier();
  assert.equal(main.all("notification").length, 1);
  assert.equal(old.all("notification").length, 1);
});

test("to everyone: the count is the active users, each connected socket gets exactly one", async () => {
  const users = await Promise.all(["Ann", "Ben", "Cid"].map((n) => person(n)));
  const gone = await person("Gone");
  const admin = await theAdmin();
  await apiOk(fx.server, "PATCH", `/api/users/${gone.id}`, {
    token: admin.token,
    body: { isActive: false },
  });
  const { users: everyone } = await apiOk(fx.server, "GET", "/api/users?limit=100", {
    token: admin.token,
  });
  const active = everyone.filter((u) => u.isActive).length;
  const sockets = await Promise.all(
    users.map((u, i) => fx.connect({ label: `user ${i}`, token: u.token })),
  );
  sockets.push(await notificationsSocket(users[0].token, "Ann /notifications", 2));

  const sent = await notifyOk({ all: true, title: "Maintenance", body: "Tonight" });
  assert.deepEqual(sent, { count: active });
  for (const socket of sockets) {
    await socket.barrier();
    assert.equal(socket.all("notification").length, 1, socket.label);
  }
  const res = await api(fx.server, "POST", "/api/auth/login", {
    body: { email: gone.email, password: gone.password },
  });
  assert.equal(res.status, 403, "a deactivated user cannot sign in to read it anyway");
});

test("reading one tells the other device {ids}; read-all tells it {all:true}", async () => {
  const dana = await person("Dana");
  const laptop = await login(fx.server, dana);
  const other = await fx.connect({ label: "dana laptop", token: laptop.token });
  const otherOld = await notificationsSocket(laptop.token, "dana laptop /notifications", 2);
  for (const title of ["one", "two", "three"]) {
    await notifyOk({ userId: dana.id, title, body: "b" });
  }
  const { notifications, unreadCount } = await list(dana);
  assert.deepEqual(
    notifications.map((n) => n.title),
    ["three", "two", "one"],
  );
  assert.equal(unreadCount, 3);

  const id = notifications[2].id;
  const read = await apiOk(fx.server, "POST", `/api/notifications/${id}/read`, {
    token: dana.token,
    body: {},
  });
  assert.deepEqual(read, { ok: true });
  assert.deepEqual(await other.next("notificationsRead"), { ids: [id] });
  assert.deepEqual(await otherOld.next("notificationsRead"), { ids: [id] });
  assert.deepEqual(
    (await list(dana, "?unread=true")).notifications.map((n) => n.title),
    ["three", "two"],
  );

  const all = await apiOk(fx.server, "POST", "/api/notifications/read-all", {
    token: dana.token,
    body: {},
  });
  assert.deepEqual(all, { ok: true, count: 2 });
  assert.deepEqual(await other.next("notificationsRead"), { all: true });
  assert.deepEqual(await otherOld.next("notificationsRead"), { all: true });
  assert.equal((await list(dana)).unreadCount, 0);

  const eve = await person("Eve");
  const res = await api(fx.server, "POST", `/api/notifications/${id}/read`, {
    token: eve.token,
    body: {},
  });
  assert.equal(res.status, 404, "another user's notification does not exist for Eve");
});

test("sync after being offline answers the notifications created since the message", async () => {
  const [fay, gil] = await Promise.all([
    person("Fay"),
    person("Gil"),
  ]);
  await notifyOk({ userId: gil.id, title: "before", body: "b" });
  const seen = (await restSend(fx.server, fay, gil, "seen")).message;
  await notifyOk({ userId: gil.id, title: "missed", body: "b" });
  const missed = (await restSend(fx.server, fay, gil, "missed")).message;

  const socket = await fx.connect({ label: "gil", token: gil.token });
  const sync = await socket.ack("sync", { since: seen.id });
  assert.equal(sync.ok, true, JSON.stringify(sync));
  assert.deepEqual(sync.messages, [missed]);
  assert.equal(sync.hasMore, false);
  assert.deepEqual(
    sync.notifications.map((n) => n.title),
    ["missed"],
  );
  assert.equal(sync.hasMoreNotifications, false);
  const rest = await apiOk(fx.server, "GET", `/api/sync?since=${seen.id}`, { token: gil.token });
  const { ok: _ok, ...withoutOk } = sync;
  assert.deepEqual(rest, withoutOk);
});

test("bad notifications are refused: 400 with the field, 403 for a non-admin, 404 for nobody", async () => {
  const hal = await person("Hal");
  const valid = { userId: hal.id, title: "t", body: "b" };
  const cases = [
    [{ ...valid, title: undefined }, "title"],
    [{ ...valid, body: "" }, "body"],
    [{ ...valid, title: "t".repeat(201) }, "title"],
    [{ ...valid, body: "b".repeat(4001) }, "body"],
    [{ ...valid, data: [1] }, "data"],
    [{ ...valid, kind: "two words" }, "kind"],
  ];
  for (const [body, field] of cases) {
    const res = await notify(body);
    assert.equal(res.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${res.status}`);
    assert.equal(res.body.error.code, "validation_failed");
    assert.equal(typeof res.body.error.fields[field], "string", JSON.stringify(res.body));
  }
  const wrongType = await notify({ ...valid, title: 5 });
  assert.equal(wrongType.status, 400);
  assert.equal(wrongType.body.error.code, "invalid_json");

  const forbidden = await notify(valid, hal.token);
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.body.error.code, "forbidden");
  const nobody = await notify({ ...valid, userId: "0190a000-0000-7000-8000-000000000000" });
  assert.equal(nobody.status, 404);
  assert.equal(nobody.body.error.code, "user_not_found");
  assert.deepEqual(await list(hal), { notifications: [], unreadCount: 0 });
});
