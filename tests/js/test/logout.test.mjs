// Logout over REST ends the session; its sockets get `force_logout {reason:"logout"}` and are
// disconnected, and they cannot come back with the old token (SPEC §4 Auth, §5 force_logout).

import assert from "node:assert/strict";
import { test } from "node:test";

import { apiOk, login, registerUser, useServer } from "../helpers.mjs";

const fx = useServer();

/** The events a socket got when it was logged out: force_logout first, then the disconnect. */
async function assertLoggedOut(socket) {
  const notice = await socket.next("force_logout");
  assert.deepEqual(notice, { reason: "logout" });
  assert.equal(await socket.next("disconnect"), "io server disconnect");
  assert.ok(
    socket.indexOf("force_logout") < socket.indexOf("disconnect"),
    `force_logout must come before the disconnect: ${socket.summary()}`,
  );
}

test("logout sends force_logout {reason:'logout'} to that session's sockets, then disconnects them", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const laptop = await login(fx.server, alice);
  const [phone1, phone2, pc] = await Promise.all([
    fx.connect({ label: "phone tab 1", token: alice.token }),
    fx.connect({ label: "phone tab 2", token: alice.token }),
    fx.connect({ label: "laptop", token: laptop.token }),
  ]);

  const bye = await apiOk(fx.server, "POST", "/api/auth/logout", { token: alice.token, body: {} });
  assert.deepEqual(bye, { ok: true, sessionsEnded: 1, socketsDisconnected: 2 });
  await assertLoggedOut(phone1);
  await assertLoggedOut(phone2);

  // The other session is untouched.
  await pc.barrier();
  assert.equal(pc.socket.connected, true);
  assert.equal(pc.all("force_logout").length, 0);
});

test("a logged-out client is not reconnected: the server refuses its old token", async () => {
  const bob = await registerUser(fx.server, "Bob");
  const socket = await fx.connect({
    label: "bob",
    token: bob.token,
    reconnection: true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 100,
  });

  await apiOk(fx.server, "POST", "/api/auth/logout", { token: bob.token, body: {} });
  await assertLoggedOut(socket);
  // socket.io-client does not reconnect by itself after a server-side disconnect…
  assert.equal(socket.socket.active, false, "the client must not try to reconnect by itself");
  // …and when the app tries anyway, the handshake is refused.
  socket.socket.connect();
  const refused = await socket.next("connect_error");
  assert.equal(refused.message, "session_revoked");
  assert.equal(socket.socket.connected, false);
  assert.equal(socket.all("authenticated").length, 1, "no second authenticated");
});

test("logout with all:true ends every session and disconnects all of the user's sockets", async () => {
  const carol = await registerUser(fx.server, "Carol");
  const dave = await registerUser(fx.server, "Dave");
  const laptop = await login(fx.server, carol);
  const [phone, pc] = await Promise.all([
    fx.connect({ label: "carol phone", token: carol.token }),
    fx.connect({ label: "carol laptop", token: laptop.token }),
  ]);
  const bystander = await fx.connect({ label: "dave", token: dave.token });

  const bye = await apiOk(fx.server, "POST", "/api/auth/logout", {
    token: carol.token,
    body: { all: true },
  });
  assert.deepEqual(bye, { ok: true, sessionsEnded: 2, socketsDisconnected: 2 });
  await assertLoggedOut(phone);
  await assertLoggedOut(pc);
  assert.equal(await fx.refusal({ token: laptop.token }), "session_revoked");

  await bystander.barrier();
  assert.equal(bystander.all("force_logout").length, 0, "another user was logged out");
});
