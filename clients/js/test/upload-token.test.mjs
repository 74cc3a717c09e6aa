// An upload outlives the token it started with: tus-js-client's `onBeforeRequest` sets the
// client's newest token on every request, and a request refused because its token went stale
// meanwhile is tried again with the new one. The admin's change of the user's rights (which
// pushes `tokenUpdated` and makes the old token refused at once) happens while one of the
// upload's PATCH requests is held back by the proxy.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import { Proxy, api, apiOk, gate, registerUser, useServer, withTimeout } from "./support.mjs";

const fx = useServer();

test("an upload goes on with the token the client got meanwhile", async (t) => {
  const admin = await registerUser(fx.server, "Admin"); // the first user is the admin
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const proxy = await Proxy.start(fx.server.url);
  t.after(() => proxy.close());
  const a = await fx.client(alice, { url: proxy.url });
  const b = await fx.client(bob);
  const group = await a.client.createGroup("Rights", [bob.id]);

  // The second of four PATCHes waits until Alice's token has been replaced and the old one is refused.
  const reached = gate();
  const release = gate();
  t.after(() => release.open());
  let patches = 0;
  proxy.hold = (r) => (r.method === "PATCH" && ++patches === 2 ? (reached.open(r), release.promise) : undefined);
  const data = randomBytes(200_000);
  const uploading = a.client.upload(data, group.id, { chunkSize: 50_000, filename: "rights.bin" });
  const held = await withTimeout(reached.promise, "the second PATCH");
  assert.equal(held.authorization, `Bearer ${alice.token}`);

  await apiOk(fx.server, "PATCH", `/api/users/${alice.id}`, { token: admin.token, body: { isAdmin: true } });
  const update = await a.next("tokenUpdated");
  assert.equal(a.client.token, update.token);
  // Refused on every node within a second of the change: wait until it is here.
  const deadline = Date.now() + 5_000;
  while ((await api(fx.server, "GET", "/api/auth/me", { token: alice.token })).status !== 401) {
    assert.ok(Date.now() < deadline, "the old token is still accepted");
    await new Promise((r) => setTimeout(r, 50));
  }
  release.open();

  const uploaded = await uploading;
  assert.equal(held.status, 401, "the held PATCH, with the old token, was refused");
  const after = proxy.uploads.slice(proxy.uploads.indexOf(held) + 1);
  assert.ok(after.length >= 3, `requests after the refusal: ${after.map((r) => r.method)}`);
  for (const r of after) {
    assert.equal(r.authorization, `Bearer ${update.token}`, `${r.method} carries the new token`);
    assert.ok(r.status === 200 || r.status === 204, `${r.method} answered ${r.status}`);
  }
  assert.equal(after.at(-1).uploadOffset + 50_000, data.length, "the last PATCH ends the file");

  const sent = await a.client.sendToConversation(group.id, "", { attachmentIds: [uploaded.id] });
  const got = await b.next("newMessage", (m) => m.id === sent.id);
  const file = await b.client.fetchAttachment(got.attachments[0]);
  assert.ok(Buffer.from(await file.arrayBuffer()).equals(data), "the same bytes");
});
