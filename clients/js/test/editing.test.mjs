// Editing, deleting, reacting and replying through the package (SPEC §11): the requests, the
// live events on every member's client, the conversation map's last message and counts, and
// what a client that was away learns from `sync`'s `changed`, over pages when there are many.

import assert from "node:assert/strict";
import { test } from "node:test";

import { apiOk, registerUser, restSend, useServer, withTimeout } from "./support.mjs";

const fx = useServer();
// The first user of a database is a platform admin, who may delete any message: each test takes
// it first (once for the file), so that its own users are plain users.
let admin = null;
const plainUsers = async (...names) => {
  admin ??= registerUser(fx.server, "Admin");
  await admin;
  return Promise.all(names.map((n) => registerUser(fx.server, n)));
};

test("an edit, a reply, reactions and a deletion reach both clients live", async () => {
  const [alice, bob] = await plainUsers("Alice", "Bob");
  const a = await fx.client(alice);
  const b = await fx.client(bob);
  await Promise.all([a, b].map((r) => r.client.loadConversations()));

  const question = await a.client.sendMessage(bob.id, "lunch at noon?");
  await b.next("newMessage", (m) => m.id === question.id);
  const answer = await b.client.sendMessage(alice.id, "yes!", { replyToId: question.id });
  assert.equal(answer.replyToId, question.id);
  assert.equal((await a.next("newMessage", (m) => m.id === answer.id)).replyToId, question.id);

  // Alice corrects her question: both clients get the new state.
  const edited = await a.client.editMessage(question.id, "lunch at one?");
  assert.equal(edited.content, "lunch at one?");
  for (const r of [a, b]) {
    const seen = await r.next("messageUpdated", (m) => m.id === question.id);
    assert.equal(seen.content, "lunch at one?");
    assert.ok(seen.editedAt, `${r.label}: the edit is marked`);
  }
  await assert.rejects(b.client.editMessage(question.id, "mine now"), { code: "forbidden" });

  // Reactions, added twice (counted once) and taken back.
  assert.deepEqual(await b.client.react(answer.id, "👍"), [{ emoji: "👍", count: 1, userIds: [bob.id] }]);
  assert.deepEqual(await b.client.react(answer.id, "👍"), [{ emoji: "👍", count: 1, userIds: [bob.id] }]);
  const both = await a.client.react(answer.id, ":tada:");
  assert.deepEqual(both.map((r) => r.emoji), ["👍", ":tada:"]);
  for (const r of [a, b]) {
    const change = await r.next("reactionsChanged", (p) => p.reactions.length === 2);
    assert.deepEqual(change, { messageId: answer.id, conversationId: answer.conversationId, reactions: both });
  }
  // Bob's answer is the last message of the conversation: the maps carry its reactions.
  assert.deepEqual(a.client.conversations.get(answer.conversationId)?.lastMessage?.reactions, both);
  assert.deepEqual(await b.client.react(answer.id, "👍", false), [{ emoji: ":tada:", count: 1, userIds: [alice.id] }]);
  await assert.rejects(b.client.react(answer.id, "not an emoji"), { code: "invalid_emoji" });

  // Alice sends and takes back a message Bob has not read: his unread count follows.
  const oops = await a.client.sendMessage(bob.id, "wrong chat, sorry");
  await b.next("newMessage", (m) => m.id === oops.id);
  const conversationId = oops.conversationId;
  assert.equal(b.client.conversations.get(conversationId)?.unreadCount, 2);
  await a.client.deleteMessage(oops.id);
  for (const r of [a, b]) {
    const deleted = await r.next("messageDeleted", (p) => p.messageId === oops.id);
    assert.equal(deleted.conversationId, conversationId);
    assert.equal(r.client.conversations.get(conversationId)?.lastMessage?.content, "");
    assert.ok(r.client.conversations.get(conversationId)?.lastMessage?.deletedAt);
  }
  await b.next("conversations", (all) => all.get(conversationId)?.unreadCount === 1);
  await a.client.deleteMessage(oops.id); // again: nothing changes, no error

  // Replies must name a live message of the same conversation.
  await assert.rejects(b.client.sendMessage(alice.id, "to what?", { replyToId: oops.id }), { code: "invalid_reply" });
  const carol = await registerUser(fx.server, "Carol");
  const elsewhere = await restSend(fx.server, carol, alice, "hi Alice");
  await assert.rejects(b.client.sendMessage(alice.id, "to what?", { replyToId: elsewhere.id }), { code: "invalid_reply" });
  await assert.rejects(b.client.deleteMessage(elsewhere.id), { code: "message_not_found" });
  assert.equal(b.all("messageUpdated").length, 1, "one edit, one event");
});

test("a client that was away learns every change from sync, oldest first, and goes on live", async () => {
  const [alice, bob] = await plainUsers("Alice", "Bob");
  const a = await fx.client(alice);
  const b = await fx.client(bob);
  const sent = [];
  for (const content of ["one", "two", "three"]) {
    const message = await a.client.sendMessage(bob.id, content);
    await b.next("newMessage", (m) => m.id === message.id);
    sent.push(message);
  }

  // Bob's device goes offline; meanwhile Alice edits, reacts, deletes and writes again.
  b.client.socket.disconnect();
  await a.client.editMessage(sent[0].id, "one, edited");
  await a.client.react(sent[1].id, "👀");
  await a.client.deleteMessage(sent[2].id);
  const four = await a.client.sendMessage(bob.id, "four");

  b.client.socket.connect();
  const synced = await b.next("synced");
  assert.deepEqual([synced.messages, synced.changed], [1, 3]);
  const updates = b.all("messageUpdated");
  assert.deepEqual(updates.map((m) => m.id), sent.map((m) => m.id), "oldest change first");
  assert.equal(updates[0].content, "one, edited");
  assert.deepEqual(updates[1].reactions, [{ emoji: "👀", count: 1, userIds: [alice.id] }]);
  assert.equal(updates[2].content, "");
  const deleted = await b.next("messageDeleted", (p) => p.messageId === sent[2].id);
  assert.equal(deleted.deletedAt, updates[2].deletedAt);
  const sources = b.records.filter((r) => ["messageUpdated", "messageDeleted"].includes(r.event));
  assert.deepEqual(new Set(sources.map((r) => r.args[1].source)), new Set(["sync"]));
  assert.equal((await b.next("newMessage", (m) => m.id === four.id)).content, "four");

  // Back live: the next edit comes as it happens.
  await a.client.editMessage(four.id, "four!");
  const live = await b.next("messageUpdated", (m) => m.id === four.id);
  assert.equal(live.content, "four!");
  assert.equal(b.records.at(-1).args[1].source, "live");
});

/** A REST call that waits as long as a 429 asks (each user may make 20 changes a second). */
async function paced(method, path, token, body) {
  for (;;) {
    const res = await fetch(`${fx.server.url}${path}`, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status !== 429) {
      const text = await res.text();
      assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
      return JSON.parse(text);
    }
    await res.body?.cancel();
    await new Promise((r) => setTimeout(r, 1_000 * Number(res.headers.get("retry-after") ?? 1)));
  }
}

test("more changes than one sync page holds come over several, each once", async () => {
  // 520 messages from 26 writers (each may make 20 changes a second), all edited afterwards.
  const [bob] = await plainUsers("Bob");
  const writers = [];
  for (let i = 0; i < 26; i++) writers.push(await registerUser(fx.server, `Writer${i}`));
  const drafts = await Promise.all(
    writers.map(async (w) => {
      const mine = [];
      for (let i = 0; i < 20; i++) {
        const body = { content: `draft ${i}` };
        mine.push((await paced("POST", `/api/messages/send/${bob.id}`, w.token, body)).message);
      }
      return mine;
    }),
  );
  const newest = drafts.flat().map((m) => m.id).sort().at(-1);
  // Every edit comes after the newest message was sent, so each is a change after `since`.
  await Promise.all(
    writers.map(async (w, i) => {
      for (const m of drafts[i]) await paced("PATCH", `/api/messages/${m.id}`, w.token, { content: `final ${m.content}` });
    }),
  );

  // Bob's app had every message (as drafts) when it closed; it opens again from there.
  const b = await fx.client(bob, { since: newest });
  const synced = await withTimeout(b.next("synced"), "sync", 30_000);
  assert.equal(synced.messages, 0);
  assert.equal(synced.changed, 520);
  assert.ok(synced.pages >= 2, `520 changes take two pages of 500, got ${synced.pages}`);
  const updates = b.all("messageUpdated");
  assert.equal(new Set(updates.map((m) => m.id)).size, 520, "each change once");
  assert.ok(updates.every((m) => m.content.startsWith("final draft")));
  const rest = await apiOk(fx.server, "GET", `/api/sync?since=${newest}`, { token: bob.token });
  assert.deepEqual([rest.changed.length, rest.hasMoreChanged], [500, true]);
});
