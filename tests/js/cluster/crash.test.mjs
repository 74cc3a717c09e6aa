// Crash under load in a cluster (issue 22): people on one node send a steady stream of stored
// direct messages to people on the others; that node is killed with SIGKILL mid-stream. Every
// send it acknowledged ok:true must be stored, once, and readable through the other nodes'
// history and sync.

import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";

import { apiOk, registerUser } from "../helpers.mjs";
import { useCluster } from "./cluster.mjs";

const fx = useCluster();
const node = (i) => fx.nodes[i - 1];

const SENDERS = 8;
/** Acknowledged sends after which the node dies. */
const KILL_AFTER = 150;
/** The pause between one person's sends: about 14 a second each, under the limit of 20. */
const PACE_MS = 70;

test("a node killed mid-stream: every send it acknowledged is stored once and readable on the others", async () => {
  const people = [];
  for (let i = 0; i < SENDERS; i++) people.push(await registerUser(node(1), `Load${i}`));
  let acked = 0;
  let killed = false;
  const streams = people.map(async (me, i) => {
    const to = people[(i + 1) % SENDERS];
    const socket = await fx.connect(node(2), { label: `load${i}`, token: me.token, reconnection: false });
    const mine = [];
    for (let n = 0; ; n++) {
      const clientId = `crash-${i}-${n}`;
      let ack;
      try {
        ack = await socket.ack("sendMessage", { to: to.id, content: `under load ${i}/${n}`, clientId }, 5000);
      } catch {
        return mine; // in flight when the node died: never acknowledged, so never promised
      }
      if (ack.ok) {
        mine.push({ id: ack.message.id, clientId });
        acked++;
      }
      if (killed) return mine;
      await sleep(PACE_MS);
    }
  });
  const deadline = Date.now() + 30_000;
  while (acked < KILL_AFTER) {
    assert.ok(Date.now() < deadline, `only ${acked} sends acknowledged in 30 s`);
    await sleep(10);
  }
  await node(2).kill();
  killed = true;
  const acknowledged = await Promise.all(streams);
  assert.ok(acknowledged.every((mine) => mine.length > 0), "every sender was acknowledged");

  for (let i = 0; i < SENDERS; i++) {
    const sender = people[i];
    const recipient = people[(i + 1) % SENDERS];
    const history = await apiOk(node(1), "GET", `/api/messages/${sender.id}?limit=100`, { token: recipient.token });
    const sync = await apiOk(node(3), "GET", "/api/sync?limit=100", { token: recipient.token });
    assert.equal(history.hasMore, false);
    assert.equal(sync.hasMore, false);
    for (const [name, list] of [["history", history.messages], ["sync", sync.messages]]) {
      const clientIds = list.map((m) => m.clientId);
      assert.equal(new Set(clientIds).size, clientIds.length, `a message stored twice in ${name}`);
      for (const { id, clientId } of acknowledged[i]) {
        assert.ok(
          list.some((m) => m.id === id && m.clientId === clientId),
          `${clientId} was acknowledged but is not in the recipient's ${name}`,
        );
      }
    }
  }
});
