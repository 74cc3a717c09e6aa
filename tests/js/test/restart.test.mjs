// Restarts of the server on the same database, port and JWT secret: graceful shutdown with
// `server_shutdown`, socket.io-client's own reconnection followed by `sync`, and durability of
// acknowledged messages across `kill -9` (SPEC §5 server_shutdown, §4 sync, §9).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  apiOk,
  assertAckOk,
  registerUser,
  restSend,
  useServer,
} from "../helpers.mjs";

const fx = useServer();

const RECONNECT = {
  reconnection: true,
  reconnectionDelay: 100,
  reconnectionDelayMax: 300,
  randomizationFactor: 0,
};

test("after a restart the client reconnects by itself and sync returns exactly what it missed", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const bob = await registerUser(fx.server, "Bob");

  // Bob's app hands its token over in an `auth` callback, as apps that refresh tokens do. The
  // test holds that callback while Alice writes, so Bob is not in his rooms yet.
  let gate = null;
  let atGate;
  const reachedGate = new Promise((resolve) => (atGate = resolve));
  const auth = (cb) => {
    if (!gate) return cb({ token: bob.token });
    atGate();
    gate.then(() => cb({ token: bob.token }));
  };

  const a = await fx.connect({ label: "alice", token: alice.token, ...RECONNECT });
  const b = fx.socket({ label: "bob", auth, ...RECONNECT });
  await b.connected();
  await b.next("authenticated");
  const anonymous = await fx.connect({ label: "anonymous polling", transports: ["polling"] });
  // Alice and Bob are on websocket (after the usual polling start) before the shutdown.
  await Promise.all([a.upgraded(), b.upgraded()]);

  const { message: seen } = await restSend(fx.server, alice, bob, "before the restart");
  assert.equal((await b.next("newMessage")).message.id, seen.id);

  let openGate;
  gate = new Promise((resolve) => (openGate = resolve));

  const stopping = fx.server.stop(); // SIGTERM
  for (const socket of [a, b, anonymous]) {
    const notice = await socket.next("server_shutdown");
    assert.equal(typeof notice.reason, "string", `${socket.label}: ${JSON.stringify(notice)}`);
    assert.ok(
      Number.isInteger(notice.reconnectAfterMs) && notice.reconnectAfterMs >= 0,
      `${socket.label}: reconnectAfterMs ${JSON.stringify(notice)}`,
    );
  }
  const exit = await stopping;
  assert.deepEqual(exit, { code: 0, signal: null }, "SIGTERM must end the server cleanly");
  const dropped = await b.next("disconnect");
  assert.ok(
    b.socket.active,
    `socket.io-client will not reconnect by itself after "${dropped}": the server must close ` +
      "the transport on shutdown, not disconnect the socket",
  );

  await fx.server.restart();
  await reachedGate; // Bob's client reconnected the transport and is about to authenticate

  const missed = [];
  for (const content of ["missed 1", "missed 2", "missed 3"]) {
    const sent = await restSend(fx.server, alice, bob, content);
    assert.equal(sent.delivered, false, "bob is not connected yet");
    missed.push(sent.message);
  }

  openGate();
  await b.next("connect");
  const welcome = await b.next("authenticated");
  assert.equal(welcome.user.id, bob.id);
  assert.ok(b.all("io:reconnect").length >= 1, `no reconnect event: ${b.summary()}`);

  const sync = await b.ack("sync", { since: seen.id });
  assertAckOk(sync, "sync");
  assert.deepEqual(
    sync.messages.map((m) => [m.id, m.content]),
    missed.map((m) => [m.id, m.content]),
    "sync must return exactly the missed messages, oldest first",
  );
  assert.equal(sync.hasMore, false);
  await b.barrier();
  assert.equal(b.all("newMessage").length, 1, "the missed messages were not pushed live");

  // Alice's client came back by itself too.
  const again = await a.next("authenticated", { ms: 5000 });
  assert.equal(again.user.id, alice.id);
});

test("every acknowledged message survives kill -9 right after the last ack", async () => {
  const carol = await registerUser(fx.server, "Carol");
  const dave = await registerUser(fx.server, "Dave");
  const c = await fx.connect({ label: "carol", token: carol.token });

  const overSocket = Array.from({ length: 10 }, (_, i) =>
    c.ack("sendMessage", { to: dave.id, content: `socket ${i}`, clientId: `s-${i}` }),
  );
  const overRest = Array.from({ length: 5 }, (_, i) =>
    restSend(fx.server, carol, dave, `rest ${i}`, `r-${i}`),
  );
  const replies = await Promise.all([...overSocket, ...overRest]);
  const crash = fx.server.kill(); // SIGKILL as soon as the last ack is in
  for (const reply of replies) assert.ok(reply.message?.id, `not acked: ${JSON.stringify(reply)}`);
  const acked = replies.map((r) => r.message.id).sort();
  const exit = await crash;
  assert.equal(exit.signal, "SIGKILL");

  await fx.server.restart();
  const history = await apiOk(fx.server, "GET", `/api/messages/${dave.id}?limit=100`, {
    token: carol.token,
  });
  assert.deepEqual(history.messages.map((m) => m.id).sort(), acked, "history after kill -9");
  const sync = await apiOk(fx.server, "GET", "/api/sync?limit=100", { token: dave.token });
  assert.deepEqual(
    sync.messages.map((m) => m.id).filter((id) => acked.includes(id)).sort(),
    acked,
    "dave's sync after kill -9",
  );
});
