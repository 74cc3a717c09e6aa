// Client-side helpers: REST calls, socket.io-client sockets that record every event they get,
// waits with timeouts, and a per-file fixture that starts one server and cleans up after tests.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, afterEach, before, beforeEach } from "node:test";
import { io } from "socket.io-client";

import { Server } from "./server.mjs";

export const SOCKET_PATH = "/api/socket";
/** The namespace server for older clients: `/auth`, `/messenger`, `/notifications`. */
export const NAMESPACES_PATH = "/api/socket-namespaces";
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** How long a wait for an event may take before the test fails. */
export const WAIT_MS = 3000;

/**
 * Resolves with the first argument of the next `event` on `emitter` (a socket, a manager, any
 * EventEmitter); rejects with a clear message after `ms`.
 */
export function once(emitter, event, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out after ${ms} ms waiting for "${event}"`));
    }, ms);
    const handler = (payload) => {
      clearTimeout(timer);
      resolve(payload);
    };
    emitter.once(event, handler);
  });
}

// ---------------------------------------------------------------------------------------------
// REST

/**
 * `fetch` against the server: `{ status, body, headers }` (`body` parsed when JSON).
 * Options: `token` (Bearer), `body` (sent as JSON), `headers`.
 */
export async function api(server, method, path, { token, body, headers = {} } = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let parsed = text;
  if ((res.headers.get("content-type") || "").includes("json") && text) parsed = JSON.parse(text);
  return { status: res.status, body: parsed, headers: res.headers };
}

/** `api` that asserts the status and answers the body. */
export async function apiOk(server, method, path, options = {}, status = 200) {
  const res = await api(server, method, path, options);
  assert.equal(
    res.status,
    status,
    `${method} ${path}: expected ${status}, got ${res.status} ${JSON.stringify(res.body)}`,
  );
  return res.body;
}

let userCounter = 0;

/** Registers a fresh user: the login response plus `id`, `email`, `password`, `setCookies`. */
export async function registerUser(server, name = "User") {
  userCounter += 1;
  const email = `${name.toLowerCase().replace(/\W+/g, "")}${userCounter}-${randomBytes(4).toString("hex")}@example.com`;
  const password = "correct horse battery staple";
  const res = await api(server, "POST", "/api/auth/register", {
    body: { email, password, name },
  });
  assert.equal(res.status, 201, `register ${email}: ${res.status} ${JSON.stringify(res.body)}`);
  return {
    ...res.body,
    id: res.body.user.id,
    name,
    email,
    password,
    setCookies: res.headers.getSetCookie(),
  };
}

/** A second session (another device) for a registered user. */
export async function login(server, user) {
  return apiOk(server, "POST", "/api/auth/login", {
    body: { email: user.email, password: user.password },
  });
}

/** Sends a message over REST and answers `{message, delivered, realtime}`. */
export async function restSend(server, from, to, content, clientId) {
  return apiOk(
    server,
    "POST",
    `/api/messages/send/${to.id}`,
    { token: from.token, body: { content, ...(clientId ? { clientId } : {}) } },
    201,
  );
}

// ---------------------------------------------------------------------------------------------
// Sockets

/**
 * A socket.io-client socket that records everything it receives, so that a test can wait for
 * "the next `newMessage`" without racing the network: events that arrived before the wait
 * started are found too. Reserved events (`connect`, `connect_error`, `disconnect`) and the
 * manager's (`io:reconnect`, `io:reconnect_attempt`, …) are recorded as well.
 */
export class Probe {
  constructor(server, { label = "socket", token, ackNewMessages = false, socket, ...options } = {}) {
    this.label = label;
    this.records = [];
    this.consumed = new Set();
    this.waiters = [];
    // `socket`: one the test made itself (another path or namespace, a shared Manager) to record.
    this.socket =
      socket ??
      io(server.url, {
        path: SOCKET_PATH,
        forceNew: true,
        reconnection: false,
        ...(token !== undefined ? { auth: { token } } : {}),
        ...options,
      });
    this.socket.onAny((event, ...args) => this.#record(event, args));
    for (const event of ["connect", "connect_error", "disconnect"]) {
      this.socket.on(event, (...args) => this.#record(event, args));
    }
    for (const event of ["reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"]) {
      this.socket.io.on(event, (...args) => this.#record(`io:${event}`, args));
    }
    if (ackNewMessages) {
      // `true`: acks the way most apps do, `cb()`; an array: acks with those arguments.
      const ackArgs = Array.isArray(ackNewMessages) ? ackNewMessages : [];
      this.socket.on("newMessage", (_message, ack) => {
        if (typeof ack === "function") ack(...ackArgs);
      });
    }
  }

  #record(event, args) {
    const entry = { event, args, payload: args[0], at: Date.now() };
    const index = this.records.push(entry) - 1;
    for (const waiter of [...this.waiters]) {
      if (waiter.matches(index)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(index);
      }
    }
  }

  /** Event names received so far (for error messages). */
  summary() {
    const describe = (r) =>
      r.event === "disconnect" || r.event === "connect_error" || r.event.startsWith("io:")
        ? `${r.event}(${r.payload?.message ?? r.payload ?? ""})`
        : r.event;
    const transport = this.socket.io.engine?.transport?.name ?? "none";
    return `${this.records.map(describe).join(", ") || "nothing"}; transport ${transport}`;
  }

  /**
   * The payload of the next `event` not yet taken by an earlier `next` (already received or still
   * to come) for which `where(payload, args)` holds. Rejects with a clear message after `ms`.
   */
  next(event, { where = () => true, ms = WAIT_MS, consume = true } = {}) {
    const matches = (i) =>
      !(consume && this.consumed.has(i)) &&
      this.records[i].event === event &&
      where(this.records[i].payload, this.records[i].args);
    const take = (i) => {
      if (consume) this.consumed.add(i);
      return this.records[i].payload;
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
        reject(
          new Error(
            `${this.label}: timed out after ${ms} ms waiting for "${event}"` +
              ` (received so far: ${this.summary()})`,
          ),
        );
      }, ms);
      this.waiters.push(waiter);
    });
  }

  /** Like `next`, but also finds events already taken, and takes nothing. */
  seen(event, options = {}) {
    return this.next(event, { ...options, consume: false });
  }

  /** Payloads of every `event` received so far. */
  all(event) {
    return this.records.filter((r) => r.event === event).map((r) => r.payload);
  }

  /** Index of the first `event` received (or -1), to check the order of events. */
  indexOf(event) {
    return this.records.findIndex((r) => r.event === event);
  }

  /** Resolves once connected; rejects with the `connect_error` (its message is the reason). */
  connected(ms = WAIT_MS) {
    if (this.socket.connected) return Promise.resolve(this);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.socket.off("connect", onConnect);
        this.socket.off("connect_error", onError);
      };
      const onConnect = () => {
        done();
        resolve(this);
      };
      const onError = (err) => {
        done();
        reject(err);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: not connected after ${ms} ms (got: ${this.summary()})`));
      }, ms);
      this.socket.on("connect", onConnect);
      this.socket.on("connect_error", onError);
    });
  }

  /** Emits with an ack and resolves with the ack's payload; rejects clearly after `ms`. */
  async ack(event, payload, ms = WAIT_MS) {
    const args = payload === undefined ? [] : [payload];
    try {
      return await this.socket.timeout(ms).emitWithAck(event, ...args);
    } catch (err) {
      throw new Error(
        `${this.label}: no ack for "${event}" within ${ms} ms (${err.message}; connected: ` +
          `${this.socket.connected}; received so far: ${this.summary()})`,
      );
    }
  }

  /**
   * Resolves once the transport upgrade to websocket (the default after polling) is done and
   * the server has seen it (an ack round trip follows the upgrade packet).
   */
  async upgraded(ms = WAIT_MS) {
    const engine = this.socket.io.engine;
    if (engine.transport.name !== "websocket") await once(engine, "upgrade", ms);
    await this.ack("ping", { ts: 0 }, ms); // answered even when unauthenticated
  }

  /**
   * An ordering barrier: a `ping` round trip. Everything the server queued for this socket before
   * it handled the ping has arrived once this resolves.
   */
  async barrier() {
    const ts = Date.now();
    const reply = await this.ack("ping", { ts });
    assert.equal(reply.ok, true, `${this.label}: ping refused: ${JSON.stringify(reply)}`);
    await this.next("pong", { where: (p) => p && p.ts === ts });
  }

  close() {
    this.socket.disconnect();
  }
}

/**
 * The user-facing check of a `{ok:false, error:{code, message}}` ack.
 */
export function assertAckError(reply, code, what = "ack") {
  assert.equal(typeof reply, "object", `${what}: the ack is not an object: ${JSON.stringify(reply)}`);
  assert.equal(reply.ok, false, `${what}: expected ok:false, got ${JSON.stringify(reply)}`);
  assert.equal(reply.error?.code, code, `${what}: expected ${code}, got ${JSON.stringify(reply)}`);
  assert.equal(typeof reply.error.message, "string", `${what}: error.message is not text`);
}

export function assertAckOk(reply, what = "ack") {
  assert.equal(reply?.ok, true, `${what}: expected ok:true, got ${JSON.stringify(reply)}`);
}

// ---------------------------------------------------------------------------------------------
// The per-file fixture

/**
 * Starts one server for the test file (`before`) and stops it (`after`). Sockets made with
 * `fx.socket()` / `fx.connect()` are closed after each test. When a test fails, what the server
 * printed during it is written to stderr.
 */
export function useServer(env = {}) {
  const fx = {
    server: null,
    probes: new Set(),
    mark: 0,

    /** A socket (not yet awaited), closed after the test. */
    socket(options = {}) {
      const probe = new Probe(fx.server, options);
      fx.probes.add(probe);
      return probe;
    },

    /** A connected socket; with a token, also waits for `authenticated`. */
    async connect(options = {}) {
      const probe = fx.socket(options);
      await probe.connected();
      if (options.token !== undefined) probe.welcome = await probe.next("authenticated");
      return probe;
    },

    /** The `connect_error` message of a refused handshake (fails if the socket connects). */
    async refusal(options = {}) {
      const probe = fx.socket(options);
      try {
        await probe.connected();
      } catch (err) {
        probe.close();
        return err.message;
      }
      probe.close();
      assert.fail(`${probe.label}: the handshake was accepted, expected a connect_error`);
    },
  };

  before(async () => {
    fx.server = await Server.start({ env });
  });
  beforeEach(async () => {
    // A test that stopped or crashed the server does not take the next ones down with it.
    if (fx.server && !fx.server.running) await fx.server.restart();
    fx.mark = fx.server?.logMark() ?? 0;
  });
  afterEach((t) => {
    for (const probe of fx.probes) probe.close();
    fx.probes.clear();
    if (!t.passed && fx.server) {
      process.stderr.write(
        `\n----- craftcode output during "${t.name}" -----\n${fx.server.logSince(fx.mark)}` +
          `----- end of craftcode output -----\n`,
      );
    }
  });
  after(async () => {
    await fx.server?.dispose();
  });
  return fx;
}
