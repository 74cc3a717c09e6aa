// A connected client never has to refresh by itself (SPEC §5): before the socket's token
// expires the server pushes `tokenUpdated`. JWT_TTL is 6 s here, so it comes after ~5 s.

import assert from "node:assert/strict";
import { test } from "node:test";

import { TIMESTAMP, api, registerUser, useServer } from "../helpers.mjs";

const TTL_MS = 6000;
const fx = useServer({ JWT_TTL: "6s" });

test("tokenUpdated arrives before the token expires, the socket stays connected, the new token works", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const oldExpiry = Date.parse(alice.expiresAt);
  assert.ok(oldExpiry - Date.now() <= TTL_MS + 1000, `expiresAt ${alice.expiresAt} is not ~6 s away`);
  const a = await fx.connect({ label: "alice", token: alice.token });
  assert.equal(a.welcome.expiresAt, alice.expiresAt);

  const update = await a.next("tokenUpdated", { ms: TTL_MS + 2000 });
  const receivedAt = Date.now();
  assert.ok(receivedAt < oldExpiry, `tokenUpdated came ${receivedAt - oldExpiry} ms after expiry`);
  assert.deepEqual(Object.keys(update).sort(), ["expiresAt", "token", "user"]);
  assert.notEqual(update.token, alice.token);
  assert.match(update.expiresAt, TIMESTAMP);
  assert.ok(Date.parse(update.expiresAt) > oldExpiry, "the new token must outlive the old one");
  assert.equal(update.user.id, alice.id);
  assert.equal(a.all("disconnect").length, 0, "tokenUpdated must not disconnect the socket");

  const me = await api(fx.server, "GET", "/api/auth/me", { token: update.token });
  assert.equal(me.status, 200, JSON.stringify(me.body));
  assert.equal(me.body.user.id, alice.id);
  assert.equal(me.body.session.id, alice.session.id, "the new token belongs to the same session");

  // Past the old token's expiry the socket is still connected and served. (`exp` is in whole
  // seconds and the JWT library accepts a token during its `exp` second: wait that second out.)
  const wait = oldExpiry + 1100 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  assert.equal(a.socket.connected, true, `disconnected: ${a.summary()}`);
  assert.equal(a.all("force_logout").length, 0);
  await a.barrier();

  // The old token itself is now expired, for REST and for a new handshake.
  const stale = await api(fx.server, "GET", "/api/auth/me", { token: alice.token });
  assert.equal(stale.status, 401, JSON.stringify(stale.body));
  assert.equal(await fx.refusal({ label: "old token", token: alice.token }), "token_expired");
  await fx.connect({ label: "new token", token: update.token });
});
