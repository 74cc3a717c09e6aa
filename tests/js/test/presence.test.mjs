// Presence (SPEC §5 "Presence" and `presenceChanged`): batched at most once per
// PRESENCE_INTERVAL (200 ms here), only when something changed, to authenticated sockets. Then,
// on a server of its own with PRESENCE_BROADCAST_MAX=2 and PRESENCE_WATCH_MAX=3, scoped
// presence: the welcome's `scope`, what a "watched" socket is told (conversation partners and its
// `watchPresence` list, never strangers), `watchPresence` itself, and paging through
// `getOnlineUsers {cursor, limit}`.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  apiOk,
  assertAckError,
  assertAckOk,
  registerUser,
  restSend,
  useServer,
  WAIT_MS,
} from "../helpers.mjs";

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

describe("scoped presence (PRESENCE_BROADCAST_MAX=2, PRESENCE_WATCH_MAX=3)", () => {
  const crowded = useServer({
    PRESENCE_INTERVAL: "200ms",
    PRESENCE_BROADCAST_MAX: "2",
    PRESENCE_WATCH_MAX: "3",
  });
  /** Any id in the shape of a user id that no user has. */
  const NOBODY = "0190a6f4-0000-7000-8000-000000000000";
  const names = (list) => list.map((u) => u.userId).sort();
  const sameIds = (...users) => users.map((u) => u.id).sort();
  const about = (user) => (p) =>
    p.online.some((u) => u.userId === user.id) || p.offline.includes(user.id);

  /** A connected socket for `user` and its welcome `getOnlineUsers`. */
  async function arrive(user) {
    const probe = await crowded.connect({ label: user.name, token: user.token });
    probe.online = await probe.next("getOnlineUsers");
    probe.acks = [];
    return probe;
  }

  /** `watchPresence` with an ack; the answer is kept, in order, for `believes`. */
  async function watch(probe, userIds) {
    const reply = await probe.ack("watchPresence", { userIds });
    probe.acks.push({ at: probe.records.length, reply });
    return reply;
  }

  /**
   * Who a client of `probe` would take for online: its last welcome list, with the
   * `presenceChanged` and `watchPresence` answers it got after it applied in order. (A welcome
   * or an answer may say how things stood at the last batch; the next batch tells the rest.)
   */
  function believes(probe) {
    const online = new Set();
    const apply = ({ online: on = [], offline = [] }) => {
      for (const u of on) online.add(u.userId);
      for (const id of offline) online.delete(id);
    };
    probe.records.forEach((record, i) => {
      for (const { at, reply } of probe.acks) if (at === i && reply.ok) apply(reply);
      if (record.event === "getOnlineUsers" && record.payload && "scope" in record.payload) {
        online.clear();
        apply({ online: record.payload.users });
      }
      if (record.event === "presenceChanged") apply(record.payload);
    });
    for (const { at, reply } of probe.acks) if (at >= probe.records.length && reply.ok) apply(reply);
    return online;
  }

  /** Waits until a client of `probe` takes `user` for online (or, with `false`, offline). */
  async function sees(probe, user, online = true) {
    const holds = () => believes(probe).has(user.id) === online;
    // A welcome or an answer may have said so already (they tell the state of the moment).
    if (holds()) return;
    await probe.next("presenceChanged", { where: holds, consume: false });
  }

  /** Two more users online, so that the next socket to authenticate watches only some users. */
  async function crowd() {
    const users = [await registerUser(crowded.server, "Sam"), await registerUser(crowded.server, "Tia")];
    return Promise.all(users.map(arrive));
  }

  /** Polls (a real `getOnlineUsers` each time) until `user` is no longer online. */
  async function goneFromPages(probe, user) {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const page = await probe.ack("getOnlineUsers", { limit: 500 });
      assertAckOk(page, "getOnlineUsers");
      if (!page.users.some((u) => u.userId === user.id)) return;
      assert.ok(Date.now() < deadline, `${user.name} still online ${WAIT_MS} ms after leaving`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  test("a socket watches everybody while at most PRESENCE_BROADCAST_MAX users are online, else only some, for its whole life", async () => {
    // The first user of this server's database: an admin, for emitOnlineUsers below.
    const alice = await registerUser(crowded.server, "Alice");
    const bob = await registerUser(crowded.server, "Bob");
    const carol = await registerUser(crowded.server, "Carol");

    const a = await arrive(alice);
    assert.equal(a.online.scope, "all", JSON.stringify(a.online));
    assert.deepEqual(names(a.online.users), [alice.id]);
    assert.equal(a.online.total, 1);

    const b = await arrive(bob);
    assert.equal(b.online.scope, "all", "two online, Bob included: still everybody");
    assert.equal(b.online.total, 2);
    assert.ok(b.online.users.some((u) => u.userId === bob.id), JSON.stringify(b.online));
    await sees(b, alice);

    const c = await arrive(carol);
    assert.equal(c.online.scope, "watched", "three online: Carol's socket only watches some users");
    assert.deepEqual(c.online.users, [], "Carol has no partners and watches nobody yet");
    assert.equal(c.online.total, 3, "total counts everybody online");

    // Alice's socket keeps watching everybody: it is told about Carol.
    const change = await a.next("presenceChanged", { where: about(carol) });
    assert.deepEqual(change.online.find((u) => u.userId === carol.id), { userId: carol.id, name: "Carol" });

    // emitOnlineUsers sends each socket its own welcome list again, scope included.
    const answer = await apiOk(crowded.server, "POST", "/api/socket-test", {
      token: alice.token,
      body: { action: "emitOnlineUsers" },
    });
    assert.ok(answer.recipients >= 3, JSON.stringify(answer));
    const again = { a: await a.next("getOnlineUsers"), c: await c.next("getOnlineUsers") };
    assert.deepEqual(again.a, { users: again.a.users, total: 3, scope: "all" });
    assert.deepEqual(names(again.a.users), sameIds(alice, bob, carol));
    assert.deepEqual(again.c, { users: [], total: 3, scope: "watched" });
    // Carol was never told about the strangers Alice and Bob.
    await c.barrier();
    assert.deepEqual(c.all("presenceChanged"), []);
  });

  test("a watched socket is told about its conversation partners and its watchPresence users, never about strangers", async () => {
    const [sam, tia] = await crowd();
    const alice = await registerUser(crowded.server, "Alice");
    const bob = await registerUser(crowded.server, "Bob");
    const carol = await registerUser(crowded.server, "Carol");
    const dave = await registerUser(crowded.server, "Dave");
    await restSend(crowded.server, bob, alice, "Hi Alice"); // Bob and Alice are partners now

    const a = await arrive(alice);
    assert.equal(a.online.scope, "watched");
    assert.deepEqual(a.online.users, [], "Bob is offline; Sam and Tia are strangers");
    assert.ok(a.online.total >= 3, JSON.stringify(a.online));
    assert.deepEqual(await watch(a, [carol.id]), { ok: true, online: [], offline: [carol.id] });

    // Dave (a stranger) comes first; then Bob (a partner) and Carol (watched).
    const d = await arrive(dave);
    const b = await arrive(bob);
    const c = await arrive(carol);
    const bobOnline = await a.next("presenceChanged", { where: about(bob) });
    assert.deepEqual(bobOnline.online.find((u) => u.userId === bob.id), { userId: bob.id, name: "Bob" });
    await sees(a, carol);
    // Bob's socket is watched too: it comes to see his partner Alice.
    assert.equal(b.online.scope, "watched");
    await sees(b, alice);

    // Dave leaves, then Bob, then Carol: Alice hears of her partner and of Carol, never of Dave.
    d.close();
    await goneFromPages(a, dave);
    b.close();
    await a.next("presenceChanged", { where: (p) => p.offline.includes(bob.id) });
    c.close();
    await a.next("presenceChanged", { where: (p) => p.offline.includes(carol.id) });
    for (const stranger of [dave, sam, tia]) {
      assert.ok(
        !a.all("presenceChanged").some(about(stranger)),
        `Alice was told about ${stranger.name}: ${JSON.stringify(a.all("presenceChanged"))}`,
      );
    }
    assert.ok(!a.all("presenceChanged").some(about(alice)), "Alice was told about herself");
  });

  test("watchPresence answers the state of the listed users that exist, without the caller, and each call replaces the list", async () => {
    await crowd();
    const alice = await registerUser(crowded.server, "Alice");
    const bob = await registerUser(crowded.server, "Bob");
    const carol = await registerUser(crowded.server, "Carol");
    const dave = await registerUser(crowded.server, "Dave");
    const b = await arrive(bob);
    const c = await arrive(carol);
    const a = await arrive(alice);
    assert.equal(a.online.scope, "watched");

    const tooMany = await watch(a, [bob.id, alice.id, NOBODY, dave.id]);
    assertAckError(tooMany, "invalid_payload", "four ids, over PRESENCE_WATCH_MAX=3");
    const first = await watch(a, [bob.id, alice.id, NOBODY]);
    assertAckOk(first, "watchPresence");
    assert.deepEqual(
      [...names(first.online), ...first.offline].sort(),
      [bob.id],
      `an unknown id and the caller are left out: ${JSON.stringify(first)}`,
    );
    await sees(a, bob);

    // The next list replaces it: Carol and Dave are watched, Bob no longer. What comes after its
    // answer was sent after the server replaced the list.
    const replaced = await watch(a, [carol.id, dave.id]);
    const mark = a.records.length;
    assertAckOk(replaced, "watchPresence");
    assert.deepEqual([...names(replaced.online), ...replaced.offline].sort(), sameIds(carol, dave));
    assert.ok(replaced.offline.includes(dave.id), "Dave never connected");
    await sees(a, carol);
    b.close();
    await goneFromPages(a, bob);
    c.close();
    await sees(a, carol, false);
    const since = a.records.slice(mark).filter((r) => r.event === "presenceChanged").map((r) => r.payload);
    assert.ok(
      !since.some(about(bob)),
      `Bob (${bob.id}) left the list but Alice was told about him: ${JSON.stringify(since)} (Carol ${carol.id}, Dave ${dave.id})`,
    );

    // An empty list watches nobody explicitly; malformed lists are refused.
    assert.deepEqual(await watch(a, []), { ok: true, online: [], offline: [] });
    for (const payload of [{}, { userIds: "everybody" }, { userIds: [42] }, "x"]) {
      assertAckError(await a.ack("watchPresence", payload), "invalid_payload", `watchPresence ${JSON.stringify(payload)}`);
    }
  });

  test("a user watched just as they come online and who leaves at once ends up offline for the watcher", async () => {
    await crowd();
    const alice = await registerUser(crowded.server, "Alice");
    const carol = await registerUser(crowded.server, "Carol");
    const dave = await registerUser(crowded.server, "Dave");
    const a = await arrive(alice);
    // Carol comes, is watched and leaves, likely all within one PRESENCE_INTERVAL.
    const c = await arrive(carol);
    assertAckOk(await watch(a, [carol.id, dave.id]), "watchPresence");
    c.close();
    await goneFromPages(a, carol);
    // Dave (watched too) comes afterwards: once Alice hears of him, anything about Carol is in.
    await arrive(dave);
    await sees(a, dave);
    assert.equal(believes(a).has(carol.id), false, `Alice still takes Carol for online: ${a.summary()}`);
  });

  test("paging through getOnlineUsers {limit: 2} visits every online user exactly once, in user id order", async () => {
    const people = await Promise.all(
      ["Uma", "Vic", "Wes", "Xia", "Yan"].map((n) => registerUser(crowded.server, n)),
    );
    const probes = [];
    for (const user of people) probes.push(await arrive(user));
    const me = probes[0];

    const visited = [];
    let cursor;
    let pages = 0;
    do {
      const page = await me.ack("getOnlineUsers", cursor ? { cursor, limit: 2 } : { limit: 2 });
      assertAckOk(page, "getOnlineUsers");
      assert.deepEqual(Object.keys(page).sort(), ["nextCursor", "ok", "total", "users"]);
      assert.ok(page.users.length <= 2 && page.users.length > 0, JSON.stringify(page));
      assert.ok(page.total >= people.length, `total ${page.total}`);
      visited.push(...page.users);
      cursor = page.nextCursor;
      pages += 1;
      assert.ok(pages <= 20, "paging does not end");
    } while (cursor !== null);
    const ids = visited.map((u) => u.userId);
    assert.equal(new Set(ids).size, ids.length, `someone was listed twice: ${JSON.stringify(ids)}`);
    assert.deepEqual(ids, [...ids].sort(), "pages come in user id order");
    for (const user of people) {
      assert.deepEqual(visited.find((u) => u.userId === user.id), { userId: user.id, name: user.name });
    }
    assert.ok(pages >= 3, `five users or more in ${pages} pages of two`);

    // Without an ack the page comes as a getOnlineUsers event, told from the welcome by its cursor.
    me.socket.emit("getOnlineUsers", { limit: 1 });
    const event = await me.next("getOnlineUsers");
    assert.equal(event.users.length, 1);
    assert.equal(event.users[0].userId, ids[0]);
    assert.equal(typeof event.nextCursor, "string", JSON.stringify(event));
    assert.ok(!("scope" in event), `a page is not a welcome: ${JSON.stringify(event)}`);

    for (const limit of [0, 501, 1.5, "2", -1]) {
      assertAckError(await me.ack("getOnlineUsers", { limit }), "invalid_payload", `limit ${JSON.stringify(limit)}`);
    }
  });
});
