// Attachments (SPEC §12) with the official tus-js-client against a real server: a resumable tus
// 1.0.0 upload whose progress reaches the conversation's sockets (throttled to one a second, then
// once on completion), attached to a message and downloaded byte-identical; pausing and resuming
// with the upload URL; a connection dropped in the middle of a PATCH, resumed from the bytes the
// server kept; and who may touch an upload.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { Readable } from "node:stream";
import { test } from "node:test";

import * as tus from "tus-js-client";

import { api, apiOk, assertAckOk, registerUser, restSend, useServer, WAIT_MS } from "../helpers.mjs";

const fx = useServer();

const KiB = 1024;
const MiB = 1024 * KiB;
/** How long one upload of these few MiB over localhost may take before the test fails. */
const UPLOAD_MS = 20_000;
/**
 * The server sends `uploadProgress` at most once a second per upload. The test sees when they
 * arrive, so two may look a little closer than that (one delayed on a busy machine), never much:
 * an unthrottled server would send them milliseconds apart.
 */
const PROGRESS_MIN_GAP_MS = 800;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `promise`, or a rejection naming `what` after `ms`. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting until ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// tus-js-client

/**
 * Runs a `tus.Upload` of `file` to this server until it succeeds; rejects with the client's error
 * (or after `ms`, having aborted it). `options` go to tus-js-client as they are, after the
 * defaults here (the endpoint, the user's Bearer token, no retries unless asked); `upload.done`
 * settles with the result.
 */
function tusUpload(user, file, options = {}, ms = UPLOAD_MS) {
  let upload;
  let timer;
  const done = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      upload.abort();
      reject(new Error(`the tus upload did not finish within ${ms} ms (url ${upload.url})`));
    }, ms);
    upload = new tus.Upload(file, {
      endpoint: `${fx.server.url}/api/uploads`,
      headers: { Authorization: `Bearer ${user.token}` },
      retryDelays: null,
      ...options,
      onSuccess: (payload) => {
        clearTimeout(timer);
        options.onSuccess?.(payload);
        resolve(upload);
      },
      onError: (err) => {
        clearTimeout(timer);
        reject(err);
      },
    });
  });
  upload.done = done;
  /** A pause: aborts the upload, which then never settles `done`. */
  upload.pause = () => {
    clearTimeout(timer);
    upload.abort();
  };
  return upload;
}

/**
 * Starts an upload that the test aborts (`upload.abort()`, a pause) from `onChunkComplete` once the
 * server accepted at least `bytes`; resolves with the upload then. tus-js-client sends no further
 * PATCH after an abort from that callback, so the server holds exactly what it acknowledged.
 */
function uploadUntil(user, file, bytes, options = {}, ms = UPLOAD_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      upload.pause();
      reject(new Error(`the upload did not reach ${bytes} bytes within ${ms} ms`));
    }, ms);
    const upload = tusUpload(user, file, {
      ...options,
      onChunkComplete: (_chunk, accepted) => {
        if (accepted >= bytes) {
          upload.pause();
          clearTimeout(timer);
          resolve({ upload, accepted });
        }
      },
    }, ms);
    upload.done.then(
      () => reject(new Error(`the upload finished before it was paused at ${bytes} bytes`)),
      reject,
    );
    upload.start();
  });
}

/** Records every request tus-js-client makes: `{method, url, offset}` (Upload-Offset sent). */
function requestLog() {
  const log = [];
  return {
    log,
    onBeforeRequest: (req) => {
      log.push({ method: req.getMethod(), url: req.getURL(), offset: req.getHeader("Upload-Offset") ?? null });
    },
  };
}

const uploadIdOf = (upload) => new URL(upload.url).pathname.split("/").pop();

// ---------------------------------------------------------------------------------------------
// Plain HTTP

const TUS = { "tus-resumable": "1.0.0" };
const bearer = (user) => ({ authorization: `Bearer ${user.token}` });

/** `HEAD` of an upload: `{status, offset, length}` (numbers, or null when absent). */
async function head(url, user) {
  const res = await fetch(url, { method: "HEAD", headers: { ...TUS, ...bearer(user) }, signal: AbortSignal.timeout(WAIT_MS) });
  const num = (name) => (res.headers.get(name) === null ? null : Number(res.headers.get(name)));
  return { status: res.status, offset: num("upload-offset"), length: num("upload-length") };
}

/** A raw PATCH (for the refusals tus-js-client would never send). */
async function patch(url, user, offset, body) {
  const res = await fetch(url, {
    method: "PATCH",
    headers: { ...TUS, ...bearer(user), "content-type": "application/offset+octet-stream", "upload-offset": String(offset) },
    body,
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

/** `GET` of an attachment's (or thumbnail's) path: `{status, headers, bytes}`. */
async function download(path, user, headers = {}) {
  const res = await fetch(`${fx.server.url}${path}`, {
    headers: { ...bearer(user), ...headers },
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

function assertSameBytes(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} bytes, expected ${expected.length}`);
  assert.ok(actual.equals(expected), `${what}: the bytes differ from what was uploaded`);
}

async function group(owner, members) {
  const body = { title: "Files", memberIds: members.map((m) => m.id) };
  return (await apiOk(fx.server, "POST", "/api/conversations", { token: owner.token, body }, 201)).conversation.id;
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy between tus-js-client and the server: to slow an upload down to a given rate, or
// to cut a connection in the middle of a PATCH.

class Proxy {
  /**
   * `bytesPerSecond`: how fast bytes go from the client to the server. `dropAfter`: cuts the first
   * connection that has forwarded that many bytes to the server (its end of the body gets there,
   * then both sides are closed); the connections that come after the cut wait, their bytes
   * buffered, until `release()`.
   */
  constructor(targetPort, { bytesPerSecond = Infinity, dropAfter = Infinity } = {}) {
    this.targetPort = targetPort;
    this.bytesPerSecond = bytesPerSecond;
    this.dropAfter = dropAfter;
    this.held = [];
    this.holding = false;
    this.didDrop = false;
    this.dropped = new Promise((resolve) => (this.onDropped = resolve));
    this.sockets = new Set();
    this.timers = new Set();
  }

  async start() {
    this.server = net.createServer((client) => this.#accept(client));
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
  }

  release() {
    this.holding = false;
    for (const client of this.held.splice(0)) this.#connect(client);
  }

  #track(socket) {
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => {});
  }

  #accept(client) {
    this.#track(client);
    client.pause();
    if (this.holding) this.held.push(client);
    else this.#connect(client);
  }

  #connect(client) {
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    this.#track(upstream);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    upstream.pipe(client);
    let forwarded = 0;
    let cut = false;
    let clock = 0; // when the rate allows the next byte
    client.on("data", (chunk) => {
      if (cut) return;
      if (!this.didDrop && forwarded + chunk.length >= this.dropAfter) {
        // The cut: the bytes up to `dropAfter` reach the server, the rest of the body never will.
        cut = true;
        this.didDrop = true;
        this.holding = true;
        const part = this.dropAfter - forwarded;
        forwarded += part;
        upstream.end(chunk.subarray(0, part), () => {
          upstream.destroy();
          client.destroy();
          this.onDropped(forwarded);
        });
        return;
      }
      forwarded += chunk.length;
      upstream.write(chunk);
      if (this.bytesPerSecond === Infinity) return;
      const now = Date.now();
      clock = Math.max(clock, now) + (chunk.length / this.bytesPerSecond) * 1000;
      if (clock > now + 5) {
        client.pause();
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          client.resume();
        }, clock - now);
        this.timers.add(timer);
      }
    });
    client.resume();
  }

  async close() {
    for (const timer of this.timers) clearTimeout(timer);
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/**
 * Checks the `uploadProgress` events `probe` got for an upload that took `took` ms from
 * `startedAt`: the fields, growing offsets, one final event (offset === size) at the end, at
 * least one while the bytes were still arriving, and never two less than a second apart but for
 * the final one.
 */
async function assertProgress(probe, { uploadId, conversationId, uploader, filename, size, startedAt, took }) {
  const final = await probe.next("uploadProgress", { where: (p) => p.uploadId === uploadId && p.offset === size });
  assert.deepEqual(final, { uploadId, conversationId, from: uploader.id, filename, size, offset: size });
  await probe.barrier();
  const events = probe.records.filter((r) => r.event === "uploadProgress" && r.payload.uploadId === uploadId);
  const offsets = events.map((e) => e.payload.offset);
  const what =
    `${probe.label}: uploadProgress offsets ${JSON.stringify(offsets)} received at ` +
    `${JSON.stringify(events.map((e) => e.at - startedAt))} ms (the upload took ${took} ms)`;
  for (const e of events) {
    assert.deepEqual({ ...e.payload, offset: size }, final, `${what}: the same fields in each`);
  }
  assert.equal(offsets.filter((o) => o === size).length, 1, `${what}: exactly one final event`);
  assert.equal(offsets.at(-1), size, `${what}: the final one comes last`);
  for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i] > offsets[i - 1], `${what}: offsets grow`);
  assert.ok(offsets[0] > 0, `${what}: no event before any byte arrived`);
  // The bytes kept arriving for more than 2 s: progress was told while they did.
  assert.ok(offsets.length >= 2, `${what}: progress while the bytes arrived, not only at the end`);
  for (let i = 1; i < events.length - 1; i++) {
    const gap = events[i].at - events[i - 1].at;
    assert.ok(gap >= PROGRESS_MIN_GAP_MS, `${what}: two progress events ${gap} ms apart`);
  }
  assert.ok(offsets.length - 1 <= Math.ceil(took / 1000), `${what}: at most one a second, plus the final`);
}

// ---------------------------------------------------------------------------------------------

test("a 3 MiB upload tells its progress at most once a second; attached, it downloads byte-identical", { timeout: 45_000 }, async () => {
  const [alice, bob, carol] = await Promise.all(["Alice", "Bob", "Carol"].map((n) => registerUser(fx.server, n)));
  const { message: hello } = await restSend(fx.server, alice, bob, "a file follows");
  const conversationId = hello.conversationId;
  const b = await fx.connect({ label: "bob", token: bob.token });
  const aOther = await fx.connect({ label: "alice's other tab", token: alice.token });
  const c = await fx.connect({ label: "carol", token: carol.token });

  // 3 MiB of random bytes (no known file type), claimed to be a PNG, in one PATCH that a proxy
  // slows to 1.25 MiB/s: the bytes arrive for about 2.4 s.
  const file = randomBytes(3 * MiB);
  const proxy = new Proxy(fx.server.port, { bytesPerSecond: 1.25 * MiB });
  await proxy.start();
  const requests = requestLog();
  const startedAt = Date.now();
  let upload;
  try {
    upload = tusUpload(alice, file, {
      endpoint: `${proxy.url}/api/uploads`,
      metadata: { filename: "holiday.png", filetype: "image/png", conversationId },
      onBeforeRequest: requests.onBeforeRequest,
    });
    upload.start();
    await upload.done;
  } finally {
    await proxy.close();
  }
  const took = Date.now() - startedAt;
  const uploadId = uploadIdOf(upload);
  assert.equal(new URL(upload.url).pathname, `/api/uploads/${uploadId}`);
  assert.deepEqual(requests.log.map((r) => r.method), ["POST", "PATCH"], "one creation, one PATCH");
  assert.ok(took >= 2000, `the proxy slowed the upload down (it took ${took} ms)`);

  // Bob (the other member) and Alice's other tab were told; Carol (no member) was not.
  const expected = { uploadId, conversationId, uploader: alice, filename: "holiday.png", size: file.length };
  for (const probe of [b, aOther]) await assertProgress(probe, { ...expected, startedAt, took });
  await c.barrier();
  assert.deepEqual(c.all("uploadProgress"), [], "a non-member gets no uploadProgress");

  // Alice attaches it over her socket, with no text: Bob's newMessage carries the attachment.
  const sent = await aOther.ack("sendMessage", { to: bob.id, content: "", attachmentIds: [uploadId] });
  assertAckOk(sent, "sendMessage with attachmentIds");
  assert.equal(sent.message.content, "");
  assert.equal(sent.message.conversationId, conversationId);
  assert.deepEqual(sent.message.attachments, [
    {
      id: uploadId,
      filename: "holiday.png",
      size: file.length,
      // Sniffed: random bytes are no image, whatever the client claimed.
      contentType: "application/octet-stream",
      width: null,
      height: null,
      url: `/api/attachments/${uploadId}`,
      thumbnailUrl: null,
    },
  ]);
  const { message } = await b.next("newMessage", { where: (p) => p.message.id === sent.message.id });
  assert.deepEqual(message.attachments, sent.message.attachments);

  // Bob downloads it: the same bytes, as a download (never shown inline), with an ETag.
  const got = await download(message.attachments[0].url, bob);
  assert.equal(got.status, 200);
  assertSameBytes(got.bytes, file, "Bob's download");
  assert.equal(got.headers.get("content-length"), String(file.length));
  assert.equal(got.headers.get("x-content-type-options"), "nosniff");
  assert.match(got.headers.get("content-disposition") ?? "", /^attachment/);
  assert.ok(got.headers.get("etag"), "an ETag");
  // A range of it.
  const range = await download(message.attachments[0].url, bob, { range: "bytes=1000000-1000999" });
  assert.equal(range.status, 206);
  assert.equal(range.headers.get("content-range"), `bytes 1000000-1000999/${file.length}`);
  assertSameBytes(range.bytes, file.subarray(1_000_000, 1_001_000), "the range");
  // Carol may not.
  const refused = await api(fx.server, "GET", message.attachments[0].url, { token: carol.token });
  assert.equal(refused.status, 404);
  assert.equal(refused.body.error?.code, "attachment_not_found", JSON.stringify(refused.body));
});

test("an upload in many small PATCHes tells its progress once a second across them, not only at the end", { timeout: 30_000 }, async () => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const conversationId = await group(alice, [bob]);
  const b = await fx.connect({ label: "bob", token: bob.token });

  // tus-js-client reads the 3 MiB from a stream that yields 128 KiB every 100 ms and sends a
  // PATCH per 256 KiB (as browsers do with `chunkSize`): 12 quick PATCHes spread over ~2.4 s.
  const file = randomBytes(3 * MiB);
  const piece = 128 * KiB;
  let position = 0;
  const paced = new Readable({
    read() {
      setTimeout(() => {
        if (position >= file.length) return this.push(null);
        this.push(file.subarray(position, position + piece));
        position += piece;
      }, 100);
    },
  });
  const requests = requestLog();
  const startedAt = Date.now();
  const upload = tusUpload(alice, paced, {
    chunkSize: 256 * KiB,
    uploadSize: file.length,
    metadata: { filename: "chunked.bin", filetype: "application/octet-stream", conversationId },
    onBeforeRequest: requests.onBeforeRequest,
  });
  upload.start();
  await upload.done;
  const took = Date.now() - startedAt;
  assert.deepEqual(requests.log.map((r) => r.method), ["POST", ...Array(12).fill("PATCH")]);
  assert.ok(took >= 2000, `the stream paced the upload (it took ${took} ms)`);
  const uploadId = uploadIdOf(upload);
  await assertProgress(b, { uploadId, conversationId, uploader: alice, filename: "chunked.bin", size: file.length, startedAt, took });

  const { message } = await apiOk(
    fx.server,
    "POST",
    `/api/conversations/${conversationId}/messages`,
    { token: alice.token, body: { content: "", attachmentIds: [uploadId] } },
    201,
  );
  const got = await download(message.attachments[0].url, bob);
  assert.equal(got.status, 200);
  assertSameBytes(got.bytes, file, "the chunked upload");
});

test("paused with abort() and resumed with the upload URL, the server keeps the offset", { timeout: 30_000 }, async () => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const conversationId = await group(alice, [bob]);
  const file = randomBytes(1 * MiB + 300 * KiB);
  const metadata = { filename: "notes.bin", filetype: "application/octet-stream", conversationId };

  // Paused after two chunks of 256 KiB.
  const { upload: first, accepted } = await uploadUntil(alice, file, 512 * KiB, { chunkSize: 256 * KiB, metadata });
  assert.equal(accepted, 512 * KiB);
  assert.deepEqual(await head(first.url, alice), { status: 200, offset: 512 * KiB, length: file.length });

  // A new tus.Upload (a reloaded page) given the URL: HEAD, then PATCHes from where it stopped.
  const requests = requestLog();
  const second = tusUpload(alice, file, {
    uploadUrl: first.url,
    chunkSize: 256 * KiB,
    metadata,
    onBeforeRequest: requests.onBeforeRequest,
  });
  second.start();
  await second.done;
  assert.equal(second.url, first.url);
  assert.deepEqual(
    requests.log.map((r) => `${r.method} ${r.offset ?? ""}`.trim()),
    ["HEAD", "PATCH 524288", "PATCH 786432", "PATCH 1048576", "PATCH 1310720"],
    "no new upload, no byte sent twice",
  );
  assert.deepEqual(await head(first.url, alice), { status: 200, offset: file.length, length: file.length });

  // Resuming a finished upload only asks where it is.
  const again = requestLog();
  const third = tusUpload(alice, file, { uploadUrl: first.url, metadata, onBeforeRequest: again.onBeforeRequest });
  third.start();
  await third.done;
  assert.deepEqual(again.log.map((r) => r.method), ["HEAD"]);

  // Attached over REST to the group; Bob gets the same bytes.
  const uploadId = uploadIdOf(first);
  const { message } = await apiOk(
    fx.server,
    "POST",
    `/api/conversations/${conversationId}/messages`,
    { token: alice.token, body: { content: "the notes", attachmentIds: [uploadId] } },
    201,
  );
  assert.equal(message.attachments.length, 1);
  assert.equal(message.attachments[0].id, uploadId);
  assert.equal(message.attachments[0].size, file.length);
  const got = await download(message.attachments[0].url, bob);
  assert.equal(got.status, 200);
  assertSameBytes(got.bytes, file, "the resumed upload");
});

test("a connection dropped in the middle of a PATCH resumes from the bytes the server kept", { timeout: 30_000 }, async () => {
  const [alice, bob] = await Promise.all(["Alice", "Bob"].map((n) => registerUser(fx.server, n)));
  const { message: hello } = await restSend(fx.server, alice, bob, "hi");
  const conversationId = hello.conversationId;
  const file = randomBytes(4 * MiB);

  // tus-js-client talks to the proxy, which cuts the connection once 1.5 MiB went upstream: the
  // first PATCH (the whole file in one request) is cut about a third of the way in.
  const proxy = new Proxy(fx.server.port, { dropAfter: 1.5 * MiB });
  await proxy.start();
  try {
    const requests = requestLog();
    const heads = [];
    const errors = [];
    const upload = tusUpload(alice, file, {
      endpoint: `${proxy.url}/api/uploads`,
      metadata: { filename: "big.bin", filetype: "application/octet-stream", conversationId },
      retryDelays: [100, 500, 1000, 2000],
      onBeforeRequest: requests.onBeforeRequest,
      onAfterResponse: (req, res) => {
        if (req.getMethod() === "HEAD") heads.push({ status: res.getStatus(), offset: Number(res.getHeader("Upload-Offset")) });
      },
      onShouldRetry: (err) => {
        errors.push(err.message);
        return true;
      },
    });
    upload.start();
    // Once the connection is cut, the client's retry waits in the proxy while the test asks the
    // server itself where the upload is.
    const forwarded = await within(
      Promise.race([
        proxy.dropped,
        upload.done.then(() => assert.fail("the upload finished without the connection being cut")),
      ]),
      UPLOAD_MS,
      "the proxy cut the connection",
    );
    assert.equal(forwarded, 1.5 * MiB);
    const uploadUrl = `${fx.server.url}${new URL(upload.url).pathname}`;
    // The server notices the cut on its own side; once it has, the part that arrived is kept.
    let kept;
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      kept = await head(uploadUrl, alice);
      if ((kept.status === 200 && kept.offset > 0) || Date.now() > deadline) break;
      await sleep(50);
    }
    assert.equal(kept.status, 200, `HEAD after the cut: ${JSON.stringify(kept)}`);
    assert.ok(kept.offset > 0, `the server kept none of the ${forwarded} bytes forwarded before the cut: ${JSON.stringify(kept)}`);
    assert.ok(kept.offset < 1.5 * MiB, `the server cannot have more than what was forwarded: ${JSON.stringify(kept)}`);

    proxy.release();
    await upload.done;
    assert.ok(errors.length >= 1, "tus-js-client saw the cut");
    const patches = requests.log.filter((r) => r.method === "PATCH").map((r) => Number(r.offset));
    assert.equal(patches[0], 0);
    assert.equal(heads.at(-1)?.offset, kept.offset, `the client resumed where the server said: ${JSON.stringify(heads)}`);
    assert.equal(patches.at(-1), kept.offset, `the last PATCH starts at the kept offset: ${JSON.stringify(patches)}`);
    assert.deepEqual(await head(uploadUrl, alice), { status: 200, offset: file.length, length: file.length });

    const { message } = await apiOk(
      fx.server,
      "POST",
      `/api/messages/send/${bob.id}`,
      { token: alice.token, body: { content: "", attachmentIds: [uploadIdOf(upload)] } },
      201,
    );
    const got = await download(message.attachments[0].url, bob);
    assert.equal(got.status, 200);
    assertSameBytes(got.bytes, file, "the upload resumed after the cut");
  } finally {
    await proxy.close();
  }
});

test("only members start uploads, only the uploader touches one, and a wrong offset is 409", { timeout: 30_000 }, async () => {
  const [alice, bob, carol] = await Promise.all(["Alice", "Bob", "Carol"].map((n) => registerUser(fx.server, n)));
  const conversationId = await group(alice, [bob]);
  const metadata = { filename: "a.txt", filetype: "text/plain", conversationId };

  // OPTIONS announces the protocol, its extensions and the maximum size.
  const options = await fetch(`${fx.server.url}/api/uploads`, { method: "OPTIONS" });
  assert.equal(options.headers.get("tus-version"), "1.0.0");
  assert.deepEqual(options.headers.get("tus-extension")?.split(",").sort(), ["creation", "expiration", "termination"]);
  assert.equal(options.headers.get("tus-max-size"), String(100 * MiB));

  // Carol is no member: tus-js-client's creation fails with 404 conversation_not_found.
  const refused = tusUpload(carol, Buffer.from("hello"), { metadata });
  refused.start();
  const err = await refused.done.then(() => assert.fail("a non-member's upload was created"), (e) => e);
  assert.equal(err.originalResponse?.getStatus(), 404, String(err));
  assert.equal(JSON.parse(err.originalResponse.getBody()).error.code, "conversation_not_found");

  // Alice's upload, paused after its first chunk of 10 bytes.
  const file = Buffer.from("0123456789abcdefghij");
  const { upload } = await uploadUntil(alice, file, 10, { chunkSize: 10, metadata });
  const url = upload.url;

  // Bob (a member, but not the uploader) can neither see nor continue it.
  const bobHead = await fetch(url, { method: "HEAD", headers: { ...TUS, ...bearer(bob) } });
  assert.equal(bobHead.status, 404);
  const bobPatch = await patch(url, bob, 10, "abcdefghij");
  assert.equal(bobPatch.status, 404);
  assert.equal(bobPatch.body?.error?.code, "upload_not_found", JSON.stringify(bobPatch.body));
  // Nor can he attach it.
  const attach = await api(fx.server, "POST", `/api/conversations/${conversationId}/messages`, {
    token: bob.token,
    body: { content: "mine?", attachmentIds: [uploadIdOf(upload)] },
  });
  assert.equal(attach.status, 400);
  assert.equal(attach.body.error?.code, "invalid_attachment", JSON.stringify(attach.body));

  // A PATCH at the wrong offset is 409 and changes nothing.
  const wrong = await patch(url, alice, 5, "56789abcdefghij");
  assert.equal(wrong.status, 409);
  assert.equal(wrong.body?.error?.code, "offset_mismatch", JSON.stringify(wrong.body));
  assert.deepEqual(await head(url, alice), { status: 200, offset: 10, length: 20 });
  // An incomplete upload cannot be attached.
  const early = await api(fx.server, "POST", `/api/conversations/${conversationId}/messages`, {
    token: alice.token,
    body: { content: "", attachmentIds: [uploadIdOf(upload)] },
  });
  assert.equal(early.status, 400);
  assert.equal(early.body.error?.code, "invalid_attachment", JSON.stringify(early.body));

  // Terminated by the client (tus termination): gone.
  await tus.Upload.terminate(url, { headers: bearer(alice), retryDelays: null });
  assert.equal((await head(url, alice)).status, 404);
  const gone = await patch(url, alice, 10, "abcdefghij");
  assert.equal(gone.status, 404);
  assert.equal(gone.body?.error?.code, "upload_not_found", JSON.stringify(gone.body));
});
