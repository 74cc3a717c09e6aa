// Notifications reach the `notification` listeners once each: live, and — for those created while
// the client was away — through the same catch-up that brings the missed messages.

import assert from "node:assert/strict";
import { test } from "node:test";

import { apiOk, gate, registerUser, useServer } from "./support.mjs";

const fx = useServer();

test("notifications created while the client was away are caught up once each, in order", async () => {
  const admin = await registerUser(fx.server, "Admin"); // the first user is the admin
  const bob = await registerUser(fx.server, "Bob");
  const notify = (title) =>
    apiOk(fx.server, "POST", "/api/notifications", { token: admin.token, body: { userId: bob.id, title, body: "b" } }, 201);

  let held = null;
  const atGate = gate();
  const getToken = async (current) => {
    if (held) {
      atGate.open();
      await held.promise;
    }
    return current;
  };
  const b = await fx.client(bob, { getToken, syncPageSize: 2 });

  await notify("live one");
  const live = await b.next("notification");
  assert.equal(live.title, "live one");

  held = gate();
  await fx.server.stop();
  await b.status("reconnecting");
  await fx.server.restart();
  await atGate.promise;
  for (const title of ["away 1", "away 2", "away 3"]) await notify(title);
  held.open();
  await b.next("synced");
  await notify("live two");
  await b.next("notification", (n) => n.title === "live two");
  await b.client.ping();

  assert.deepEqual(
    b.records.filter((r) => r.event === "notification").map((r) => [r.args[0].title, r.args[1].source]),
    [["live one", "live"], ["away 1", "sync"], ["away 2", "sync"], ["away 3", "sync"], ["live two", "live"]],
  );
});
