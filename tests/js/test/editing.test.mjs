// Editing, deleting, reacting and replying (SPEC §11) with the official socket.io-client: every
// member's sockets on both servers are told, hostile payloads are refused without harm, and a
// device that was offline learns every change from `sync`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { io } from "socket.io-client";

import {
  NAMESPACES_PATH,
  TIMESTAMP,
  apiOk,
  api,
  assertAckError,
  assertAckOk,
  registerUser,
  useServer,
} from "../helpers.mjs";

const fx = useServer();

function tab(user, label) {
  return fx.connect({ label, token: user.token });
}

/** A `/messenger` socket of the namespace server, once the server has greeted it. */
async function messenger(user, label) {
  const socket = io(`${fx.server.url}/messenger`, {
    path: NAMESPACES_PATH,
    forceNew: true,
    reconnection: false,
    auth: { token: user.token },
  });
  const probe = fx.socket({ label, socket });
  await probe.connected();
  await probe.next("getOnlineUsers");
  return probe;
}

async function group(owner, title, members) {
  const body = { title, memberIds: members.map((m) => m.id) };
  const { conversation } = await apiOk(fx.server, "POST", "/api/conversations", { token: owner.token, body }, 201);
  return conversation.id;
}

test("edits, reactions and deletions reach every member's sockets on both servers, and nobody else", async () => {
  const [alice, bob, carol] = await Promise.all(["Alice", "Bob", "Carol"].map((n) => registerUser(fx.server, n)));
  const conversationId = await group(alice, "Team", [bob]);
  const a = await tab(alice, "alice");
  const b = await tab(bob, "bob");
  const bOld = await messenger(bob, "bob /messenger");
  const c = await tab(carol, "carol");

  const sent = await a.ack("sendMessage", { conversationId, content: "teh plan" });
  assertAckOk(sent, "sendMessage");
  const messageId = sent.message.id;

  const edited = await a.ack("editMessage", { messageId, content: "the plan" });
  assertAckOk(edited, "editMessage");
  assert.equal(edited.message.content, "the plan");
  assert.match(edited.message.editedAt, TIMESTAMP);
  for (const probe of [a, b, bOld]) {
    const updated = await probe.next("messageUpdated");
    assert.deepEqual(updated.message, edited.message, probe.label);
  }

  const reacted = await b.ack("react", { messageId, emoji: "👍", add: true });
  assert.deepEqual(reacted, { ok: true, reactions: [{ emoji: "👍", count: 1, userIds: [bob.id] }] });
  const changed = await bOld.next("reactionsChanged");
  assert.deepEqual(changed, { messageId, conversationId, reactions: reacted.reactions });
  assert.deepEqual((await a.next("reactionsChanged")).reactions, reacted.reactions);

  const reply = await b.ack("sendMessage", { conversationId, content: "agreed", replyToId: messageId });
  assertAckOk(reply, "reply");
  assert.equal(reply.message.replyToId, messageId);

  const deleted = await a.ack("deleteMessage", { messageId });
  assert.deepEqual(deleted, { ok: true });
  for (const probe of [a, b, bOld]) {
    const gone = await probe.next("messageDeleted");
    assert.equal(gone.messageId, messageId);
    assert.equal(gone.conversationId, conversationId);
    assert.match(gone.deletedAt, TIMESTAMP);
  }
  const { messages } = await apiOk(fx.server, "GET", `/api/conversations/${conversationId}/messages`, {
    token: bob.token,
  });
  const tombstone = messages.find((m) => m.id === messageId);
  assert.deepEqual([tombstone.content, tombstone.reactions, tombstone.mentions], ["", [], []]);
  assert.equal(messages.find((m) => m.id === reply.message.id).replyToId, messageId);

  // Carol is in neither conversation: she heard nothing and finds nothing.
  await c.barrier();
  for (const event of ["messageUpdated", "reactionsChanged", "messageDeleted"]) {
    assert.deepEqual(c.all(event), [], `${event} reached a non-member`);
  }
  assertAckError(await c.ack("react", { messageId: reply.message.id, emoji: "👍", add: true }), "message_not_found");
  const hidden = await api(fx.server, "PATCH", `/api/messages/${reply.message.id}`, {
    token: carol.token,
    body: { content: "mine" },
  });
  assert.equal(hidden.status, 404);
  assert.equal(hidden.body.error.code, "message_not_found");
});

test("malformed and hostile payloads get an ack error, change nothing and keep the socket", async () => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const a = await tab(alice, "alice");
  const sent = await a.ack("sendMessage", { to: bob.id, content: "keep me" });
  const messageId = sent.message.id;
  const cases = [
    ["editMessage", undefined, "invalid_payload"],
    ["editMessage", "x", "invalid_payload"],
    ["editMessage", { messageId }, "invalid_payload"],
    ["editMessage", { messageId, content: 5 }, "invalid_payload"],
    ["editMessage", { messageId, content: "" }, "validation_failed"],
    ["editMessage", { messageId, content: "x".repeat(4001) }, "validation_failed"],
    ["editMessage", { messageId: "../../etc", content: "x" }, "message_not_found"],
    ["deleteMessage", {}, "invalid_payload"],
    ["deleteMessage", { messageId: ["a"] }, "invalid_payload"],
    ["react", { messageId, emoji: "👍" }, "invalid_payload"],
    ["react", { messageId, emoji: "👍", add: 1 }, "invalid_payload"],
    ["react", { messageId, emoji: " ", add: true }, "invalid_emoji"],
    ["react", { messageId, emoji: "👍👎", add: true }, "invalid_emoji"],
    ["react", { messageId, emoji: "x".repeat(40), add: true }, "invalid_emoji"],
    ["react", { messageId, emoji: "\u0007", add: true }, "invalid_emoji"],
    ["react", { messageId, emoji: ":DROP TABLE:", add: true }, "invalid_emoji"],
    ["sendMessage", { to: bob.id, content: "x", replyToId: "nope" }, "invalid_reply"],
    ["sync", { since: messageId, changedAfter: 7 }, "invalid_payload"],
    ["sync", { since: messageId, changedAfter: "x.y" }, "validation_failed"],
  ];
  for (const [event, payload, code] of cases) {
    assertAckError(await a.ack(event, payload), code, `${event} ${JSON.stringify(payload)?.slice(0, 60)}`);
  }
  assert.equal(a.socket.connected, true);
  const { messages } = await apiOk(fx.server, "GET", `/api/messages/${bob.id}`, { token: alice.token });
  assert.deepEqual(
    messages.map((m) => [m.content, m.editedAt, m.reactions]),
    [["keep me", null, []]],
  );
});

test("a device that was offline learns every edit, reaction and deletion from sync", async () => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const a = await tab(alice, "alice");
  const ids = [];
  for (const content of ["one", "two", "three"]) {
    ids.push((await a.ack("sendMessage", { to: bob.id, content })).message.id);
  }
  // Bob's device saw "three" and went offline; meanwhile:
  assertAckOk(await a.ack("editMessage", { messageId: ids[0], content: "one!" }), "edit");
  assertAckOk(await a.ack("react", { messageId: ids[1], emoji: ":eyes:", add: true }), "react");
  assertAckOk(await a.ack("deleteMessage", { messageId: ids[2] }), "delete");
  const four = (await a.ack("sendMessage", { to: bob.id, content: "four" })).message.id;

  const b = await tab(bob, "bob, back online");
  const sync = await b.ack("sync", { since: ids[2] });
  assertAckOk(sync, "sync");
  assert.deepEqual(sync.messages.map((m) => m.id), [four]);
  assert.deepEqual(sync.changed.map((m) => m.id), ids, "oldest change first");
  assert.equal(sync.changed[0].content, "one!");
  assert.deepEqual(sync.changed[1].reactions, [{ emoji: ":eyes:", count: 1, userIds: [alice.id] }]);
  assert.match(sync.changed[2].deletedAt, TIMESTAMP);
  assert.deepEqual([sync.hasMoreChanged, sync.changedCursor], [false, null]);
  const rest = await apiOk(fx.server, "GET", `/api/sync?since=${ids[2]}`, { token: bob.token });
  assert.deepEqual(rest.changed, sync.changed);
});
