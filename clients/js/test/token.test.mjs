// The token the client hands over is always the newest: `tokenUpdated` (pushed when an admin
// changes the user's rights) replaces it in place without a reconnect, and the next reconnection
// uses it, although the server now refuses the old one.

import assert from "node:assert/strict";
import { test } from "node:test";

import { api, apiOk, handshake, registerUser, useServer } from "./support.mjs";

const fx = useServer();

test("an admin's change pushes tokenUpdated: applied in place, and the next reconnection uses it", async () => {
  const admin = await registerUser(fx.server, "Admin"); // the first user is the admin
  const bob = await registerUser(fx.server, "Bob");
  const b = await fx.client(bob);
  const socketId = b.client.socket.id;

  await apiOk(fx.server, "PATCH", `/api/users/${bob.id}`, { token: admin.token, body: { isAdmin: true } });
  const update = await b.next("tokenUpdated");
  assert.notEqual(update.token, bob.token);
  assert.equal(b.client.token, update.token, "the client holds the new token");
  assert.equal(b.client.user.isAdmin, true, "the client's user is the new one");
  await b.client.ping();
  assert.equal(b.client.socket.id, socketId, "the same connection");
  assert.equal(b.client.status, "connected");
  assert.deepEqual(b.all("status"), ["connected"], "the connection was never lost");

  // The old token's claims are stale now: the server refuses it.
  assert.equal((await api(fx.server, "GET", "/api/auth/me", { token: bob.token })).status, 401);

  // A dropped transport: socket.io-client reconnects, and the handshake carries the new token.
  b.client.socket.io.engine.close();
  await b.status("reconnecting");
  const again = await b.next("authenticated", (p) => p.sessionId === bob.session.id && b.all("authenticated").length >= 2);
  assert.equal(again.user.isAdmin, true);
  assert.equal(b.client.status, "connected");
  assert.deepEqual(b.all("authError"), []);
  assert.equal(await handshake(fx.server, update.token), "connected");
});
