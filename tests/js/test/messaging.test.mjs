// Direct messages, receipts and typing between connected users (SPEC §5 client → server and
// server → client events, §2 message object, §9 limits).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import {
  TIMESTAMP,
  UUID_V7,
  apiOk,
  assertAckError,
  assertAckOk,
  registerUser,
  restSend,
  useServer,
} from "../helpers.mjs";

const fx = useServer();

/** Registers users and connects sockets: `await people("Alice", "Bob")`. */
async function people(...names) {
  return Promise.all(names.map((name) => registerUser(fx.server, name)));
}

function tab(user, label, options = {}) {
  return fx.connect({ label, token: user.token, ...options });
}

async function send(socket, to, content, clientId) {
  const reply = await socket.ack("sendMessage", {
    to: to.id,
    content,
    ...(clientId !== undefined ? { clientId } : {}),
  });
  assertAckOk(reply, `sendMessage "${content}"`);
  return reply;
}

function assertMessage(message, { from, to, content, clientId = null }) {
  // SPEC §2's message object, every field present (null or empty when unused).
  assert.deepEqual(
    Object.keys(message).sort(),
    [
      "attachments", "clientId", "content", "conversationId", "createdAt", "deletedAt",
      "deliveredAt", "editedAt", "from", "id", "kind", "mentions", "reactions", "readAt",
      "replyToId", "system", "to",
    ],
    `message fields: ${JSON.stringify(message)}`,
  );
  assert.match(message.id, UUID_V7);
  assert.match(message.conversationId, UUID_V7);
  assert.equal(message.kind, "text");
  assert.deepEqual([message.mentions, message.attachments, message.reactions], [[], [], []]);
  assert.equal(message.system, null);
  assert.equal(message.from, from.id);
  assert.equal(message.to, to.id);
  assert.equal(message.content, content);
  assert.equal(message.clientId, clientId);
  assert.match(message.createdAt, TIMESTAMP);
  assert.equal(message.readAt, null);
}

test("sendMessage acks {ok, message, delivered} with a complete message object", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const a = await tab(alice, "alice");

  const offline = await send(a, bob, "are you there?");
  assertMessage(offline.message, { from: alice, to: bob, content: "are you there?" });
  assert.equal(offline.delivered, false, "bob has no socket: delivered must be false");

  await tab(bob, "bob");
  const online = await send(a, bob, "hello bob", "client-1");
  assertMessage(online.message, { from: alice, to: bob, content: "hello bob", clientId: "client-1" });
  assert.equal(online.delivered, true, "bob has a socket: delivered must be true");
  assert.ok(online.message.id > offline.message.id, "ids are time-ordered");

  const history = await apiOk(fx.server, "GET", `/api/messages/${bob.id}`, { token: alice.token });
  assert.deepEqual(
    history.messages.map((m) => m.id),
    [online.message.id, offline.message.id],
    "history is newest first and has both",
  );
});

test("newMessage reaches every tab of the recipient and messageSent every tab of the sender", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const [a1, a2, b1, b2] = await Promise.all([
    tab(alice, "alice tab 1"),
    tab(alice, "alice tab 2"),
    tab(bob, "bob tab 1"),
    tab(bob, "bob tab 2"),
  ]);

  const { message } = await send(a1, bob, "to both of your tabs");
  for (const b of [b1, b2]) {
    const got = await b.next("newMessage");
    assert.deepEqual(got.message, message, `${b.label} got a different message`);
  }
  for (const a of [a1, a2]) {
    const got = await a.next("messageSent");
    assert.deepEqual(got.message, message, `${a.label} got a different messageSent`);
  }
  await Promise.all([a1, a2, b1, b2].map((s) => s.barrier()));
  for (const a of [a1, a2]) assert.equal(a.all("newMessage").length, 0, `${a.label} got newMessage`);
  for (const b of [b1, b2]) {
    assert.equal(b.all("messageSent").length, 0, `${b.label} got messageSent`);
    assert.equal(b.all("newMessage").length, 1, `${b.label} got newMessage more than once`);
  }
});

test("the recipient acking newMessage sends messageDelivered to the sender's tabs", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const [a1, a2] = await Promise.all([tab(alice, "alice tab 1"), tab(alice, "alice tab 2")]);
  const b = await tab(bob, "bob", { ackNewMessages: true });

  const before = Date.now();
  const { message } = await send(a1, bob, "please confirm");
  for (const a of [a1, a2]) {
    const receipt = await a.next("messageDelivered");
    assert.deepEqual(Object.keys(receipt).sort(), ["deliveredAt", "messageId", "to"]);
    assert.equal(receipt.messageId, message.id);
    assert.equal(receipt.to, bob.id);
    assert.match(receipt.deliveredAt, TIMESTAMP);
    assert.ok(Date.parse(receipt.deliveredAt) >= before - 1000, "deliveredAt is in the past");
  }
  await b.barrier();
  const history = await apiOk(fx.server, "GET", `/api/messages/${alice.id}`, { token: bob.token });
  const stored = history.messages.find((m) => m.id === message.id);
  assert.match(stored?.deliveredAt ?? "", TIMESTAMP, `stored deliveredAt: ${JSON.stringify(stored)}`);
});

test("resending with the same clientId acks the same message and notifies the recipient once", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const a = await tab(alice, "alice");
  const b = await tab(bob, "bob");
  const clientId = `retry-${randomUUID()}`;

  const first = await send(a, bob, "only once", clientId);
  const second = await send(a, bob, "only once", clientId);
  assert.equal(second.message.id, first.message.id, "the retry must ack the stored message");
  assert.equal(second.message.clientId, clientId);

  const rest = await apiOk(
    fx.server,
    "POST",
    `/api/messages/send/${bob.id}`,
    { token: alice.token, body: { content: "only once", clientId } },
    200,
  );
  assert.equal(rest.message.id, first.message.id, "a REST retry answers the same message");

  await b.next("newMessage", { where: (p) => p.message.id === first.message.id });
  await b.barrier();
  assert.equal(
    b.all("newMessage").length,
    1,
    `bob got newMessage ${b.all("newMessage").length} times for one message`,
  );
  const history = await apiOk(fx.server, "GET", `/api/messages/${bob.id}`, { token: alice.token });
  assert.equal(history.messages.length, 1, `history: ${JSON.stringify(history.messages)}`);
});

test("a message sent over REST reaches the recipient's socket and the sender's sockets", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const a = await tab(alice, "alice");
  const b = await tab(bob, "bob");

  const sent = await restSend(fx.server, alice, bob, "via REST");
  assertMessage(sent.message, { from: alice, to: bob, content: "via REST" });
  assert.equal(sent.delivered, true);
  assert.equal(sent.realtime, true);
  assert.deepEqual((await b.next("newMessage")).message, sent.message);
  assert.deepEqual((await a.next("messageSent")).message, sent.message);
});

test("markRead acks the count and the sender's sockets get messagesRead", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const [a1, a2] = await Promise.all([tab(alice, "alice tab 1"), tab(alice, "alice tab 2")]);
  const b = await tab(bob, "bob");

  await send(a1, bob, "one");
  const { message: last } = await send(a1, bob, "two");
  await b.next("newMessage");
  await b.next("newMessage");

  const reply = await b.ack("markRead", { userId: alice.id, upTo: last.id });
  assertAckOk(reply, "markRead");
  assert.equal(reply.count, 2);
  for (const a of [a1, a2]) {
    const read = await a.next("messagesRead");
    assert.deepEqual(Object.keys(read).sort(), ["by", "conversationId", "readAt", "upTo"]);
    assert.equal(read.conversationId, last.conversationId);
    assert.equal(read.by, bob.id);
    assert.equal(read.upTo, last.id);
    assert.match(read.readAt, TIMESTAMP);
  }

  const again = await b.ack("markRead", { userId: alice.id, upTo: last.id });
  assertAckOk(again, "markRead again");
  assert.equal(again.count, 0, "nothing is left to mark");

  const history = await apiOk(fx.server, "GET", `/api/messages/${alice.id}`, { token: bob.token });
  for (const m of history.messages) assert.match(m.readAt ?? "", TIMESTAMP, `unread: ${m.id}`);
});

test("a third user connected receives none of Alice and Bob's events", async () => {
  const [alice, bob, carol] = await people("Alice", "Bob", "Carol");
  const a = await tab(alice, "alice");
  const b = await tab(bob, "bob", { ackNewMessages: [{ received: true }] });
  const c = await tab(carol, "carol", { ackNewMessages: [{ received: true }] });

  const { message } = await send(a, bob, "private");
  await b.next("newMessage");
  await a.next("messageDelivered");
  await restSend(fx.server, bob, alice, "private reply");
  await a.next("newMessage");
  assertAckOk(await b.ack("typing", { to: alice.id, isTyping: true }), "typing");
  await a.next("userTyping");
  assertAckOk(await a.ack("markRead", { userId: bob.id, upTo: message.id }), "markRead");
  assertAckOk(await b.ack("markRead", { userId: alice.id, upTo: message.id }), "markRead");
  await a.next("messagesRead");

  await c.barrier();
  const allowed = new Set(["connect", "authenticated", "getOnlineUsers", "presenceChanged", "pong"]);
  const leaked = c.records.filter((r) => !allowed.has(r.event));
  assert.deepEqual(
    leaked.map((r) => [r.event, r.payload]),
    [],
    "carol received events of a conversation she is not part of",
  );
});

test("malformed payloads are acked invalid_payload and the socket stays healthy", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const a = await tab(alice, "alice");

  const bad = [
    ["sendMessage", "just a string"],
    ["sendMessage", 42],
    ["sendMessage", [bob.id, "hi"]],
    ["sendMessage", {}],
    ["sendMessage", { to: bob.id }],
    ["sendMessage", { content: "no recipient" }],
    ["sendMessage", { to: bob.id, content: 42 }],
    ["sendMessage", { to: 7, content: "hi" }],
    ["sendMessage", { to: bob.id, content: "hi", clientId: { nested: true } }],
    ["typing", "yes"],
    ["typing", { to: bob.id, isTyping: "yes" }],
    ["typing", { isTyping: true }],
    ["markRead", {}],
    ["markRead", { userId: bob.id, upTo: 5 }],
    ["sync", "since"],
    ["sync", { since: 5 }],
    ["sync", { since: null, limit: "ten" }],
    ["authenticate", "a string"],
  ];
  for (const [event, payload] of bad) {
    const what = `${event} ${JSON.stringify(payload)}`;
    const reply = await a.ack(event, payload);
    if (event === "authenticate") {
      // a malformed authenticate is a bad token: the socket may be dropped, so it goes last
      assert.equal(reply.ok, false, `${what}: ${JSON.stringify(reply)}`);
      continue;
    }
    assertAckError(reply, "invalid_payload", what);
    assert.equal(a.socket.connected, true, `${what} disconnected the socket`);
  }
});

test("malformed payloads without an ack are dropped and the socket stays healthy", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const a = await tab(alice, "alice");
  const b = await tab(bob, "bob");
  for (const payload of ["text", 1, null, [], {}, { to: bob.id }, { to: bob.id, content: [] }]) {
    a.socket.emit("sendMessage", payload);
    a.socket.emit("typing", payload);
    a.socket.emit("markRead", payload);
  }
  a.socket.emit("sendMessage"); // no payload at all
  a.socket.emit("noSuchEvent", { x: 1 });
  await a.barrier();
  assert.equal(a.socket.connected, true);
  await b.barrier();
  assert.equal(b.all("newMessage").length, 0);
  assert.equal(b.all("userTyping").length, 0);
  await send(a, bob, "still works");
  await b.next("newMessage");
});

test("content that is empty, blank or over 4000 characters is refused with validation_failed", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const a = await tab(alice, "alice");
  const b = await tab(bob, "bob");
  for (const content of ["", "   \n\t ", "x".repeat(4001)]) {
    const reply = await a.ack("sendMessage", { to: bob.id, content });
    assertAckError(reply, "validation_failed", `content of ${content.length} characters`);
  }
  await b.barrier();
  assert.equal(b.all("newMessage").length, 0, "a refused message reached the recipient");

  const longest = "y".repeat(4000);
  const ok = await send(a, bob, longest);
  assert.equal(ok.message.content.length, 4000);
  const trimmed = await send(a, bob, "  padded  ");
  assert.equal(typeof trimmed.message.content, "string");
});

test("a message to an unknown user is refused with user_not_found", async () => {
  const [alice] = await people("Alice");
  const a = await tab(alice, "alice");
  const unknown = "01900000-0000-7000-8000-000000000000";
  assertAckError(
    await a.ack("sendMessage", { to: unknown, content: "hello?" }),
    "user_not_found",
    "sendMessage to an unknown id",
  );
  assertAckError(
    await a.ack("sendMessage", { to: randomUUID(), content: "hello?" }),
    "user_not_found",
    "sendMessage to a random v4 id",
  );
  assert.equal(a.socket.connected, true);
});

test("typing reaches the recipient's tabs as userTyping and nobody else", async () => {
  const [alice, bob, carol] = await people("Alice", "Bob", "Carol");
  const [a1, a2] = await Promise.all([tab(alice, "alice tab 1"), tab(alice, "alice tab 2")]);
  const [b1, b2] = await Promise.all([tab(bob, "bob tab 1"), tab(bob, "bob tab 2")]);
  const c = await tab(carol, "carol");

  assertAckOk(await a1.ack("typing", { to: bob.id, isTyping: true }), "typing start");
  for (const b of [b1, b2]) {
    // No message yet, so no conversation.
    assert.deepEqual(await b.next("userTyping"), { userId: alice.id, isTyping: true, conversationId: null });
  }
  assertAckOk(await a1.ack("typing", { to: bob.id, isTyping: false }), "typing stop");
  for (const b of [b1, b2]) {
    assert.deepEqual(await b.next("userTyping"), { userId: alice.id, isTyping: false, conversationId: null });
  }
  await Promise.all([a1, a2, c].map((s) => s.barrier()));
  for (const s of [a1, a2, c]) {
    assert.equal(s.all("userTyping").length, 0, `${s.label} got userTyping`);
  }
});

test("getOnlineUsers answers by ack, or by a getOnlineUsers event without an ack", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const a = await tab(alice, "alice");
  await tab(bob, "bob");

  const reply = await a.ack("getOnlineUsers");
  assertAckOk(reply, "getOnlineUsers");
  assert.equal(reply.total, reply.users.length);
  for (const user of [alice, bob]) {
    assert.deepEqual(
      reply.users.find((u) => u.userId === user.id),
      { userId: user.id, name: user.name },
      `${user.name} missing from ${JSON.stringify(reply.users)}`,
    );
  }

  await a.next("getOnlineUsers"); // the one after `authenticated`
  a.socket.emit("getOnlineUsers");
  const event = await a.next("getOnlineUsers");
  assert.equal(event.total, event.users.length);
  assert.ok(event.users.some((u) => u.userId === bob.id), JSON.stringify(event));
  assert.ok(!("ok" in event), `the event is not an ack: ${JSON.stringify(event)}`);
});

test("ping answers with a pong event and an ack carrying ts and serverTime", async () => {
  const [alice] = await people("Alice");
  const a = await tab(alice, "alice");
  const reply = await a.ack("ping", { ts: 12345 });
  assertAckOk(reply, "ping");
  assert.equal(reply.ts, 12345);
  assert.match(reply.serverTime, TIMESTAMP);
  const pong = await a.next("pong");
  assert.deepEqual(pong, { ts: 12345, serverTime: pong.serverTime });
  assert.match(pong.serverTime, TIMESTAMP);
  assert.ok(Math.abs(Date.parse(pong.serverTime) - Date.now()) < 60_000, "serverTime is now");
});

test("sync returns what was missed since a message, oldest first, with limit and hasMore", async () => {
  const [alice, bob] = await people("Alice", "Bob");
  const a = await tab(alice, "alice");
  const sent = [];
  for (const content of ["m1", "m2", "m3", "m4"]) sent.push((await send(a, bob, content)).message);

  const b = await tab(bob, "bob");
  const all = await b.ack("sync", { since: sent[0].id });
  assertAckOk(all, "sync");
  assert.deepEqual(
    all.messages.map((m) => m.content),
    ["m2", "m3", "m4"],
  );
  assert.equal(all.hasMore, false);

  const page = await b.ack("sync", { since: sent[0].id, limit: 2 });
  assertAckOk(page, "sync with limit");
  assert.deepEqual(page.messages.map((m) => m.content), ["m2", "m3"]);
  assert.equal(page.hasMore, true);

  const rest = await apiOk(fx.server, "GET", `/api/sync?since=${sent[2].id}`, { token: bob.token });
  assert.deepEqual(rest.messages.map((m) => m.content), ["m4"]);
});
