// Connecting to the main server (`/api/socket`): token and cookie authentication, and the
// handshakes the server must refuse (SPEC §5 "Connecting and authenticating").

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";

import { TIMESTAMP, UUID_V7, api, apiOk, login, registerUser, useServer } from "../helpers.mjs";

const fx = useServer({ MAX_CONNECTIONS_PER_USER: "2" });

/** A JWT like `token` but with other claims, signed HS256 with `secret`. */
function forge(token, secret, changes) {
  const [header, payload] = token.split(".");
  const claims = { ...JSON.parse(Buffer.from(payload, "base64url").toString()), ...changes };
  const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  const signature = createHmac("sha256", secret).update(body).digest("base64url");
  return `${body}.${signature}`;
}

function cookieValue(setCookies, name) {
  const line = setCookies.find((c) => c.startsWith(`${name}=`));
  assert.ok(line, `no ${name} cookie in ${JSON.stringify(setCookies)}`);
  return line.slice(name.length + 1).split(";")[0];
}

test("a valid token in auth gets authenticated, then getOnlineUsers that includes the user", async () => {
  const alice = await registerUser(fx.server, "Alice");
  assert.equal(alice.socketReady, true);
  assert.equal(alice.socket.path, "/api/socket");

  const socket = await fx.connect({ label: "alice", token: alice.token });
  const online = await socket.next("getOnlineUsers");

  assert.ok(
    socket.indexOf("authenticated") < socket.indexOf("getOnlineUsers"),
    `authenticated must come first, got: ${socket.summary()}`,
  );
  const welcome = socket.welcome;
  assert.equal(welcome.user.id, alice.id);
  assert.equal(welcome.user.email, alice.email);
  assert.equal(welcome.user.name, "Alice");
  for (const field of ["avatarUrl", "isAdmin", "isActive", "createdAt", "updatedAt"]) {
    assert.ok(field in welcome.user, `authenticated.user lacks ${field}`);
  }
  for (const secret of ["password", "passwordHash", "password_hash"]) {
    assert.ok(!(secret in welcome.user), `authenticated.user exposes ${secret}`);
  }
  assert.match(welcome.user.id, UUID_V7);
  assert.equal(welcome.sessionId, alice.session.id);
  assert.match(welcome.expiresAt, TIMESTAMP);

  assert.ok(Array.isArray(online.users), `getOnlineUsers.users: ${JSON.stringify(online)}`);
  assert.equal(online.total, online.users.length);
  assert.deepEqual(
    online.users.find((u) => u.userId === alice.id),
    { userId: alice.id, name: "Alice" },
    `alice is not in ${JSON.stringify(online.users)}`,
  );
});

test("the craftcode_token cookie authenticates a socket from an allowed origin", async () => {
  const bob = await registerUser(fx.server, "Bob");
  const token = cookieValue(bob.setCookies, "craftcode_token");
  assert.equal(token, bob.token);

  const cases = [
    { transports: ["websocket"], origin: "http://localhost:3000" },
    { transports: ["websocket"], origin: "http://127.0.0.1:3000" },
    { transports: ["polling"], origin: "http://localhost:3000" },
  ];
  for (const { transports, origin } of cases) {
    const socket = await fx.connect({
      label: `bob over ${transports[0]} from ${origin}`,
      transports,
      extraHeaders: { Cookie: `craftcode_token=${token}`, Origin: origin },
    });
    const welcome = await socket.next("authenticated");
    assert.equal(welcome.user.id, bob.id);
    assert.equal(welcome.sessionId, bob.session.id);
    await socket.barrier(); // authenticated events work
    socket.close();
  }
});

test("a garbage token or one signed with another secret is refused with invalid_token", async () => {
  const carol = await registerUser(fx.server, "Carol");
  assert.equal(await fx.refusal({ token: "not-a-jwt" }), "invalid_token");
  assert.equal(
    await fx.refusal({ token: forge(carol.token, "another-secret-of-at-least-32-bytes!", {}) }),
    "invalid_token",
  );
  assert.equal(
    await fx.refusal({ token: "x.y.z", transports: ["websocket"] }),
    "invalid_token",
  );
});

test("an expired token is refused with token_expired", async () => {
  const dave = await registerUser(fx.server, "Dave");
  const now = Math.floor(Date.now() / 1000);
  const expired = forge(dave.token, fx.server.jwtSecret, { iat: now - 7200, exp: now - 3600 });
  assert.equal(await fx.refusal({ token: expired }), "token_expired");
});

test("a token whose session was logged out is refused with session_revoked", async () => {
  const erin = await registerUser(fx.server, "Erin");
  const bye = await apiOk(fx.server, "POST", "/api/auth/logout", { token: erin.token, body: {} });
  assert.equal(bye.ok, true);
  assert.equal(await fx.refusal({ token: erin.token }), "session_revoked");
  assert.equal(await fx.refusal({ token: erin.token, transports: ["websocket"] }), "session_revoked");
});

test("a deactivated account's token is refused with account_disabled", async () => {
  const frank = await registerUser(fx.server, "Frank");
  fx.server.cli(["user", "set", "--email", frank.email, "--active", "false"]);
  // SPEC §3: a deactivated user's tokens are refused within one second of the change.
  const deadline = Date.now() + 1500;
  let reason;
  for (;;) {
    reason = await fx.refusal({ token: frank.token }).catch(() => "accepted");
    if (reason !== "accepted" || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(reason, "account_disabled");
});

test("a foreign Origin header is refused with origin_not_allowed, even with a valid token", async () => {
  const gina = await registerUser(fx.server, "Gina");
  for (const transports of [["websocket"], ["polling"]]) {
    assert.equal(
      await fx.refusal({
        label: `gina over ${transports[0]}`,
        token: gina.token,
        transports,
        extraHeaders: { Origin: "http://evil.example" },
      }),
      "origin_not_allowed",
    );
    assert.equal(
      await fx.refusal({
        label: `gina's cookie over ${transports[0]}`,
        transports,
        extraHeaders: { Cookie: `craftcode_token=${gina.token}`, Origin: "http://evil.example" },
      }),
      "origin_not_allowed",
    );
  }
});

test("a connection beyond MAX_CONNECTIONS_PER_USER is refused with too_many_connections", async () => {
  const hank = await registerUser(fx.server, "Hank");
  const other = await login(fx.server, hank); // the limit is per user, across sessions
  const first = await fx.connect({ label: "hank 1", token: hank.token });
  await fx.connect({ label: "hank 2", token: other.token });
  assert.equal(await fx.refusal({ label: "hank 3", token: hank.token }), "too_many_connections");
  assert.equal(await fx.refusal({ label: "hank 4", token: other.token }), "too_many_connections");

  // Another user is not affected.
  const ivy = await registerUser(fx.server, "Ivy");
  await fx.connect({ label: "ivy", token: ivy.token });

  // Once a tab closes, a new one is accepted (the server notices the close within moments).
  first.close();
  const deadline = Date.now() + 2000;
  for (;;) {
    const probe = fx.socket({ label: "hank again", token: hank.token });
    const outcome = await probe.connected().then(
      () => "accepted",
      (err) => err.message,
    );
    if (outcome === "accepted") break;
    assert.equal(outcome, "too_many_connections");
    assert.ok(Date.now() < deadline, "hank still refused 2 s after closing a tab");
    await new Promise((r) => setTimeout(r, 50));
  }
});

test("the REST login response points at the socket server", async () => {
  const jack = await registerUser(fx.server, "Jack");
  const me = await api(fx.server, "GET", "/api/auth/me", { token: jack.token });
  assert.equal(me.status, 200);
  assert.deepEqual(
    { socketReady: jack.socketReady, path: jack.socket.path, namespacesPath: jack.socket.namespacesPath },
    { socketReady: true, path: "/api/socket", namespacesPath: "/api/socket-namespaces" },
  );
  assert.equal(typeof jack.socket.url, "string");
});
