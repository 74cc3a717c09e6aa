// A push service on loopback that does what browsers' push services do with what an application
// server sends them (RFC 8030): it takes `POST` on subscription endpoints only when the VAPID
// token verifies (RFC 8292: an ES256 JWT signed by the announced key `k`, `aud` its own origin,
// `exp` in the future and within 24 h, a `sub` contact) and decrypts the `aes128gcm` payload
// (RFC 8291) with the subscription's private key, which it made like a browser does (a fresh
// P-256 key pair and 16-byte secret per subscription). Only node:crypto; nothing is mocked.
//
// A test can script the answers of one subscription (410, 429 with Retry-After, 500, a hang) and
// waits for what was delivered with `next(subscription)`.

import { createECDH, createPublicKey, createDecipheriv, hkdfSync, randomBytes, verify } from "node:crypto";
import { createServer } from "node:http";

const b64 = (buf) => Buffer.from(buf).toString("base64url");
const unb64 = (text) => Buffer.from(text, "base64url");

/** The raw uncompressed P-256 point `key` as a KeyObject. */
function p256Key(raw) {
  if (raw.length !== 65 || raw[0] !== 4) throw new Error("k is not an uncompressed P-256 point");
  return createPublicKey({
    key: { kty: "EC", crv: "P-256", x: b64(raw.subarray(1, 33)), y: b64(raw.subarray(33)) },
    format: "jwk",
  });
}

/** Checks `Authorization: vapid t=…, k=…` for `origin`; answers the problem, or null. */
export function checkVapid(header, origin, expectedKey) {
  const match = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(header ?? "");
  if (!match) return "no `vapid t=…, k=…` authorization";
  const [, token, k] = match;
  if (expectedKey && k !== expectedKey) return "k is not the server's announced key";
  const parts = token.split(".");
  if (parts.length !== 3) return "the token is not a JWT";
  let head;
  let claims;
  try {
    head = JSON.parse(unb64(parts[0]).toString());
    claims = JSON.parse(unb64(parts[1]).toString());
  } catch {
    return "the token's parts are not JSON";
  }
  if (head.alg !== "ES256") return `alg is ${head.alg}, not ES256`;
  let signed;
  try {
    signed = verify(
      "sha256",
      Buffer.from(`${parts[0]}.${parts[1]}`),
      { key: p256Key(unb64(k)), dsaEncoding: "ieee-p1363" },
      unb64(parts[2]),
    );
  } catch (err) {
    return `the signature cannot be checked: ${err.message}`;
  }
  if (!signed) return "the signature does not verify with k";
  if (claims.aud !== origin) return `aud is ${claims.aud}, not ${origin}`;
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== "number" || claims.exp <= now) return "exp has passed";
  if (claims.exp > now + 24 * 3600) return "exp is more than 24 h away";
  if (typeof claims.sub !== "string" || !/^(mailto:|https?:)/.test(claims.sub)) return "sub is no contact";
  return null;
}

/** Decrypts an `aes128gcm` body for a subscription's keys (RFC 8291 §3.4, RFC 8188). */
export function decrypt(body, { ecdh, auth }) {
  if (body.length < 21 + 65 + 16) throw new Error("the body is too short for aes128gcm");
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20];
  if (idlen !== 65) throw new Error(`keyid is ${idlen} bytes, not the sender's 65-byte key`);
  const senderKey = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  if (ciphertext.length > rs) throw new Error("more than one record");
  const uaPublic = ecdh.getPublicKey();
  const secret = ecdh.computeSecret(senderKey);
  const keyInfo = Buffer.concat([Buffer.from("WebPush: info\0"), uaPublic, senderKey]);
  const ikm = Buffer.from(hkdfSync("sha256", secret, auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const plain = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  // The last record ends with the delimiter 2, then zero padding.
  let end = plain.length - 1;
  while (end >= 0 && plain[end] === 0) end--;
  if (end < 0 || plain[end] !== 2) throw new Error("no last-record delimiter");
  return plain.subarray(0, end).toString("utf8");
}

export class PushService {
  #server;
  #subscriptions = new Map();
  #hanging = new Set();
  /** Requests refused for a bad token or body: a test expects none. */
  problems = [];

  /** `expectedKey`: the server's VAPID public key, when known (`setExpectedKey` later too). */
  static async start(expectedKey = null) {
    const service = new PushService();
    service.expectedKey = expectedKey;
    await new Promise((resolve) => {
      service.#server = createServer((req, res) => service.#handle(req, res));
      service.#server.listen(0, "127.0.0.1", resolve);
    });
    service.origin = `http://127.0.0.1:${service.#server.address().port}`;
    return service;
  }

  /** A browser's subscription: `{endpoint, keys: {p256dh, auth}}` (what `toJSON()` gives). */
  subscribe() {
    const id = randomBytes(8).toString("hex");
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    const auth = randomBytes(16);
    const sub = { id, ecdh, auth, answers: [], delivered: [], waiters: [], requests: 0 };
    this.#subscriptions.set(id, sub);
    return {
      id,
      endpoint: `${this.origin}/push/${id}`,
      expirationTime: null,
      keys: { p256dh: b64(ecdh.getPublicKey()), auth: b64(auth) },
    };
  }

  /**
   * The next answers for a subscription, in order, before the default 201: each a status
   * (`{status: 429, retryAfter: 1}`, `{status: 410}`, …) or `"hang"` (no answer at all).
   */
  script(subscription, ...answers) {
    this.#sub(subscription).answers.push(...answers);
  }

  /** What was delivered to a subscription so far: `{payload, headers}` each. */
  delivered(subscription) {
    return this.#sub(subscription).delivered;
  }

  /** How many requests reached a subscription's endpoint (answered or not). */
  requests(subscription) {
    return this.#sub(subscription).requests;
  }

  /** Resolves with the delivery number `index` (0-based) of a subscription, waiting for it. */
  next(subscription, index, ms = 15_000) {
    const sub = this.#sub(subscription);
    if (sub.delivered.length > index) return Promise.resolve(sub.delivered[index]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`push ${index} to ${sub.id} did not come within ${ms} ms (problems: ${JSON.stringify(this.problems)})`)),
        ms,
      );
      sub.waiters.push({ index, resolve: (d) => (clearTimeout(timer), resolve(d)) });
    });
  }

  #sub(subscription) {
    const sub = this.#subscriptions.get(typeof subscription === "string" ? subscription : subscription.id);
    if (!sub) throw new Error("no such subscription");
    return sub;
  }

  #handle(req, res) {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const match = /^\/push\/([0-9a-f]+)$/.exec(req.url ?? "");
      const sub = match && this.#subscriptions.get(match[1]);
      if (req.method !== "POST" || !sub) {
        res.writeHead(404).end();
        return;
      }
      sub.requests += 1;
      const answer = sub.answers.shift();
      if (answer === "hang") {
        this.#hanging.add(res);
        return;
      }
      const refuse = (status, problem) => {
        this.problems.push(`${sub.id}: ${problem}`);
        res.writeHead(status, { "content-type": "text/plain" }).end(problem);
      };
      const problem = checkVapid(req.headers.authorization, this.origin, this.expectedKey);
      if (problem) return refuse(401, problem);
      if (req.headers["content-encoding"] !== "aes128gcm") return refuse(400, "content-encoding is not aes128gcm");
      const ttl = Number(req.headers.ttl);
      if (!Number.isInteger(ttl) || ttl < 0) return refuse(400, "no TTL");
      let payload;
      try {
        payload = JSON.parse(decrypt(Buffer.concat(chunks), sub));
      } catch (err) {
        return refuse(400, `cannot decrypt: ${err.message}`);
      }
      if (answer) {
        const headers = answer.retryAfter !== undefined ? { "retry-after": String(answer.retryAfter) } : {};
        res.writeHead(answer.status, headers).end();
        return;
      }
      const delivery = {
        payload,
        bytes: Buffer.concat(chunks).length,
        headers: { ttl, urgency: req.headers.urgency ?? null, topic: req.headers.topic ?? null },
      };
      sub.delivered.push(delivery);
      for (const waiter of [...sub.waiters]) {
        if (sub.delivered.length > waiter.index) {
          sub.waiters.splice(sub.waiters.indexOf(waiter), 1);
          waiter.resolve(sub.delivered[waiter.index]);
        }
      }
      res.writeHead(201).end();
    });
  }

  async close() {
    for (const res of this.#hanging) res.destroy();
    this.#hanging.clear();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
