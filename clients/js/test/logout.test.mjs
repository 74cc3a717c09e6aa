// The session ending (`force_logout`) or the token being refused (`authError`) stops the client:
// typed events, status `loggedOut`, no reconnection, pending work rejected.

import assert from "node:assert/strict";
import { test } from "node:test";

import { connect } from "../dist/index.js";
import { FAST_RECONNECT, Recorded, apiOk, registerUser, useServer } from "./support.mjs";

const fx = useServer();

/** The database's first user, hence its admin. */
let firstUser = null;
async function theAdmin() {
  firstUser ??= await registerUser(fx.server, "Admin");
  return firstUser;
}

/** Bob's live connections as the admin's user list counts them. */
async function connections(admin, user) {
  const body = await apiOk(fx.server, "GET", `/api/users?q=${encodeURIComponent(user.email)}`, {
    token: admin.token,
  });
  return body.users.find((u) => u.id === user.id).connections;
}

async function assertStopped(recorded, reason, admin, user) {
  const notice = await recorded.next("force_logout");
  assert.equal(notice.reason, reason);
  await recorded.status("loggedOut");
  const client = recorded.client;
  assert.equal(client.socket.active, false, "socket.io-client will not reconnect");
  await assert.rejects(client.ready(), { code: "logged_out" });
  await assert.rejects(client.sendMessage(admin.id, "after the logout"), { code: "logged_out" });
  // The admin's client sees Bob go offline, and the server counts no connection for him.
  assert.equal(await connections(admin, user), 0);
}

test("POST /api/auth/logout: force_logout {reason: logout} stops the client for good", async () => {
  const admin = await theAdmin();
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(admin);
  const b = await fx.client(bob);
  await a.next("presence", (online) => online.has(bob.id));

  await apiOk(fx.server, "POST", "/api/auth/logout", { token: bob.token, body: {} });
  await a.next("presence", (online) => !online.has(bob.id));
  await assertStopped(b, "logout", admin, bob);
});

test("DELETE /api/sessions/{id}: force_logout {reason: session_revoked} stops the client for good", async () => {
  const admin = await theAdmin();
  const bob = await registerUser(fx.server, "Bob");
  const a = await fx.client(admin);
  const b = await fx.client(bob);
  await a.next("presence", (online) => online.has(bob.id));

  await apiOk(fx.server, "DELETE", `/api/sessions/${bob.session.id}`, { token: bob.token });
  await a.next("presence", (online) => !online.has(bob.id));
  await assertStopped(b, "session_revoked", admin, bob);
});

test("a refused token surfaces as authError and the client stops", async () => {
  const client = connect({ url: fx.server.url, token: "not-a-token", ...FAST_RECONNECT });
  const c = new Recorded(client, "garbage");
  fx.clients.push(c);
  const error = await c.next("authError");
  assert.equal(error.code, "invalid_token");
  await c.status("loggedOut");
  assert.equal(client.socket.active, false);
  await assert.rejects(client.ready(), { code: "invalid_token" });
});

test("a refused token is asked for again once: getToken(null) can hand over a fresh one", async () => {
  const bob = await registerUser(fx.server, "Bob");
  const asked = [];
  const client = connect({
    url: fx.server.url,
    token: "expired-or-garbage",
    getToken: (current) => {
      asked.push(current);
      return current ?? bob.token;
    },
    ...FAST_RECONNECT,
  });
  const c = new Recorded(client, "bob");
  fx.clients.push(c);
  const welcome = await c.next("authenticated");
  assert.equal(welcome.user.id, bob.id);
  assert.deepEqual(asked, ["expired-or-garbage", null]);
  assert.deepEqual(c.all("authError"), []);
});
