// Limits seen by a Socket.IO client (SPEC §9): oversized packets, the per-socket event budget
// (50/s) and the per-user message budget (20/s), all without harm to other clients.

import assert from "node:assert/strict";
import { test } from "node:test";

import { api, apiOk, assertAckError, registerUser, useServer } from "../helpers.mjs";

const fx = useServer();

test("a packet over 64 KiB is refused without harm to other clients", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");
  const b = await fx.connect({ label: "bob", token: bob.token });

  for (const transports of [["websocket"], ["polling"]]) {
    const a = await fx.connect({ label: `alice over ${transports[0]}`, token: alice.token, transports });
    const before = b.all("newMessage").length;
    const huge = "x".repeat(70 * 1024);
    const outcome = await Promise.race([
      a.ack("sendMessage", { to: bob.id, content: huge }, 5000).then((reply) => ({ reply })),
      a.next("disconnect", { ms: 5000 }).then((reason) => ({ reason })),
    ]);
    if (outcome.reply) {
      assert.equal(outcome.reply.ok, false, `a 70 KiB packet was accepted over ${transports[0]}`);
    }
    a.close();

    // Bob and the server carry on; Alice can connect again and send.
    await b.barrier();
    assert.equal(b.all("newMessage").length, before, "the oversized message reached bob");
    const health = await api(fx.server, "GET", "/healthz");
    assert.equal(health.status, 200);
    const again = await fx.connect({ label: "alice again", token: alice.token, transports });
    const reply = await again.ack("sendMessage", { to: bob.id, content: "small" });
    assert.equal(reply.ok, true, JSON.stringify(reply));
    await b.next("newMessage");
    again.close();
  }
});

test("events beyond 50 per second on one socket are acked rate_limited and the socket stays", async () => {
  const carol = await registerUser(fx.server, "Carol");
  const flood = await fx.connect({ label: "carol flooding", token: carol.token });
  const calm = await fx.connect({ label: "carol other tab", token: carol.token });

  const replies = await Promise.all(
    Array.from({ length: 80 }, (_, i) => flood.ack("ping", { ts: i }, 5000)),
  );
  const limited = replies.filter((r) => r.ok === false);
  assert.ok(limited.length > 0, "80 events at once were all accepted");
  assert.ok(replies.length - limited.length >= 40, `only ${replies.length - limited.length} accepted`);
  for (const reply of limited) assertAckError(reply, "rate_limited", "flooded ping");
  assert.equal(flood.socket.connected, true, "a short burst must not disconnect");

  await calm.barrier(); // the budget is per socket
  await new Promise((r) => setTimeout(r, 1100)); // the budget refills
  await flood.barrier();
});

test("messages beyond 20 per second per user are refused with rate_limited and not stored", async () => {
  const dave = await registerUser(fx.server, "Dave");
  const erin = await registerUser(fx.server, "Erin");
  const d = await fx.connect({ label: "dave", token: dave.token });
  const e = await fx.connect({ label: "erin", token: erin.token });

  const replies = await Promise.all(
    Array.from({ length: 35 }, (_, i) =>
      d.ack("sendMessage", { to: erin.id, content: `burst ${i}` }, 5000),
    ),
  );
  const sent = replies.filter((r) => r.ok);
  const limited = replies.filter((r) => !r.ok);
  assert.ok(limited.length > 0, "35 messages at once were all accepted");
  for (const reply of limited) assertAckError(reply, "rate_limited", "burst sendMessage");

  const history = await apiOk(fx.server, "GET", `/api/messages/${erin.id}?limit=100`, {
    token: dave.token,
  });
  assert.equal(history.messages.length, sent.length, "only the accepted messages are stored");
  for (let i = 0; i < sent.length; i++) await e.next("newMessage");
  await e.barrier();
  assert.equal(e.all("newMessage").length, sent.length);
});
