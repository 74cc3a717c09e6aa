// Cluster mode when parts fail: a node killed without a clean shutdown, and Redis restarting.

import assert from "node:assert/strict";
import { test } from "node:test";

import { WAIT_MS, api, apiOk, registerUser, restSend } from "../helpers.mjs";
import { eventually, useCluster } from "./cluster.mjs";

const PRESENCE_TTL_MS = 3000;
const fx = useCluster({ PRESENCE_TTL: `${PRESENCE_TTL_MS}ms` });
const node = (i) => fx.nodes[i - 1];
let admin;

test("a node killed with SIGKILL: its users go offline within PRESENCE_TTL, the rest keep working, and a client back through nginx catches up with sync", async () => {
  admin = await registerUser(node(1), "Admin");
  // Dave comes in through nginx (round robin); the node he lands on is the one to kill.
  const dave = await registerUser(node(1), "Dave");
  const daves = await fx.connect(
    { url: fx.nginx.roundRobinUrl },
    { label: "dave (nginx)", token: dave.token, transports: ["websocket"] },
  );
  const spread = await fx.socketsPerNode(admin);
  const doomed = spread.indexOf(1) + 1;
  assert.ok(doomed > 0, `Dave's node is found: ${spread}`);
  const [liveA, liveB] = [1, 2, 3].filter((i) => i !== doomed);

  // Gina sits on the doomed node too, with no reconnection: she must go offline.
  const gina = await registerUser(node(1), "Gina");
  await fx.connect(node(doomed), { label: "gina", token: gina.token });
  const frank = await registerUser(node(1), "Frank");
  const franks = await fx.connect(node(liveA), { label: "frank", token: frank.token, ackNewMessages: true });
  const helen = await registerUser(node(1), "Helen");
  const helens = await fx.connect(node(liveB), { label: "helen", token: helen.token });
  const first = await restSend(node(liveA), frank, dave, "before the crash");
  await daves.next("newMessage", { where: (p) => p.message.id === first.message.id });
  await eventually("Frank sees Gina online", async () =>
    (await franks.ack("getOnlineUsers")).users.some((u) => u.userId === gina.id),
  );

  await node(doomed).kill();
  const killedAt = Date.now();
  await daves.next("disconnect");

  // Frank and Helen, on the live nodes, go on as before.
  const sent = await helens.ack("sendMessage", { to: frank.id, content: "still here" });
  assert.equal(sent.ok, true);
  await franks.next("newMessage", { where: (p) => p.message.id === sent.message.id });

  // What Frank sends while Dave is away is stored.
  const missed = [];
  for (const content of ["while you were away 1", "while you were away 2", "while you were away 3"]) {
    missed.push((await restSend(node(liveA), frank, dave, content)).message.id);
  }

  // Gina's node stopped beating: the cluster announces her offline within PRESENCE_TTL (plus
  // the wait's own allowance for scheduling).
  await franks.seen("presenceChanged", {
    where: (p) => p.offline.includes(gina.id),
    ms: PRESENCE_TTL_MS + WAIT_MS,
  });
  const elapsed = Date.now() - killedAt;
  const { users } = await franks.ack("getOnlineUsers");
  assert.ok(!users.some((u) => u.userId === gina.id), `Gina is offline (after ${elapsed} ms)`);

  // Dave reconnects through nginx, which sends him to a live node; sync brings what he missed.
  daves.socket.connect();
  await daves.next("authenticated");
  const caughtUp = await daves.ack("sync", { since: first.message.id });
  assert.equal(caughtUp.ok, true);
  assert.deepEqual(
    caughtUp.messages.map((m) => m.id),
    missed,
    "every message sent while Dave was away, once, in order",
  );
  assert.equal((await fx.socketsPerNode(admin)).reduce((a, b) => a + b), 3, "Dave, Frank and Helen");
  const report = await apiOk(node(liveA), "GET", "/api/socket-test", { token: admin.token });
  assert.equal(report.adapter.nodes, 2, "the dead node is no longer counted");
});

test("Redis restarting: local delivery goes on, readiness says so, and the cluster resumes by itself", async () => {
  const alive = fx.nodes.map((n, i) => i + 1).filter((i) => node(i).running);
  const [a, b] = alive;
  const ivy = await registerUser(node(a), "Ivy");
  const jon = await registerUser(node(a), "Jon");
  const kim = await registerUser(node(b), "Kim");
  const ivys = await fx.connect(node(a), { label: "ivy", token: ivy.token });
  const jons = await fx.connect(node(a), { label: "jon", token: jon.token });
  const kims = await fx.connect(node(b), { label: "kim", token: kim.token });
  const before = await ivys.ack("sendMessage", { to: kim.id, content: "across nodes" });
  await kims.next("newMessage", { where: (p) => p.message.id === before.message.id });

  await fx.redis.kill();

  // Both users on node a still talk, and the message is stored.
  const local = await ivys.ack("sendMessage", { to: jon.id, content: "same node, Redis down" });
  assert.equal(local.ok, true, JSON.stringify(local));
  await jons.next("newMessage", { where: (p) => p.message.id === local.message.id });
  const ready = await api(node(a), "GET", "/readyz");
  assert.equal(ready.status, 503);
  assert.deepEqual(ready.body.failed, ["redis"]);
  const report = await apiOk(node(a), "GET", "/api/socket-test", { token: admin.token });
  assert.equal(report.checks.find((c) => c.name === "adapter").ok, false);

  await fx.redis.start();
  await eventually("node a is ready again", async () => (await api(node(a), "GET", "/readyz")).status === 200);
  await eventually("node b is ready again", async () => (await api(node(b), "GET", "/readyz")).status === 200);

  // Without a restart of any node, messages cross nodes again, and presence is whole again.
  await eventually(
    "a message from node a reaches node b",
    async () => {
      const reply = await ivys.ack("sendMessage", { to: kim.id, content: "back again" });
      assert.equal(reply.ok, true);
      try {
        await kims.next("newMessage", { where: (p) => p.message.id === reply.message.id, ms: 1000 });
        return true;
      } catch {
        return false;
      }
    },
    15_000,
  );
  await eventually("node b lists Ivy and Jon again", async () => {
    const { users } = await kims.ack("getOnlineUsers");
    return [ivy, jon].every((u) => users.some((o) => o.userId === u.id));
  });
});
