// A server restarted mid-conversation (same port, SQLite file and JWT secret): what was sent
// while the client was away arrives once and in order through the `newMessage` listeners, and a
// send interrupted by the restart, a crash or a lost ack is stored and delivered exactly once.

import assert from "node:assert/strict";
import { test } from "node:test";

import { gate, history, registerUser, restSend, useServer, withTimeout } from "./support.mjs";

const fx = useServer();

const ids = (messages) => messages.map((m) => m.id);

test("messages sent while the client was away arrive once each, in order, over several sync pages", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");

  // Bob's app hands the token over through getToken; the test holds it while Alice writes, so
  // Bob's client has reconnected its transport to the new server but is not in its rooms yet.
  let held = null;
  const atGate = gate();
  const getToken = async (current) => {
    if (held) {
      atGate.open();
      await held.promise;
    }
    return current;
  };
  const b = await fx.client(bob, { getToken, syncPageSize: 2 });
  const a = await fx.client(alice);

  const before = await a.client.sendMessage(bob.id, "before the restart");
  await b.next("newMessage", (m) => m.id === before.id);

  held = gate();
  await fx.server.stop();
  await b.status("reconnecting");
  await fx.server.restart();
  await atGate.promise;

  const missed = [];
  for (let i = 1; i <= 5; i++) missed.push(await restSend(fx.server, alice, bob, `missed ${i}`));

  held.open();
  const synced = await b.next("synced");
  assert.equal(synced.messages, 5, "five messages caught up");
  assert.ok(synced.pages >= 3, `five messages in pages of two take three pages, got ${synced.pages}`);

  // The conversation goes on live after the catch-up.
  await a.next("authenticated"); // the first connection
  const a2 = await a.next("authenticated"); // Alice's client came back by itself too
  assert.equal(a2.user.id, alice.id);
  const after = await a.client.sendMessage(bob.id, "after the restart");
  await b.next("newMessage", (m) => m.id === after.id);
  await b.client.ping();

  const received = b.all("newMessage");
  assert.deepEqual(ids(received), ids([before, ...missed, after]), "each message once, in order");
  assert.deepEqual(
    b.records.filter((r) => r.event === "newMessage").map((r) => r.args[1].source),
    ["live", "sync", "sync", "sync", "sync", "sync", "live"],
  );
  assert.equal(b.client.lastMessageId, after.id);
  assert.equal(b.client.status, "connected");
});

test("a message sent while the server is down is stored and delivered exactly once after the restart", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(alice);
  const b = await fx.client(bob);

  await fx.server.stop();
  await b.status("reconnecting");
  const sending = b.client.sendMessage(alice.id, "written during the outage");
  await fx.server.restart();
  const message = await withTimeout(sending, "sendMessage after the restart");

  await a.next("newMessage", (m) => m.id === message.id);
  await b.next("messageSent", (m) => m.id === message.id);
  await Promise.all([a.client.ping(), b.client.ping()]);
  assert.deepEqual(ids(a.all("newMessage")), [message.id], "the recipient got it once");
  assert.deepEqual(ids(b.all("messageSent")), [message.id], "the sender's listeners got it once");
  const stored = (await history(fx.server, bob, alice)).filter((m) => m.content === message.content);
  assert.deepEqual(ids(stored), [message.id], "stored once");
});

test("a send the server never handled because it crashed is retried under its clientId and stored once", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(alice);
  const b = await fx.client(bob);

  // Frozen, the server cannot answer; the packet sits in its socket until SIGKILL.
  process.kill(fx.server.pid, "SIGSTOP");
  const sending = b.client.sendMessage(alice.id, "sent into a crash");
  await fx.server.kill();
  const retry = await b.next("sendRetry");
  assert.equal(retry.attempt, 1);
  await fx.server.restart();
  const message = await withTimeout(sending, "sendMessage after the crash");
  assert.equal(message.clientId, retry.clientId, "the retry kept its clientId");

  await a.next("newMessage", (m) => m.id === message.id);
  await a.client.ping();
  assert.deepEqual(ids(a.all("newMessage")), [message.id]);
  const stored = (await history(fx.server, bob, alice)).filter((m) => m.content === message.content);
  assert.deepEqual(ids(stored), [message.id], "stored once");
});

test("a send whose ack was late is retried under its clientId: one message stored, one delivered", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(alice);
  const b = await fx.client(bob, { ackTimeoutMs: 1_000, sendAttempts: 30 });

  process.kill(fx.server.pid, "SIGSTOP");
  const sending = b.client.sendMessage(alice.id, "the ack was lost");
  const retry = await b.next("sendRetry"); // the first attempt got no answer in time
  process.kill(fx.server.pid, "SIGCONT");
  const message = await withTimeout(sending, "sendMessage after SIGCONT", 40_000);
  assert.equal(message.clientId, retry.clientId);

  await a.next("newMessage", (m) => m.id === message.id);
  await Promise.all([a.client.ping(), b.client.ping()]);
  assert.deepEqual(ids(a.all("newMessage")), [message.id], "the recipient got it once");
  assert.deepEqual(ids(b.all("messageSent")), [message.id], "the sender's listeners got it once");
  const stored = (await history(fx.server, bob, alice)).filter((m) => m.content === message.content);
  assert.deepEqual(ids(stored), [message.id], "stored once");
});
