// Scoped presence (SPEC §5 "Presence") through the package: with more users online than
// PRESENCE_BROADCAST_MAX (2 here) a socket watches only its user's conversation partners and its
// `watchPresence` list, and `client.online` holds exactly those; pages of everybody leave the map
// alone; the watch list survives a refused list and a reconnect.

import assert from "node:assert/strict";
import { test } from "node:test";

import { registerUser, restSend, useServer, WAIT_MS, withTimeout } from "./support.mjs";

const fx = useServer({ PRESENCE_BROADCAST_MAX: "2", PRESENCE_WATCH_MAX: "3" });

/** Two more users online, so that the next socket to authenticate gets scope "watched". */
async function crowd() {
  const users = [await registerUser(fx.server, "Carol"), await registerUser(fx.server, "Dave")];
  const clients = [];
  for (const user of users) clients.push(await fx.client(user));
  return { users, clients };
}

/** Polls `check` (an async condition: a real request each time) until it holds. */
async function until(check, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ids = (users) => users.map((u) => u.userId).sort();

test("a socket of a crowded server watches its partners and its watchPresence list, not strangers", async () => {
  const { users: [carol, dave], clients: [, d] } = await crowd();
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const erin = await registerUser(fx.server, "Erin");
  await restSend(fx.server, erin, alice, "Hi Alice"); // Erin and Alice are partners now
  await fx.client(erin);

  const a = await fx.client(alice);
  /** What the server told Alice's socket (the map is one live object, so it keeps no history). */
  const told = [];
  a.client.socket.on("presenceChanged", (change) => told.push(change));
  await a.next("presence"); // the welcome list
  assert.equal(a.client.scope, "watched");
  // Her partner is in the map: from the welcome, or from a batch after it.
  if (!a.client.isOnline(erin.id)) await a.next("presence", (online) => online.has(erin.id));

  const answer = await a.client.watchPresence([bob.id, carol.id, "0190a6f4-0000-7000-8000-000000000000"]);
  assert.deepEqual(
    [...ids(answer.online), ...answer.offline].sort(),
    [bob.id, carol.id].sort(),
    `an unknown id is left out: ${JSON.stringify(answer)}`,
  );
  assert.ok(answer.offline.includes(bob.id), "Bob is not connected");
  await a.next("presence", (online) => online.has(carol.id));
  assert.equal(a.client.isOnline(dave.id), false);

  const b = await fx.client(bob);
  await a.next("presence", (online) => online.has(bob.id));

  // A page of everybody, asked for without an ack, comes as an event: the map stays as it is.
  const page = new Promise((resolve) => a.client.socket.once("getOnlineUsers", resolve));
  a.client.socket.emit("getOnlineUsers", { limit: 1 });
  const event = await withTimeout(page, "getOnlineUsers page event");
  assert.equal(event.users.length, 1);
  assert.equal("scope" in event, false, JSON.stringify(event));
  assert.deepEqual([...a.client.online.keys()].sort(), [bob.id, carol.id, erin.id].sort(), "only watched users");

  // Pages through the client: everybody, each once; still no stranger in the map.
  const first = await a.client.getOnlineUsers({ limit: 2 });
  assert.equal(first.users.length, 2);
  assert.notEqual(first.nextCursor, null);
  assert.ok(first.total >= 5, `total ${first.total}`);
  const everybody = await a.client.allOnlineUsers();
  const seen = everybody.map((u) => u.userId);
  assert.equal(new Set(seen).size, seen.length, "nobody twice");
  for (const user of [alice, bob, carol, dave, erin]) assert.ok(seen.includes(user.id), `${user.name} listed`);
  assert.equal(a.client.isOnline(dave.id), false, "pages do not enter the map");

  // Dave (a stranger) leaves, then Bob (watched): Alice hears of Bob, never of Dave.
  d.client.close();
  await until(async () => !(await a.client.allOnlineUsers()).some((u) => u.userId === dave.id), "Dave offline");
  b.client.close();
  await a.next("presence", (online) => !online.has(bob.id));
  assert.ok(told.some((change) => change.offline.includes(bob.id)), JSON.stringify(told));
  assert.ok(
    told.every((change) => !change.offline.includes(dave.id) && !change.online.some((u) => u.userId === dave.id)),
    `Alice was told about Dave: ${JSON.stringify(told)}`,
  );
  assert.equal(a.client.isOnline(dave.id), false);
});

test("watchPresence: a refused list keeps the last one, which is sent again after a reconnect", async () => {
  await crowd();
  const alice = await registerUser(fx.server, "Alice");
  const erin = await registerUser(fx.server, "Erin");
  const e = await fx.client(erin);
  const a = await fx.client(alice);
  await a.next("presence");
  assert.equal(a.client.scope, "watched");

  await a.client.watchPresence([erin.id]);
  await a.next("presence", (online) => online.has(erin.id));
  const unknown = (n) => `0190a6f4-0000-7000-8000-00000000000${n}`;
  const tooMany = [erin.id, unknown(1), unknown(2), unknown(3)]; // PRESENCE_WATCH_MAX is 3
  await assert.rejects(a.client.watchPresence(tooMany), { code: "invalid_payload" });
  assert.deepEqual(a.client.watchedUsers, [erin.id], "the refused list did not replace Erin's");
  assert.equal(a.client.isOnline(erin.id), true);

  // The connection drops; the new socket watches nobody until the client tells it again. The
  // welcome and the watchPresence answer each end with a `presence`.
  a.client.socket.io.engine.close();
  await a.status("reconnecting");
  const mark = a.records.length;
  await a.status("connected");
  await a.next("presence", () => true, WAIT_MS, mark);
  const settled = await a.next("presence", () => true, WAIT_MS, mark);
  assert.equal(settled.has(erin.id), true, "Erin is still online in the map");
  assert.equal(a.client.scope, "watched");

  // Only a socket that watches Erin is told she left.
  e.client.close();
  await a.next("presence", (online) => !online.has(erin.id));
  assert.equal(a.client.isOnline(erin.id), false);
});
