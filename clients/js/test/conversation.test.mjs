// A conversation between two clients of the package: presence as a live map, typing with
// throttling and an automatic stop, delivery and read receipts.

import assert from "node:assert/strict";
import { test } from "node:test";

import { registerUser, useServer } from "./support.mjs";

const fx = useServer();

test("presence is a live map: users appear when they connect and leave when they go", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(alice);
  await a.next("presence", (online) => online.has(alice.id));
  assert.equal(a.client.scope, "all", "a small team: this socket watches everybody");
  assert.equal(a.client.isOnline(bob.id), false);

  const b = await fx.client(bob);
  const online = await a.next("presence", (map) => map.has(bob.id));
  assert.deepEqual(online.get(bob.id), { userId: bob.id, name: "Bob" });
  // Bob's map comes to hold who was already online (his welcome, or the batch after it).
  await b.next("presence", (map) => map.has(alice.id));

  b.client.close();
  await a.next("presence", (map) => !map.has(bob.id));
  assert.equal(a.client.isOnline(bob.id), false);
  const answer = await a.client.getOnlineUsers();
  assert.deepEqual(answer.users.map((u) => u.userId), [alice.id]);
  assert.equal(answer.total, 1);
  assert.equal(answer.nextCursor, null, "one page holds everybody");
});

test("typing sends one start for a burst of keystrokes, then a stop on send", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(alice);
  const b = await fx.client(bob);

  for (let i = 0; i < 5; i++) b.client.typing(alice.id);
  await a.next("userTyping", (p) => p.userId === bob.id && p.isTyping === true);
  assert.equal(a.client.isTyping(bob.id), true);

  const message = await b.client.sendMessage(alice.id, "done typing");
  await a.next("userTyping", (p) => p.userId === bob.id && p.isTyping === false);
  await a.next("newMessage", (m) => m.id === message.id);
  assert.equal(a.client.isTyping(bob.id), false);
  assert.deepEqual(
    a.all("userTyping").map((p) => p.isTyping),
    [true, false],
    "five keystrokes in a row make one start; sending makes the stop",
  );
});

test("typing stops by itself when the keystrokes stop", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(alice);
  const b = await fx.client(bob, { typingIdleMs: 300 });

  b.client.typing(alice.id);
  await a.next("userTyping", (p) => p.isTyping === true);
  await a.next("userTyping", (p) => p.isTyping === false); // sent by Bob's client when idle
  assert.deepEqual(a.all("userTyping").map((p) => p.isTyping), [true, false]);
});

test("a received message is marked delivered, and markRead sends the sender messagesRead", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(alice);
  const b = await fx.client(bob);

  const first = await b.client.sendMessage(alice.id, "one");
  const second = await b.client.sendMessage(alice.id, "two");
  assert.equal(second.clientId !== first.clientId, true, "each send has its own clientId");
  await a.next("newMessage", (m) => m.id === second.id);
  const delivered = await b.next("messageDelivered", (p) => p.messageId === second.id);
  assert.equal(delivered.to, alice.id);

  assert.equal(await a.client.markRead(bob.id, second.id), 2);
  const read = await b.next("messagesRead");
  assert.equal(read.by, alice.id);
  assert.equal(read.upTo, second.id);
  assert.deepEqual(b.all("messageSent").map((m) => m.id), [first.id, second.id]);
});
