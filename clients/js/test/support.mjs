// What the package's tests share: a real `craftcode serve` (tests/js/server.mjs: free port, fresh
// SQLite file, random JWT_SECRET, CRAFTCODE_BIN or target/debug/craftcode), REST calls, and a
// recorder that keeps every event a client emits so a test can wait for one with a timeout.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { Transform } from "node:stream";
import { after, afterEach, before } from "node:test";

import { io } from "socket.io-client";

import { connect } from "../dist/index.js";
import { makePng } from "../../../tests/js/files.mjs";
import { Server } from "../../../tests/js/server.mjs";

export { makePng };

export { Server };

/** How long a wait for an event may take before the test fails. */
export const WAIT_MS = 10_000;

/** Reconnects quickly, so a restart costs the tests little. */
export const FAST_RECONNECT = { reconnectionDelay: 100, reconnectionDelayMax: 300 };

/** `fetch` against the server: `{status, body}`. */
export async function api(server, method, path, { token, body } = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

export async function apiOk(server, method, path, options = {}, status = 200) {
  const res = await api(server, method, path, options);
  assert.equal(res.status, status, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Registers a fresh user (the first of a database is an admin): the login response plus `id`. */
export async function registerUser(server, name) {
  const email = `${name.toLowerCase()}-${randomBytes(4).toString("hex")}@example.com`;
  const password = "correct horse battery staple";
  const body = await apiOk(
    server,
    "POST",
    "/api/auth/register",
    { body: { email, password, name } },
    201,
  );
  return { ...body, id: body.user.id, name, email, password };
}

/** A message from `from` to `to` over REST: the stored message. */
export async function restSend(server, from, to, content) {
  const body = await apiOk(
    server,
    "POST",
    `/api/messages/send/${to.id}`,
    { token: from.token, body: { content } },
    201,
  );
  return body.message;
}

/** The whole conversation of `me` with `other`, oldest first. */
export async function history(server, me, other) {
  const body = await apiOk(server, "GET", `/api/messages/${other.id}?limit=100`, { token: me.token });
  return body.messages.reverse();
}

/**
 * A client of the package whose every event is recorded: `next(event, where)` resolves with the
 * first argument list of a matching event not taken yet (already received or still to come).
 */
export class Recorded {
  constructor(client, label) {
    this.client = client;
    this.label = label;
    this.records = [];
    this.taken = new Set();
    this.waiters = [];
    const events = [
      "status", "authenticated", "authError", "force_logout", "tokenUpdated", "userStatusChanged",
      "newMessage", "messageSent", "messageDelivered", "messagesRead", "userTyping", "presence",
      "notification", "notificationsRead", "server_shutdown", "synced", "sendRetry", "error",
      "conversationUpdated", "conversationRemoved", "conversations",
      "messageUpdated", "messageDeleted", "reactionsChanged", "uploadProgress", "uploads",
    ];
    for (const event of events) {
      client.on(event, (...args) => this.#record(event, args));
    }
  }

  #record(event, args) {
    const index = this.records.push({ event, args }) - 1;
    for (const waiter of [...this.waiters]) {
      if (waiter.matches(index)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(index);
      }
    }
  }

  /** First arguments of every `event` so far. */
  all(event) {
    return this.records.filter((r) => r.event === event).map((r) => r.args[0]);
  }

  summary() {
    return this.records.map((r) => (r.event === "status" ? `status(${r.args[0]})` : r.event)).join(", ");
  }

  next(event, where = () => true, ms = WAIT_MS, from = 0) {
    const matches = (i) =>
      i >= from &&
      !this.taken.has(i) &&
      this.records[i].event === event &&
      where(...this.records[i].args);
    const take = (i) => {
      this.taken.add(i);
      return this.records[i].args[0];
    };
    for (let i = 0; i < this.records.length; i++) if (matches(i)) return Promise.resolve(take(i));
    return new Promise((resolve, reject) => {
      const waiter = {
        matches,
        resolve: (i) => {
          clearTimeout(timer);
          resolve(take(i));
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`${this.label}: no "${event}" within ${ms} ms (got: ${this.summary()})`));
      }, ms);
      this.waiters.push(waiter);
    });
  }

  /** Waits until the client's status is `status`. */
  status(status, ms = WAIT_MS) {
    if (this.client.status === status) return Promise.resolve(status);
    return this.next("status", (s) => s === status, ms, this.records.length);
  }
}

/**
 * One server for the test file; `fx.client(user, options)` connects a recorded client (closed
 * after each test). What the server printed during a failed test goes to stderr.
 */
export function useServer(env = {}) {
  const fx = {
    server: null,
    clients: [],
    mark: 0,
    /** A connected, authenticated client of the package for `user`. */
    async client(user, options = {}, label = user.name) {
      const client = connect({ url: fx.server.url, token: user.token, ...FAST_RECONNECT, ...options });
      const recorded = new Recorded(client, label);
      fx.clients.push(recorded);
      if (options.wait !== false) await withTimeout(client.ready(), `${label} ready`);
      return recorded;
    },
  };
  before(async () => {
    fx.server = await Server.start({ env: { PRESENCE_INTERVAL: "200ms", ...env } });
  });
  afterEach(async (t) => {
    for (const c of fx.clients.splice(0)) c.client.close();
    if (fx.server && !fx.server.running) await fx.server.restart();
    if (!t.passed && fx.server) {
      process.stderr.write(`\n----- craftcode output during "${t.name}" -----\n${fx.server.logSince(fx.mark)}-----\n`);
    }
    fx.mark = fx.server?.logMark() ?? 0;
  });
  after(async () => {
    await fx.server?.dispose();
  });
  return fx;
}

/** `promise`, or a clear failure after `ms`. */
export function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    }),
  ]);
}

/** A promise and the function that settles it. */
export function gate() {
  let open;
  const promise = new Promise((resolve) => (open = resolve));
  return { promise, open };
}

/** The `connect_error` reason of a plain handshake with `token`, or "connected". */
export async function handshake(server, token) {
  const socket = io(server.url, { path: "/api/socket", auth: { token }, reconnection: false, forceNew: true });
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("handshake: no answer")), 10_000);
      socket.once("authenticated", () => (clearTimeout(timer), resolve("connected")));
      socket.once("connect_error", (err) => (clearTimeout(timer), resolve(err.message)));
    });
  } finally {
    socket.disconnect();
  }
}


/**
 * An HTTP proxy in front of the server for one client, to see and shape its requests: every
 * request is recorded (`requests`: method, path, Authorization, Upload-Offset, then the status),
 * `hold(record)` may return a promise the request waits for before it goes on, `cut(record)` may
 * answer a number of body bytes after which the connection breaks, and `bytesPerSecond` slows
 * request bodies down (a slow uplink). WebSocket upgrades pass through untouched.
 */
export class Proxy {
  requests = [];
  hold = null;
  cut = null;
  bytesPerSecond = null;
  #server;
  #sockets = new Set();
  #waiters = [];

  static async start(target) {
    const proxy = new Proxy(new URL(target));
    await new Promise((resolve) => proxy.#server.listen(0, "127.0.0.1", resolve));
    proxy.url = `http://127.0.0.1:${proxy.#server.address().port}`;
    return proxy;
  }

  constructor(target) {
    this.#server = http.createServer((req, res) => void this.#forward(target, req, res));
    this.#server.on("connection", (socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
    this.#server.on("upgrade", (req, socket, head) => {
      const upstream = net.connect(Number(target.port), target.hostname, () => {
        const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
        for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
        upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
        if (head.length) upstream.write(head);
        socket.pipe(upstream).pipe(socket);
      });
      this.#sockets.add(upstream);
      upstream.on("close", () => this.#sockets.delete(upstream));
      upstream.on("error", () => socket.destroy());
      socket.on("error", () => upstream.destroy());
    });
  }

  async #forward(target, req, res) {
    const record = {
      method: req.method,
      path: req.url,
      authorization: req.headers.authorization ?? null,
      uploadOffset: req.headers["upload-offset"] !== undefined ? Number(req.headers["upload-offset"]) : null,
      status: null,
    };
    this.requests.push(record);
    if (this.hold) await this.hold(record);
    // The client gave up while the request was held (an aborted upload).
    if (req.destroyed || res.destroyed) return;
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        record.status = answer.statusCode;
        this.#settled(record);
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    const limit = this.cut?.(record) ?? null;
    let body = req;
    if (this.bytesPerSecond && req.method === "PATCH") body = req.pipe(throttle(this.bytesPerSecond));
    if (limit !== null) {
      let passed = 0;
      body = body.pipe(
        new Transform({
          transform(chunk, _encoding, done) {
            const room = limit - passed;
            passed += chunk.length;
            if (room <= 0) return done();
            if (chunk.length >= room) {
              this.push(chunk.subarray(0, room));
              // The link breaks here: both connections go down mid-body.
              setImmediate(() => {
                record.status = "cut";
                upstream.destroy();
                res.destroy();
                req.destroy();
              });
              return done();
            }
            done(null, chunk);
          },
        }),
      );
    }
    body.pipe(upstream);
  }

  #settled(record) {
    for (const waiter of [...this.#waiters]) {
      if (waiter.where(record)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve(record);
      }
    }
  }

  /** The tus requests (`/api/uploads…`) among `requests`: the socket's go through too. */
  get uploads() {
    return this.requests.filter((r) => r.path.startsWith("/api/uploads"));
  }

  /** The first request answered (or yet to be) that matches `where`. */
  answered(where, ms = WAIT_MS) {
    const done = this.requests.find((r) => r.status !== null && r.status !== "cut" && where(r));
    if (done) return Promise.resolve(done);
    return withTimeout(new Promise((resolve) => this.#waiters.push({ where, resolve })), "proxy: the request", ms);
  }

  async close() {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** Passes bytes on at about `bytesPerSecond`, in twentieths of a second. */
function throttle(bytesPerSecond) {
  const step = Math.max(1, Math.floor(bytesPerSecond / 20));
  return new Transform({
    transform(chunk, _encoding, done) {
      let at = 0;
      const next = () => {
        if (at >= chunk.length) return done();
        this.push(chunk.subarray(at, at + step));
        at += step;
        setTimeout(next, 50);
      };
      next();
    },
  });
}


/** The width and height a PNG's header states. */
export function pngSize(bytes) {
  assert.equal(bytes.subarray(1, 4).toString("ascii"), "PNG", "a PNG");
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

/** A tus `HEAD` straight to the server: the upload's status and `Upload-Offset`. */
export async function uploadOffset(server, token, id) {
  const res = await fetch(`${server.url}/api/uploads/${id}`, {
    method: "HEAD",
    headers: { "tus-resumable": "1.0.0", authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(10_000),
  });
  const offset = res.headers.get("upload-offset");
  return { status: res.status, offset: offset === null ? null : Number(offset) };
}
