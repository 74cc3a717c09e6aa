// JWT_TTL is 6 s here: before the token expires the server pushes `tokenUpdated`; the client
// keeps its connection, and after the old token has expired a reconnection still succeeds
// because the client hands over the new one.

import assert from "node:assert/strict";
import { test } from "node:test";

import { handshake, registerUser, useServer } from "./support.mjs";

const fx = useServer({ JWT_TTL: "6s" });

test("a token about to expire is replaced in place, and reconnections after its expiry use the new one", async () => {
  const alice = await registerUser(fx.server, "Alice");
  const oldExpiry = Date.parse(alice.expiresAt);
  const a = await fx.client(alice);

  const update = await a.next("tokenUpdated", () => true, 15_000);
  assert.equal(a.client.token, update.token);
  assert.deepEqual(a.all("status"), ["connected"], "tokenUpdated did not disconnect");

  // `exp` is in whole seconds and is accepted during its own second: wait that second out.
  const wait = oldExpiry + 1100 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  assert.equal(await handshake(fx.server, alice.token), "token_expired", "the old token is expired");

  a.client.socket.io.engine.close();
  await a.status("reconnecting");
  await a.status("connected");
  assert.equal(a.all("authenticated").length, 2);
  assert.deepEqual(a.all("authError"), []);
});
