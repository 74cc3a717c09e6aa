// TURN credentials (SPEC §14): what `GET /api/calls/ice-servers` issues gets a relay allocation
// from a real coturn (`use-auth-secret`), and expired or tampered credentials are refused by it.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, test } from "node:test";

import { Coturn } from "../coturn.mjs";
import { apiOk, registerUser } from "../helpers.mjs";
import { Server } from "../server.mjs";

let turn;
let server;

before(async () => {
  turn = await Coturn.start();
  server = await Server.start({
    env: { STUN_URLS: `stun:127.0.0.1:${turn.port}`, TURN_URLS: turn.url, TURN_SECRET: turn.secret, TURN_TTL: "5m" },
  });
});
after(async () => {
  await server?.dispose();
  await turn?.stop();
});

test("issued TURN credentials get an allocation; expired and tampered ones are refused", async () => {
  const ada = await registerUser(server, "Ada");
  const { iceServers, ttl } = await apiOk(server, "GET", "/api/calls/ice-servers", { token: ada.token });
  assert.equal(ttl, 300);
  assert.deepEqual(iceServers[0], { urls: [`stun:127.0.0.1:${turn.port}`] });
  const { urls, username, credential } = iceServers[1];
  assert.deepEqual(urls, [turn.url]);
  assert.match(username, new RegExp(`^\\d+:${ada.id}$`));

  const issued = await turn.allocate(username, credential);
  assert.ok(issued.ok, `coturn refused the issued credentials:\n${issued.output}`);

  // Tampered: another user's name under the same credential, or a wrong credential.
  const other = username.replace(ada.id, "01a250e4-0000-7000-8000-000000000000");
  assert.equal((await turn.allocate(other, credential)).ok, false);
  assert.equal((await turn.allocate(username, `${credential.slice(0, -4)}AAA=`)).ok, false);
  // Expired: a correctly signed name whose time has passed.
  const expired = `${Math.floor(Date.now() / 1000) - 60}:${ada.id}`;
  const signed = createHmac("sha1", turn.secret).update(expired).digest("base64");
  assert.equal((await turn.allocate(expired, signed)).ok, false);
});
