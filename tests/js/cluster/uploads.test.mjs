// Attachments in a cluster (SPEC §12): the three nodes keep files in one S3 bucket (the SeaweedFS
// of scripts/test-env.sh, `ensure_seaweedfs`), so one tus upload can go on through any node, with
// no sticky sessions: tus-js-client sends each part of a file to another node, in parts below
// and above S3's 5 MiB multipart minimum. The member connected to another node hears the
// progress, every node serves the same bytes, and deleting the message removes the file.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";

import * as tus from "tus-js-client";

import { api, assertAckOk, registerUser, restSend } from "../helpers.mjs";
import { eventually, useCluster } from "./cluster.mjs";

const KiB = 1024;
const MiB = 1024 * KiB;
const UPLOAD_MS = 30_000;

// The S3 store the test command provides (scripts/test-env.sh: ensure_seaweedfs, export_s3_env).
const S3_VARS = ["TEST_S3_ENDPOINT", "TEST_S3_BUCKET", "TEST_S3_REGION", "TEST_S3_ACCESS_KEY", "TEST_S3_SECRET_KEY"];
const missing = S3_VARS.filter((name) => !process.env[name]);

if (missing.length > 0) {
  // Never skipped: without S3 the cluster has no shared storage, and that is a broken setup.
  test("the S3 store for attachments is configured", () => {
    assert.fail(
      `${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} not set: the cluster's attachment ` +
        "tests need an S3-compatible store. Run them the way scripts/test-all does, e.g. " +
        "`source scripts/test-env.sh && ensure_seaweedfs && (cd tests/js && npm run test:cluster)` " +
        "at the repository root (ensure_seaweedfs starts SeaweedFS and exports the TEST_S3_* variables).",
    );
  });
} else {
  clusterTests();
}

function clusterTests() {
  const s3 = {
    endpoint: process.env.TEST_S3_ENDPOINT.replace(/\/+$/, ""),
    bucket: process.env.TEST_S3_BUCKET,
    region: process.env.TEST_S3_REGION,
    accessKey: process.env.TEST_S3_ACCESS_KEY,
    secretKey: process.env.TEST_S3_SECRET_KEY,
  };
  // A fresh prefix per run: nothing of another run (or of the Rust tests) is ever seen.
  const prefix = `craftcode-js-cluster/${randomBytes(6).toString("hex")}`;
  const fx = useCluster({
    STORAGE_URL: `s3://${s3.bucket}/${prefix}`,
    S3_ENDPOINT: s3.endpoint,
    S3_REGION: s3.region,
    AWS_ACCESS_KEY_ID: s3.accessKey,
    AWS_SECRET_ACCESS_KEY: s3.secretKey,
  });
  const node = (i) => fx.nodes[i - 1];

  /** The keys under this run's prefix in the bucket (a signed ListObjectsV2, with curl). */
  function s3Keys() {
    const url = `${s3.endpoint}/${s3.bucket}?list-type=2&max-keys=1000&prefix=${encodeURIComponent(`${prefix}/`)}`;
    const out = spawnSync(
      "curl",
      ["-sS", "--max-time", "10", "--aws-sigv4", `aws:amz:${s3.region}:s3`, "--user", `${s3.accessKey}:${s3.secretKey}`, "-w", "\n%{http_code}", url],
      { encoding: "utf8" },
    );
    if (out.error) throw new Error(`cannot run curl to list the bucket: ${out.error.message}`);
    const lines = out.stdout.trimEnd().split("\n");
    const status = lines.pop();
    const body = lines.join("\n");
    assert.equal(status, "200", `listing s3://${s3.bucket}/${prefix}/ at ${s3.endpoint}: HTTP ${status} ${body} ${out.stderr}`);
    return [...body.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1].slice(prefix.length + 1));
  }

  /**
   * One tus.Upload on `options.endpoint` or `options.uploadUrl`; with `pauseAt`, aborted (a pause)
   * from `onChunkComplete` once the server holds that many bytes, else run to the end. Resolves
   * with `{upload, requests}`: every request it made (`{method, url, offset}`).
   */
  function tusRun(user, file, { pauseAt, ...options }) {
    const requests = [];
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        upload.abort();
        reject(new Error(`the tus upload did not ${pauseAt ? `reach ${pauseAt} bytes` : "finish"} within ${UPLOAD_MS} ms`));
      }, UPLOAD_MS);
      const upload = new tus.Upload(file, {
        headers: { Authorization: `Bearer ${user.token}` },
        retryDelays: null,
        ...options,
        onBeforeRequest: (req) => {
          requests.push({ method: req.getMethod(), url: req.getURL(), offset: req.getHeader("Upload-Offset") ?? null });
        },
        onChunkComplete: (_chunk, accepted) => {
          if (pauseAt !== undefined && accepted >= pauseAt) {
            upload.abort();
            clearTimeout(timer);
            resolve({ upload, requests, accepted });
          }
        },
        onSuccess: () => {
          clearTimeout(timer);
          if (pauseAt !== undefined) reject(new Error(`the upload finished before it was paused at ${pauseAt} bytes`));
          else resolve({ upload, requests });
        },
        onError: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      upload.start();
    });
  }

  /** An upload's path on another node. */
  const on = (n, uploadUrl) => `${n.url}${new URL(uploadUrl).pathname}`;
  const describe = (requests) => requests.map((r) => `${r.method} ${r.url}${r.offset === null ? "" : ` @${r.offset}`}`);

  async function head(url, user) {
    const res = await fetch(url, {
      method: "HEAD",
      headers: { "tus-resumable": "1.0.0", authorization: `Bearer ${user.token}` },
      signal: AbortSignal.timeout(5000),
    });
    const num = (name) => (res.headers.get(name) === null ? null : Number(res.headers.get(name)));
    return { status: res.status, offset: num("upload-offset"), length: num("upload-length") };
  }

  async function download(n, urlPath, user, headers = {}) {
    const res = await fetch(`${n.url}${urlPath}`, {
      headers: { authorization: `Bearer ${user.token}`, ...headers },
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
  }

  /**
   * Sends `file` in parts, each through the next node of `plan` (`[{node, bytes}]`, the last with
   * `bytes: Infinity` for "the rest"): the first creates it there, each next one is a new
   * tus.Upload given the upload's URL on its node (HEAD, then PATCH from the offset it answers).
   * Checks that every request went to the planned node and answers the upload URL (on node 1).
   */
  async function uploadAcross(user, file, metadata, plan) {
    let uploadUrl = null;
    let sent = 0;
    for (const [i, step] of plan.entries()) {
      const last = i === plan.length - 1;
      const options = uploadUrl === null
        ? { endpoint: `${step.node.url}/api/uploads`, metadata }
        : { uploadUrl: on(step.node, uploadUrl), metadata };
      const { upload, requests, accepted } = await tusRun(user, file, {
        ...options,
        chunkSize: last ? Infinity : step.bytes,
        ...(last ? {} : { pauseAt: sent + step.bytes }),
      });
      const what = `part ${i + 1}: ${JSON.stringify(describe(requests))}`;
      for (const r of requests) assert.ok(r.url.startsWith(`${step.node.url}/`), `${what}: every request to its node`);
      const expected = uploadUrl === null ? ["POST", "PATCH @0"] : ["HEAD", `PATCH @${sent}`];
      assert.deepEqual(requests.map((r) => `${r.method}${r.offset === null ? "" : ` @${r.offset}`}`), expected, what);
      if (!last) assert.equal(accepted, sent + step.bytes, what);
      sent = last ? file.length : sent + step.bytes;
      uploadUrl ??= upload.url;
    }
    return uploadUrl;
  }

  test("a 12 MiB and a 100 KiB upload each go on through other nodes, are heard on another, and served by every node", async () => {
    const alice = await registerUser(node(1), "Alice");
    const bob = await registerUser(node(2), "Bob");
    const { message: hello } = await restSend(node(1), alice, bob, "files follow");
    const conversationId = hello.conversationId;
    const b = await fx.connect(node(2), { label: "bob@node2", token: bob.token });
    const a = await fx.connect(node(3), { label: "alice@node3", token: alice.token });

    // 12 MiB: 5 MiB through node 1 (exactly S3's minimum part), 1 MiB through node 2 (a part
    // below it that is not the last), the last 6 MiB through node 3.
    const big = randomBytes(12 * MiB);
    const bigUrl = await uploadAcross(alice, big, { filename: "video.bin", filetype: "application/octet-stream", conversationId }, [
      { node: node(1), bytes: 5 * MiB },
      { node: node(2), bytes: 1 * MiB },
      { node: node(3), bytes: Infinity },
    ]);
    // 100 KiB: 40 KiB through node 3, the rest through node 1.
    const small = randomBytes(100 * KiB);
    const smallUrl = await uploadAcross(alice, small, { filename: "notes.txt", filetype: "text/plain", conversationId }, [
      { node: node(3), bytes: 40 * KiB },
      { node: node(1), bytes: Infinity },
    ]);
    const bigId = new URL(bigUrl).pathname.split("/").pop();
    const smallId = new URL(smallUrl).pathname.split("/").pop();
    for (const n of fx.nodes) {
      assert.deepEqual(await head(on(n, bigUrl), alice), { status: 200, offset: big.length, length: big.length });
      assert.deepEqual(await head(on(n, smallUrl), alice), { status: 200, offset: small.length, length: small.length });
    }

    // Bob, on node 2, heard each upload complete (it completed on node 3, then node 1), and so did
    // Alice's socket on node 3.
    for (const [id, file, filename] of [[bigId, big, "video.bin"], [smallId, small, "notes.txt"]]) {
      for (const probe of [b, a]) {
        const final = await probe.next("uploadProgress", { where: (p) => p.uploadId === id && p.offset === file.length });
        assert.deepEqual(final, { uploadId: id, conversationId, from: alice.id, filename, size: file.length, offset: file.length });
      }
    }
    for (const probe of [b, a]) {
      await probe.barrier();
      for (const id of [bigId, smallId]) {
        const offsets = probe.all("uploadProgress").filter((p) => p.uploadId === id).map((p) => p.offset);
        for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i] > offsets[i - 1], `${probe.label}: ${offsets}`);
      }
    }

    // The bytes are in the bucket under this run's prefix (not in a folder of the nodes), one
    // object per PATCH, kept as the file's parts.
    const keys = s3Keys();
    const partsOf = (id) => keys.filter((k) => k.startsWith(`uploads/${id}/`)).length;
    assert.equal(partsOf(bigId), 3, `the 12 MiB file's three parts are in S3: ${JSON.stringify(keys)}`);
    assert.equal(partsOf(smallId), 2, `the 100 KiB file's two parts are in S3: ${JSON.stringify(keys)}`);
    assert.equal(existsSync(path.join(node(1).db.dir, "data", "uploads")), false, "no local upload folder");

    // Alice attaches both from node 3; Bob gets the message on node 2.
    const sent = await a.ack("sendMessage", { conversationId, content: "", attachmentIds: [bigId, smallId] });
    assertAckOk(sent, "sendMessage with attachmentIds");
    assert.deepEqual(
      sent.message.attachments.map((x) => [x.id, x.filename, x.size, x.url]),
      [
        [bigId, "video.bin", big.length, `/api/attachments/${bigId}`],
        [smallId, "notes.txt", small.length, `/api/attachments/${smallId}`],
      ],
    );
    const { message } = await b.next("newMessage", { where: (p) => p.message.id === sent.message.id });
    assert.deepEqual(message.attachments, sent.message.attachments);

    // Every node serves both, byte-identical, and a range of the big one.
    for (const n of fx.nodes) {
      for (const [x, file] of [[message.attachments[0], big], [message.attachments[1], small]]) {
        const got = await download(n, x.url, bob);
        assert.equal(got.status, 200, `${x.filename} from ${n.url}`);
        assert.equal(got.bytes.length, file.length, `${x.filename} from ${n.url}: its length`);
        assert.ok(got.bytes.equals(file), `${x.filename} from ${n.url}: the bytes differ from what was uploaded`);
      }
      const from = 5 * MiB - 10; // across the first two parts' boundary
      const range = await download(n, message.attachments[0].url, bob, { range: `bytes=${from}-${from + 1 * MiB + 19}` });
      assert.equal(range.status, 206);
      assert.ok(range.bytes.equals(big.subarray(from, from + 1 * MiB + 20)), `a range from ${n.url}`);
    }

    // Alice deletes the message (through node 1): no node serves the files any more, and they
    // are gone from the bucket.
    const deleted = await api(node(1), "DELETE", `/api/messages/${sent.message.id}`, { token: alice.token });
    assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
    for (const n of fx.nodes) {
      for (const x of message.attachments) {
        const got = await api(n, "GET", x.url, { token: bob.token });
        assert.equal(got.status, 404, `${x.filename} from ${n.url} after the deletion`);
        assert.equal(got.body.error?.code, "attachment_not_found", JSON.stringify(got.body));
        const mine = await api(n, "GET", x.url, { token: alice.token });
        assert.equal(mine.status, 404, `${x.filename} for its uploader from ${n.url} after the deletion`);
      }
    }
    await eventually("the deleted message's files are gone from S3", () => {
      const left = s3Keys().filter((k) => k.includes(bigId) || k.includes(smallId));
      return left.length === 0;
    });
  });

  test("a wrong offset on one node after a PATCH on another is 409, and nothing of it is kept", async () => {
    const alice = await registerUser(node(1), "Alice");
    const bob = await registerUser(node(1), "Bob");
    const { message: hello } = await restSend(node(1), alice, bob, "hi");
    const file = randomBytes(64 * KiB);
    const { upload } = await tusRun(alice, file, {
      endpoint: `${node(2).url}/api/uploads`,
      metadata: { filename: "a.bin", filetype: "application/octet-stream", conversationId: hello.conversationId },
      chunkSize: 16 * KiB,
      pauseAt: 16 * KiB,
    });
    // Node 3 is asked to write at 0, where node 2 already wrote: refused, offset unchanged.
    const res = await fetch(on(node(3), upload.url), {
      method: "PATCH",
      headers: {
        "tus-resumable": "1.0.0",
        authorization: `Bearer ${alice.token}`,
        "content-type": "application/offset+octet-stream",
        "upload-offset": "0",
      },
      body: file.subarray(0, 32 * KiB),
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(res.status, 409);
    assert.equal((await res.json()).error?.code, "offset_mismatch");
    for (const n of fx.nodes) {
      assert.deepEqual(await head(on(n, upload.url), alice), { status: 200, offset: 16 * KiB, length: file.length });
    }
    // Bob may not look at it from any node.
    for (const n of fx.nodes) assert.equal((await head(on(n, upload.url), bob)).status, 404);
    // Abandoned (tus termination) through node 1: gone everywhere, parts removed from the bucket.
    await tus.Upload.terminate(on(node(1), upload.url), { headers: { Authorization: `Bearer ${alice.token}` }, retryDelays: null });
    for (const n of fx.nodes) assert.equal((await head(on(n, upload.url), alice)).status, 404);
    const id = new URL(upload.url).pathname.split("/").pop();
    await eventually("the abandoned upload's parts are gone from S3", () => s3Keys().every((k) => !k.includes(id)));
  });
}
