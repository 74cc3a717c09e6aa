// Cluster mode, everything working: three nodes on one PostgreSQL database and one Redis. A user
// whose devices sit on different nodes sees exactly what a single node would show them.

import assert from "node:assert/strict";
import { test } from "node:test";

import { api, apiOk, login, registerUser, restSend } from "../helpers.mjs";
import { eventually, useCluster } from "./cluster.mjs";

const fx = useCluster({ MAX_CONNECTIONS_PER_USER: "2" });
const node = (i) => fx.nodes[i - 1];
let admin;

test("every node reports the redis adapter and the three live nodes", async () => {
  admin = await registerUser(node(1), "Admin");
  for (const n of fx.nodes) {
    const report = await apiOk(n, "GET", "/api/socket-test", { token: admin.token });
    assert.equal(report.adapter.kind, "redis");
    assert.equal(report.adapter.nodes, 3, JSON.stringify(report.adapter));
    assert.ok(report.adapter.nodeIds.includes(report.node), "the node lists itself");
    assert.equal(report.checks.find((c) => c.name === "adapter").ok, true);
    assert.equal(report.ok, true, JSON.stringify(report.checks));
    const ready = await api(n, "GET", "/readyz");
    assert.equal(ready.status, 200);
    assert.equal(ready.body.checks.redis, true);
  }
  const ids = new Set(
    await Promise.all(fx.nodes.map(async (n) => (await apiOk(n, "GET", "/api/socket-test", { token: admin.token })).node)),
  );
  assert.equal(ids.size, 3, "each node has its own id");
  const keys = fx.redis.keys("*");
  assert.ok(keys.length > 0);
  for (const key of keys) assert.ok(key.startsWith(fx.prefix), `${key} is under REDIS_PREFIX`);
});

test("a user with one device on node 1 and one on node 3 gets every event on both", async () => {
  const ada = await registerUser(node(1), "Ada");
  const adaPhone = await login(node(3), ada);
  const bob = await registerUser(node(2), "Bob");
  const laptop = await fx.connect(node(1), { label: "ada@node1", token: ada.token, ackNewMessages: true });
  const phone = await fx.connect(node(3), { label: "ada@node3", token: adaPhone.token });
  const bobs = await fx.connect(node(2), { label: "bob@node2", token: bob.token });

  // Bob (node 2) writes to Ada: both of her devices get it; Bob's ack says she is connected.
  const sent = await bobs.ack("sendMessage", { to: ada.id, content: "hello across nodes" });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  assert.equal(sent.delivered, true);
  for (const device of [laptop, phone]) {
    const { message } = await device.next("newMessage", { where: (p) => p.message.id === sent.message.id });
    assert.equal(message.content, "hello across nodes");
  }
  await bobs.next("messageSent", { where: (p) => p.message.id === sent.message.id });
  // The laptop acknowledged it on node 1: Bob, on node 2, hears that it was delivered.
  const delivered = await bobs.next("messageDelivered", { where: (p) => p.messageId === sent.message.id });
  assert.equal(delivered.to, ada.id);

  // Ada writes from the phone (node 3): the laptop (node 1) gets messageSent too.
  const reply = await phone.ack("sendMessage", { to: bob.id, content: "hi Bob" });
  assert.equal(reply.ok, true);
  await laptop.next("messageSent", { where: (p) => p.message.id === reply.message.id });
  await bobs.next("newMessage", { where: (p) => p.message.id === reply.message.id });

  // An admin on node 2 promotes Ada: each device gets a fresh token for its own session, and the
  // old token is refused on every node at once.
  await apiOk(node(2), "PATCH", `/api/users/${ada.id}`, { token: admin.token, body: { isAdmin: true } });
  const laptopToken = await laptop.next("tokenUpdated");
  const phoneToken = await phone.next("tokenUpdated");
  assert.equal(laptopToken.user.isAdmin, true);
  assert.notEqual(laptopToken.token, phoneToken.token, "one token per session");
  await laptop.next("userStatusChanged");
  await phone.next("userStatusChanged");
  for (const n of fx.nodes) {
    assert.equal((await api(n, "GET", "/api/auth/me", { token: ada.token })).status, 401);
    assert.equal((await api(n, "GET", "/api/auth/me", { token: phoneToken.token })).status, 200);
  }

  // Ada signs out everywhere from node 2: both devices are logged out and disconnected.
  const out = await apiOk(node(2), "POST", "/api/auth/logout", {
    token: laptopToken.token,
    body: { all: true },
  });
  assert.equal(out.socketsDisconnected, 2);
  for (const device of [laptop, phone]) {
    assert.deepEqual(await device.next("force_logout"), { reason: "logout" });
    await device.next("disconnect");
  }
});

test("the online list is the same from every node, and each change is announced once", async () => {
  const watcher = await registerUser(node(3), "Watcher");
  const watch = await fx.connect(node(3), { label: "watcher@node3", token: watcher.token });
  const people = [];
  const sockets = [];
  for (const [i, name] of [[1, "Cleo"], [2, "Dan"], [3, "Eve"]]) {
    const user = await registerUser(node(i), name);
    people.push(user);
    sockets.push(await fx.connect(node(i), { label: `${name}@node${i}`, token: user.token }));
  }
  const expected = [watcher, ...people].map((u) => u.id).sort();
  // Each of Cleo (node 1), Dan (node 2) and Eve (node 3) asks their own node.
  const lists = await eventually("every node lists the same four users", async () => {
    const seen = [];
    for (const socket of sockets) {
      const { users, total } = await socket.ack("getOnlineUsers");
      seen.push({ ids: users.map((u) => u.userId).sort(), total });
    }
    return seen.every((s) => JSON.stringify(s.ids) === JSON.stringify(expected)) && seen;
  });
  for (const list of lists) assert.equal(list.total, expected.length);

  // Cleo's arrival was announced to the watcher once, however many nodes there are: between it
  // and a later change, no second batch names her.
  const cleo = people[0];
  const arrival = await watch.seen("presenceChanged", { where: (p) => p.online.some((u) => u.userId === cleo.id) });
  assert.equal(arrival.online.find((u) => u.userId === cleo.id).name, "Cleo");
  const late = await registerUser(node(1), "Late");
  await fx.connect(node(2), { label: "late@node2", token: late.token });
  await watch.seen("presenceChanged", { where: (p) => p.online.some((u) => u.userId === late.id) });
  const naming = watch.all("presenceChanged").filter((p) => p.online.some((u) => u.userId === cleo.id));
  assert.equal(naming.length, 1, "Cleo was announced once");
});

test("the per-user connection limit holds across nodes", async () => {
  const fay = await registerUser(node(1), "Fay");
  await fx.connect(node(1), { label: "fay@node1", token: fay.token });
  await fx.connect(node(2), { label: "fay@node2", token: (await login(node(2), fay)).token });
  await eventually("node 3 counts both of Fay's sockets", async () => {
    const { users } = await apiOk(node(3), "GET", `/api/users?q=Fay`, { token: admin.token });
    return users.find((u) => u.id === fay.id)?.connections === 2;
  });
  const third = fx.socket(node(3), { label: "fay@node3", token: (await login(node(3), fay)).token });
  await assert.rejects(third.connected(), (err) => err.message === "too_many_connections");
});

test("message and login rate limits are per user across nodes, not per node", async () => {
  const gus = await registerUser(node(1), "Gus");
  const hal = await registerUser(node(2), "Hal");
  // 30 sends at once, split over two nodes: one node alone would let its 15 through (the limit
  // is 20 per second), the cluster refuses the ones beyond the user's shared allowance.
  const sends = Array.from({ length: 30 }, (_, i) =>
    api(node(1 + (i % 2)), "POST", `/api/messages/send/${hal.id}`, {
      token: gus.token,
      body: { content: `burst ${i}` },
    }),
  );
  const statuses = (await Promise.all(sends)).map((r) => r.status);
  assert.ok(statuses.includes(429), `some sends are refused: ${statuses}`);
  assert.ok(statuses.filter((s) => s === 201).length >= 20, `the allowance is used: ${statuses}`);

  // Five failed logins per (IP, email) a minute, counted by the cluster: 3 on node 1, 2 on node 2,
  // and node 3 refuses even the right password.
  const wrong = { email: hal.email, password: "wrong password" };
  for (const n of [1, 1, 1, 2, 2]) {
    assert.equal((await api(node(n), "POST", "/api/auth/login", { body: wrong })).status, 401);
  }
  const limited = await api(node(3), "POST", "/api/auth/login", { body: { email: hal.email, password: hal.password } });
  assert.equal(limited.status, 429);
  assert.equal(limited.body.error.code, "too_many_attempts");
});

test("through nginx: websocket-only clients need no sticky sessions, polling clients use ip_hash", async () => {
  // Round robin spreads websocket-only clients over the nodes; they still reach each other.
  const users = [];
  for (let i = 0; i < 6; i++) users.push(await registerUser(node(1), `Ws${i}`));
  const sockets = [];
  for (const user of users) {
    sockets.push(
      await fx.connect({ url: fx.nginx.roundRobinUrl }, { label: user.name, token: user.token, transports: ["websocket"] }),
    );
  }
  const spread = await fx.socketsPerNode(admin);
  assert.ok(spread.filter((n) => n > 0).length >= 2, `clients sit on several nodes: ${spread}`);
  for (let i = 0; i < users.length; i++) {
    const to = users[(i + 1) % users.length];
    const reply = await sockets[i].ack("sendMessage", { to: to.id, content: `ring ${i}` });
    assert.equal(reply.ok, true);
    await sockets[(i + 1) % users.length].next("newMessage", { where: (p) => p.message.id === reply.message.id });
  }

  // Polling needs every request of a session on one node: ip_hash keeps it there, and the
  // upgrade to websocket goes to the same node.
  const [pia, quinn] = [await registerUser(node(2), "Pia"), await registerUser(node(3), "Quinn")];
  const polling = await fx.connect({ url: fx.nginx.stickyUrl }, { label: "pia (polling)", token: pia.token, transports: ["polling"] });
  const upgrading = await fx.connect({ url: fx.nginx.stickyUrl }, { label: "quinn (upgrading)", token: quinn.token });
  await upgrading.upgraded();
  assert.equal(polling.socket.io.engine.transport.name, "polling");
  const reply = await polling.ack("sendMessage", { to: quinn.id, content: "over long-polling" });
  assert.equal(reply.ok, true);
  await upgrading.next("newMessage", { where: (p) => p.message.id === reply.message.id });
  const back = await restSend(node(1), quinn, pia, "over REST on node 1");
  await polling.next("newMessage", { where: (p) => p.message.id === back.message.id });
});

test("a node stopped cleanly leaves the registry at once and its users go offline", async () => {
  const lea = await registerUser(node(1), "Lea");
  const watcher = await registerUser(node(1), "Mo");
  await fx.connect(node(3), { label: "lea@node3", token: lea.token });
  const watch = await fx.connect(node(1), { label: "mo@node1", token: watcher.token });
  await watch.seen("presenceChanged", { where: (p) => p.online.some((u) => u.userId === lea.id) });

  const exit = await node(3).stop();
  assert.equal(exit.code, 0, "SIGTERM is a clean exit");
  // No heartbeat has to age out: the registry no longer has it as soon as it has exited.
  const report = await apiOk(node(1), "GET", "/api/socket-test", { token: admin.token });
  assert.equal(report.adapter.nodes, 2, JSON.stringify(report.adapter));
  await watch.seen("presenceChanged", { where: (p) => p.offline.includes(lea.id) });
});
