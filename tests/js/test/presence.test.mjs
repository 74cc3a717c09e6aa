// Presence (SPEC §5 "Presence" and `presenceChanged`): batched at most once per
// PRESENCE_INTERVAL (200 ms here), only when something changed, to authenticated sockets.

import assert from "node:assert/strict";
import { test } from "node:test";

import { assertAckError, registerUser, useServer } from "../helpers.mjs";

const INTERVAL_MS = 200;
const fx = useServer({ PRESENCE_INTERVAL: "200ms" });

const wentOnline = (user) => (p) => p.online.some((u) => u.userId === user.id);
const wentOffline = (user) => (p) => p.offline.includes(user.id);

test("a user connecting shows up in the others' presenceChanged online list", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.connect({ label: "alice", token: alice.token });

  await fx.connect({ label: "bob", token: bob.token });
  const change = await a.next("presenceChanged", { where: wentOnline(bob) });
  assert.deepEqual(Object.keys(change).sort(), ["offline", "online"]);
  assert.deepEqual(
    change.online.find((u) => u.userId === bob.id),
    { userId: bob.id, name: "Bob" },
  );
  assert.ok(!change.offline.includes(bob.id), JSON.stringify(change));
});

test("a user stays online while one tab is open and goes offline when the last one closes", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.connect({ label: "alice", token: alice.token });
  const b1 = await fx.connect({ label: "bob tab 1", token: bob.token });
  const b2 = await fx.connect({ label: "bob tab 2", token: bob.token });
  await a.next("presenceChanged", { where: wentOnline(bob) });

  b1.close();
  // No event tells when the server has processed the close: give it a few presence intervals.
  await new Promise((r) => setTimeout(r, 3 * INTERVAL_MS));
  assert.ok(
    !a.all("presenceChanged").some(wentOffline(bob)),
    `bob was reported offline with a tab still open: ${JSON.stringify(a.all("presenceChanged"))}`,
  );
  const online = await a.ack("getOnlineUsers");
  assert.ok(online.users.some((u) => u.userId === bob.id), "bob must still be online");

  b2.close();
  const change = await a.next("presenceChanged", { where: wentOffline(bob) });
  assert.ok(!change.online.some((u) => u.userId === bob.id), JSON.stringify(change));
  const after = await a.ack("getOnlineUsers");
  assert.ok(!after.users.some((u) => u.userId === bob.id), "bob must be offline now");
});

test("presenceChanged is batched: at most one per PRESENCE_INTERVAL, none when nothing changed", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const a = await fx.connect({ label: "alice", token: alice.token });
  const others = await Promise.all(
    ["Carol", "Dave", "Erin", "Frank", "Gina", "Hank"].map((n) => registerUser(fx.server, n)),
  );
  const start = a.records.length;
  for (const user of others) {
    await fx.connect({ label: user.name, token: user.token });
  }
  for (const user of others) await a.seen("presenceChanged", { where: wentOnline(user) });
  const times = a.records.slice(start).filter((r) => r.event === "presenceChanged").map((r) => r.at);
  for (let i = 1; i < times.length; i++) {
    // Network jitter may bunch arrivals a little; two batches never arrive back to back.
    assert.ok(
      times[i] - times[i - 1] >= INTERVAL_MS / 2,
      `presenceChanged events ${times[i] - times[i - 1]} ms apart (interval ${INTERVAL_MS} ms)`,
    );
  }

  // Nothing changes now: no more presenceChanged during a few intervals.
  const settled = a.all("presenceChanged").length;
  await new Promise((r) => setTimeout(r, 3 * INTERVAL_MS));
  assert.equal(a.all("presenceChanged").length, settled, "presenceChanged without a change");
});

test("an unauthenticated socket gets no presenceChanged", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.connect({ label: "alice", token: alice.token });
  const anonymous = await fx.connect({ label: "anonymous" });

  await fx.connect({ label: "bob", token: bob.token });
  await a.next("presenceChanged", { where: wentOnline(bob) });
  assertAckError(await anonymous.ack("ping", { ts: 1 }), "unauthenticated", "ping");
  assert.equal(anonymous.all("presenceChanged").length, 0, "presence leaked to an anonymous socket");
});
