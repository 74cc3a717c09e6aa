// Attachments through the package (SPEC §12): `upload()` over tus with `tus-js-client`, the
// others following the upload live (`uploadProgress`, the `uploads` map), the message that
// attaches it, and the download of the very same bytes; a broken connection that the upload
// survives, an abort that deletes it, and the server's refusals as codes. The uploader goes
// through a proxy (support.mjs) that slows its uplink down, breaks it, or holds requests, so
// that every step is seen as it happens, without sleeping.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import { Proxy, gate, makePng, pngSize, registerUser, uploadOffset, useServer, withTimeout } from "./support.mjs";

const fx = useServer();

/** A proxy for one test, closed after it. */
async function proxyFor(t) {
  const proxy = await Proxy.start(fx.server.url);
  t.after(() => proxy.close());
  return proxy;
}

test("a picture sent to a conversation: the other side follows its upload, gets the message with it and downloads the same bytes", async (t) => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const proxy = await proxyFor(t);
  // Alice's uplink does about 250 kB/s: the 600 kB picture takes more than two seconds.
  proxy.bytesPerSecond = 250_000;
  const a = await fx.client(alice, { url: proxy.url });
  const b = await fx.client(bob);
  const seen = { alice: [], bob: [] };
  a.client.on("uploads", (map) => seen.alice.push([...map.keys()]));
  b.client.on("uploads", (map) => seen.bob.push([...map.values()].map((u) => ({ ...u }))));

  const hello = await a.client.sendMessage(bob.id, "A picture is coming");
  await b.next("newMessage", (m) => m.id === hello.id);
  const png = makePng(450, 450);
  const progress = [];
  const uploaded = await a.client.upload(png, hello.conversationId, {
    filename: "photo.png",
    contentType: "image/png",
    onProgress: (sent, total) => progress.push([sent, total]),
  });
  assert.equal(uploaded.conversationId, hello.conversationId);
  assert.equal(uploaded.filename, "photo.png");
  assert.equal(uploaded.size, png.length);
  assert.match(uploaded.id, /^[0-9a-f-]{36}$/);
  assert.deepEqual(progress.at(-1), [png.length, png.length], "onProgress ends at the size");
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i][0] >= progress[i - 1][0], "onProgress only grows");
  const post = proxy.uploads.find((r) => r.method === "POST");
  assert.equal(post.authorization, `Bearer ${alice.token}`);
  assert.equal(post.status, 201);

  // Bob heard of it while the bytes came in, then once more when it was complete.
  const partial = await b.next("uploadProgress", (p) => p.uploadId === uploaded.id && p.offset < p.size);
  assert.deepEqual(
    { ...partial, offset: 0 },
    { uploadId: uploaded.id, conversationId: hello.conversationId, from: alice.id, filename: "photo.png", size: png.length, offset: 0 },
  );
  assert.ok(partial.offset > 0, "some bytes had arrived");
  await b.next("uploadProgress", (p) => p.uploadId === uploaded.id && p.offset === p.size);
  // His map had it while it came in, and let it go once complete.
  assert.ok(seen.bob.some((list) => list.some((u) => u.uploadId === uploaded.id && u.offset < u.size)));
  assert.equal(b.client.uploads.has(uploaded.id), false);
  assert.deepEqual(b.client.uploadsIn(hello.conversationId), []);
  // Alice's client has its own progress: her map stays out of it.
  assert.ok(seen.alice.every((ids) => !ids.includes(uploaded.id)), "not in the uploader's map");

  // Attached to a message without text.
  const sent = await a.client.sendMessage(bob.id, "", { attachmentIds: [uploaded.id] });
  const got = await b.next("newMessage", (m) => m.id === sent.id);
  assert.equal(got.content, "");
  assert.equal(got.attachments.length, 1);
  const [attachment] = got.attachments;
  assert.deepEqual(attachment, {
    id: uploaded.id,
    filename: "photo.png",
    size: png.length,
    contentType: "image/png",
    width: 450,
    height: 450,
    url: `/api/attachments/${uploaded.id}`,
    thumbnailUrl: `/api/attachments/${uploaded.id}/thumbnail`,
  });
  assert.deepEqual(sent.attachments, got.attachments, "the sender's copy is the same");
  assert.equal(b.client.attachmentUrl(attachment), `${fx.server.url}/api/attachments/${uploaded.id}`);
  assert.equal(b.client.attachmentUrl(attachment, "thumbnail"), `${fx.server.url}/api/attachments/${uploaded.id}/thumbnail`);
  assert.equal(b.client.attachmentUrl({ ...attachment, thumbnailUrl: null }, "thumbnail"), null);

  // Bob downloads exactly what Alice sent, and a thumbnail of at most 320 px.
  const file = await b.client.fetchAttachment(attachment);
  assert.equal(file.type, "image/png");
  assert.ok(Buffer.from(await file.arrayBuffer()).equals(png), "the same bytes");
  const thumbnail = await b.client.fetchAttachment(attachment, { thumbnail: true });
  assert.match(thumbnail.type, /^image\//);
  if (thumbnail.type === "image/png") {
    const size = pngSize(Buffer.from(await thumbnail.arrayBuffer()));
    assert.ok(size.width <= 320 && size.height <= 320, `thumbnail ${size.width}×${size.height}`);
  }
  // Without the token it is not to be had.
  assert.equal((await fetch(b.client.attachmentUrl(attachment))).status, 401);
});

test("a file of bytes to a group reaches every member; a second attach of it and strangers are refused", async (t) => {
  const [alice, bob, carol, dave] = await Promise.all(["Alice", "Bob", "Carol", "Dave"].map((n) => registerUser(fx.server, n)));
  const proxy = await proxyFor(t);
  proxy.bytesPerSecond = 200_000;
  const a = await fx.client(alice, { url: proxy.url });
  const b = await fx.client(bob);
  const c = await fx.client(carol);
  const d = await fx.client(dave);
  const group = await a.client.createGroup("Files", [bob.id, carol.id]);
  // Uint8Array and Blob go as well as a Buffer.
  const bytes = new Uint8Array(randomBytes(300_000));
  const uploaded = await a.client.upload(new Blob([bytes], { type: "application/x-thing" }), group.id, { filename: "data.bin" });
  assert.equal(uploaded.contentType, "application/x-thing");
  for (const r of [b, c]) {
    const p = await r.next("uploadProgress", (p) => p.uploadId === uploaded.id && p.offset === p.size);
    assert.equal(p.conversationId, group.id);
    assert.equal(p.from, alice.id);
  }
  const sent = await a.client.sendToConversation(group.id, "the data", { attachmentIds: [uploaded.id] });
  for (const r of [b, c]) {
    const got = await r.next("newMessage", (m) => m.id === sent.id);
    assert.equal(got.attachments[0].id, uploaded.id);
    assert.equal(got.attachments[0].width, null);
    assert.equal(got.attachments[0].thumbnailUrl, null);
    const file = await r.client.fetchAttachment(got.attachments[0]);
    assert.ok(Buffer.from(await file.arrayBuffer()).equals(Buffer.from(bytes)));
  }
  assert.deepEqual(d.all("uploadProgress"), [], "a stranger hears nothing");
  await assert.rejects(d.client.fetchAttachment(sent.attachments[0]), { code: "attachment_not_found" });
  await assert.rejects(d.client.upload(Buffer.from("hello"), group.id), { name: "RealtimeError", code: "conversation_not_found" });
  // An upload goes with one message only.
  await assert.rejects(a.client.sendToConversation(group.id, "again", { attachmentIds: [uploaded.id] }), { code: "invalid_attachment" });
});

test("an upload whose connection breaks mid-file continues where the server stopped", async (t) => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const proxy = await proxyFor(t);
  const a = await fx.client(alice, { url: proxy.url });
  const b = await fx.client(bob);
  const group = await a.client.createGroup("Big files", [bob.id]);
  const data = randomBytes(400_000);
  // The first PATCH breaks after 150 kB; the HEAD that follows waits until the server has
  // committed what it received, so the upload must continue from there.
  let broken = false;
  proxy.cut = (r) => (r.method === "PATCH" && !broken ? ((broken = true), 150_000) : null);
  let committed = null;
  proxy.hold = async (r) => {
    if (r.method !== "HEAD") return;
    const id = r.path.split("/").pop();
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { offset } = await uploadOffset(fx.server, alice.token, id);
      if (offset > 0) return void (committed ??= offset);
      assert.ok(Date.now() < deadline, "the server kept nothing of the broken PATCH");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const uploaded = await a.client.upload(data, group.id, { filename: "big.bin", retryDelays: [0, 200, 500] });
  const methods = proxy.uploads.map((r) => `${r.method} ${r.status}`);
  assert.deepEqual(methods.slice(0, 2), ["POST 201", "PATCH cut"]);
  assert.ok(methods.includes("HEAD 200"), `a HEAD after the break: ${methods}`);
  const resumed = proxy.uploads.filter((r) => r.method === "PATCH" && r.status === 204);
  assert.ok(committed > 0 && committed <= 150_000);
  assert.equal(resumed[0].uploadOffset, committed, "the next PATCH starts at the server's offset");
  const sent = await a.client.sendToConversation(group.id, "", { attachmentIds: [uploaded.id] });
  const got = await b.next("newMessage", (m) => m.id === sent.id);
  const file = await b.client.fetchAttachment(got.attachments[0]);
  assert.ok(Buffer.from(await file.arrayBuffer()).equals(data), "the same bytes");
});

test("aborting an upload rejects it and deletes it on the server", async (t) => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const proxy = await proxyFor(t);
  const a = await fx.client(alice, { url: proxy.url });
  const group = await a.client.createGroup("Drafts", [bob.id]);
  const patching = gate();
  const never = gate();
  t.after(() => never.open());
  proxy.hold = (r) => (r.method === "PATCH" ? (patching.open(), never.promise) : undefined);
  const controller = new AbortController();
  let id = null;
  const uploading = a.client.upload(randomBytes(50_000), group.id, { signal: controller.signal, onUploadId: (x) => (id = x) });
  await withTimeout(patching.promise, "the PATCH");
  assert.equal((await uploadOffset(fx.server, alice.token, id)).status, 200);
  controller.abort();
  await assert.rejects(uploading, { name: "AbortError" });
  const deleted = await proxy.answered((r) => r.method === "DELETE");
  assert.equal(deleted.status, 204);
  assert.equal(deleted.authorization, `Bearer ${alice.token}`);
  assert.equal((await uploadOffset(fx.server, alice.token, id)).status, 404, "gone");
  // An already aborted signal sends nothing.
  const before = proxy.uploads.length;
  await assert.rejects(a.client.upload(Buffer.from("x"), group.id, { signal: AbortSignal.abort() }), { name: "AbortError" });
  assert.equal(proxy.uploads.length, before);
});

// SPEC §12: members hear of an upload "while bytes arrive, at most once a second". The server
// only tells within one PATCH that has run for a second or more (its clock starts again with
// every PATCH), so an upload in chunks (tus-js-client's `chunkSize`) whose requests each take
// less than a second is heard of only once it is complete. Reported; this test passes once the
// server tells what arrived across PATCHes too.
test("an upload in chunks is heard of while it comes in, not only once complete", async (t) => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const proxy = await proxyFor(t);
  proxy.bytesPerSecond = 250_000;
  const a = await fx.client(alice, { url: proxy.url });
  const b = await fx.client(bob);
  const group = await a.client.createGroup("Chunks", [bob.id]);
  // 600 kB in 50 kB requests at 250 kB/s: twelve PATCHes over more than two seconds.
  const uploaded = await a.client.upload(randomBytes(600_000), group.id, { chunkSize: 50_000 });
  assert.equal(proxy.uploads.filter((r) => r.method === "PATCH" && r.status === 204).length, 12);
  await b.next("uploadProgress", (p) => p.uploadId === uploaded.id && p.offset === p.size);
  const partial = b.all("uploadProgress").filter((p) => p.uploadId === uploaded.id && p.offset < p.size);
  assert.ok(partial.length >= 1, "at least one uploadProgress before the last");
});
