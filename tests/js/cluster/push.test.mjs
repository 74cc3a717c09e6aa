// Web Push in a cluster (SPEC §13): three nodes on one PostgreSQL and one Redis decide and send
// from one outbox. Each (message, subscription) reaches the push service once, whichever node
// stored the message, and a node killed with pushes pending loses none.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { apiOk, registerUser } from "../helpers.mjs";
import { PushService } from "../push-service.mjs";
import { useCluster } from "./cluster.mjs";

const fx = useCluster({ PUSH_DELAY: "500ms", PUSH_TIMEOUT: "1s" });
const node = (i) => fx.nodes[i - 1];
let service;

before(async () => {
  service = await PushService.start();
});
after(async () => {
  await service?.close();
});

async function subscribe(target, user) {
  const { vapidPublicKey } = await apiOk(target, "GET", "/api/push/config", { token: user.token });
  service.expectedKey = vapidPublicKey;
  const subscription = service.subscribe();
  await apiOk(target, "POST", "/api/push/subscriptions", { token: user.token, body: subscription }, 201);
  return subscription;
}

const send = async (target, from, to, content) =>
  (await apiOk(target, "POST", `/api/messages/send/${to.id}`, { token: from.token, body: { content } }, 201)).message;

test("every node announces the same VAPID key, and each message is pushed once whichever node stored it", async () => {
  await registerUser(node(1), "Admin");
  const [ann, ben] = [await registerUser(node(1), "Ann"), await registerUser(node(2), "Ben")];
  const keys = new Set();
  for (const n of fx.nodes) keys.add((await apiOk(n, "GET", "/api/push/config", { token: ben.token })).vapidPublicKey);
  assert.equal(keys.size, 1, "one key for the cluster");

  const phone = await subscribe(node(3), ben);
  const sent = [];
  // 18: within one user's burst of 20 messages.
  for (let i = 0; i < 18; i++) sent.push(await send(node((i % 3) + 1), ann, ben, `message ${i}`));
  // The last one pushed means every earlier one was decided.
  for (let i = 0; i < sent.length; i++) await service.next(phone, i);
  const pushed = service.delivered(phone).map((d) => d.payload.messageId);
  assert.deepEqual([...pushed].sort(), sent.map((m) => m.id).sort(), "each message once");
  assert.equal(service.requests(phone), 18, "no push sent twice");
  assert.deepEqual(service.problems, []);
});

test("pushes pending on a node killed mid-way are sent by the others", async () => {
  const [cat, dan] = [await registerUser(node(1), "Cat"), await registerUser(node(2), "Dan")];
  const phone = await subscribe(node(1), dan);
  const sent = [];
  for (let i = 0; i < 5; i++) sent.push(await send(node(2), cat, dan, `before the crash ${i}`));
  await node(2).kill();
  for (let i = 0; i < 5; i++) sent.push(await send(node(1), cat, dan, `after the crash ${i}`));
  for (let i = 0; i < sent.length; i++) await service.next(phone, i);
  const pushed = service.delivered(phone).map((d) => d.payload.messageId);
  assert.deepEqual([...pushed].sort(), sent.map((m) => m.id).sort());
  assert.deepEqual(service.problems, []);
  await node(2).restart();
});
