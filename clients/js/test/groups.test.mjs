// Group conversations through the package: made, joined and left over REST with the client's
// token, used over the socket, and a live map of conversations with their unread counts.

import assert from "node:assert/strict";
import { test } from "node:test";

import { registerUser, useServer } from "./support.mjs";

const fx = useServer();

test("a group is made, written to, read and left, and every client's map follows", async () => {
  const [alice, bob, carol] = await Promise.all(
    ["Alice", "Bob", "Carol"].map((name) => registerUser(fx.server, name)),
  );
  const a = await fx.client(alice);
  const b = await fx.client(bob);
  const c = await fx.client(carol);
  await Promise.all([a, b, c].map((r) => r.client.loadConversations()));

  const group = await a.client.createGroup("Trio", [bob.id, carol.id]);
  assert.equal(group.kind, "group");
  assert.equal(group.memberCount, 3);
  for (const r of [b, c]) {
    const updated = await r.next("conversationUpdated", (p) => p.conversation.id === group.id);
    assert.equal(updated.change.type, "created");
    assert.equal(r.client.conversations.get(group.id)?.title, "Trio");
  }

  const sent = await a.client.sendToConversation(group.id, "hello @bob", { mentions: [bob.id] });
  assert.equal(sent.conversationId, group.id);
  assert.equal(sent.to, null);
  for (const r of [b, c]) {
    const got = await r.next("newMessage", (m) => m.id === sent.id);
    assert.equal(got.content, "hello @bob");
  }
  // The created notice and the message are unread; only Bob was mentioned.
  assert.equal(b.client.conversations.get(group.id)?.unreadCount, 2);
  assert.equal(b.client.conversations.get(group.id)?.mentionCount, 1);
  assert.equal(c.client.conversations.get(group.id)?.mentionCount, 0);
  assert.equal(a.client.conversations.get(group.id)?.lastMessage?.id, sent.id);

  // Reading moves Bob's counts, and Alice hears of it.
  const read = await b.client.markConversationRead(group.id, sent.id);
  assert.equal(read, 1);
  assert.equal(b.client.conversations.get(group.id)?.unreadCount, 0);
  const receipt = await a.next("messagesRead", (p) => p.conversationId === group.id);
  assert.equal(receipt.by, bob.id);

  // Typing in the group reaches the others with the conversation's id.
  c.client.typingIn(group.id);
  const typing = await b.next("userTyping", (p) => p.userId === carol.id && p.isTyping);
  assert.equal(typing.conversationId, group.id);

  // Carol leaves: it goes from her map, and the others see the member count drop.
  await c.client.leave(group.id);
  assert.equal(c.client.conversations.has(group.id), false);
  await c.next("conversationRemoved", (p) => p.conversationId === group.id && p.reason === "left");
  await a.next("conversationUpdated", (p) => p.conversation.id === group.id && p.change.type === "memberLeft");
  assert.equal(a.client.conversations.get(group.id)?.memberCount, 2);

  // Errors carry the server's codes.
  await assert.rejects(c.client.sendToConversation(group.id, "let me back"), { code: "conversation_not_found" });
  await assert.rejects(a.client.leave(group.id), { code: "owner_must_transfer" });
});
