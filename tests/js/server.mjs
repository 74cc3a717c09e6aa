// Starts real `craftcode` server processes for the compatibility suite.
//
// One server per test file (or per test when it needs a restart): a free port on 127.0.0.1, a
// fresh SQLite file in a temp dir, or a fresh PostgreSQL database when CRAFTCODE_TEST_DB=postgres.
// The process output is kept and printed only when a test fails.

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** The server binary: `CRAFTCODE_BIN`, else `target/debug/craftcode` of this repository. */
export function binaryPath() {
  const bin = process.env.CRAFTCODE_BIN
    ? path.resolve(process.env.CRAFTCODE_BIN)
    : path.resolve(HERE, "../../target/debug/craftcode");
  if (!existsSync(bin)) {
    throw new Error(
      `craftcode binary not found at ${bin}: run \`cargo build\` at the repository root first ` +
        "(or set CRAFTCODE_BIN to the binary to test)",
    );
  }
  return bin;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function randomSecret() {
  return randomBytes(32).toString("hex"); // 64 characters
}

/** Which database the suite runs on: `sqlite` (default) or `postgres`. */
export function databaseKind() {
  const kind = (process.env.CRAFTCODE_TEST_DB || "sqlite").toLowerCase();
  if (kind !== "sqlite" && kind !== "postgres") {
    throw new Error(`CRAFTCODE_TEST_DB must be sqlite or postgres, not ${JSON.stringify(kind)}`);
  }
  return kind;
}

const PG_ADMIN_URL =
  process.env.CRAFTCODE_TEST_PG_URL || "postgres://postgres@127.0.0.1:5432/postgres";
const pendingDrops = new Set();

function psql(sql) {
  const out = spawnSync("psql", [PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], {
    encoding: "utf8",
  });
  if (out.error) throw new Error(`cannot run psql: ${out.error.message}`);
  if (out.status !== 0) throw new Error(`psql -c ${JSON.stringify(sql)} failed: ${out.stderr}`);
}

function dropPostgres(name) {
  if (!pendingDrops.delete(name)) return;
  psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/**
 * A fresh, empty database: `{ kind, url, dir, drop() }`. `dir` is a temp dir that is also the
 * server's working directory.
 */
export function createDatabase(kind = databaseKind()) {
  const dir = mkdtempSync(path.join(tmpdir(), "craftcode-js-"));
  if (kind === "sqlite") {
    return {
      kind: "sqlite",
      dir,
      url: `sqlite://${dir}/db.sqlite`,
      drop() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const name = `craftcode_test_${randomBytes(6).toString("hex")}`;
  psql(`CREATE DATABASE ${name}`);
  pendingDrops.add(name);
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    kind: "postgres",
    dir,
    url: url.toString(),
    drop() {
      dropPostgres(name);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const live = new Set();
process.on("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const name of [...pendingDrops]) {
    try {
      dropPostgres(name);
    } catch {
      // best effort at exit
    }
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A running server. `env` adds or overrides settings (e.g. `{ AUTH_TIMEOUT: "1s" }`).
 * Fields: `url`, `port`, `jwtSecret`, `db`; methods: `stop()` (SIGTERM), `kill()` (SIGKILL),
 * `restart()` (same port, database and secret), `dispose()`, `log()` / `logSince(mark)`.
 */
export class Server {
  /**
   * Starts a server on a fresh database, or, for the nodes of a cluster, on a shared `db` (which
   * it then does not drop) with a shared `jwtSecret`.
   */
  static async start({ env = {}, db, jwtSecret } = {}) {
    const bin = binaryPath();
    const shared = db !== undefined;
    db ??= createDatabase();
    const server = new Server(bin, shared ? { ...db, drop() {} } : db, await freePort(), env);
    if (jwtSecret) server.jwtSecret = jwtSecret;
    try {
      await server.#launch();
    } catch (err) {
      await server.dispose();
      throw err;
    }
    return server;
  }

  #bin;
  #env;
  #child = null;
  #exited = null;
  #output = [];

  constructor(bin, db, port, env) {
    this.#bin = bin;
    this.db = db;
    this.port = port;
    this.jwtSecret = randomSecret();
    this.url = `http://${HOST}:${port}`;
    this.#env = env;
  }

  /** The environment the server process gets (a clean one: nothing leaks in from the shell). */
  env() {
    return {
      PATH: process.env.PATH,
      HOME: this.db.dir,
      RUST_BACKTRACE: "1",
      RUST_LOG: process.env.RUST_LOG || "info,craftcode=debug",
      NO_COLOR: "1",
      HOST,
      PORT: String(this.port),
      DATABASE_URL: this.db.url,
      JWT_SECRET: this.jwtSecret,
      ...this.#env,
    };
  }

  /** Runs the binary once with arguments (e.g. `user set …`) on this server's database. */
  cli(args) {
    const out = spawnSync(this.#bin, args, { cwd: this.db.dir, env: this.env(), encoding: "utf8" });
    if (out.status !== 0) {
      throw new Error(`craftcode ${args.join(" ")} exited with ${out.status}: ${out.stderr}`);
    }
    return out.stdout;
  }

  async #launch() {
    const child = spawn(this.#bin, ["serve"], {
      cwd: this.db.dir,
      env: this.env(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    live.add(child);
    const keep = (chunk) => this.#output.push(chunk.toString());
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    this.#exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        this.#output.push(`[craftcode exited: code ${code}, signal ${signal}]\n`);
        resolve({ code, signal });
      });
      child.once("error", (err) => {
        live.delete(child);
        this.#output.push(`[craftcode failed to start: ${err.message}]\n`);
        resolve({ code: null, signal: null, error: err });
      });
    });
    this.#output.push(`[craftcode serve on ${this.url}, database ${this.db.kind}]\n`);
    await this.#waitReady();
  }

  async #waitReady() {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let exited = false;
    this.#exited.then(() => (exited = true));
    while (Date.now() < deadline) {
      if (exited) {
        throw new Error(`craftcode exited before it was ready:\n${this.log()}`);
      }
      try {
        const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`craftcode was not ready within ${READY_TIMEOUT_MS} ms:\n${this.log()}`);
  }

  get running() {
    return this.#child !== null && live.has(this.#child);
  }

  get pid() {
    return this.#child?.pid;
  }

  /** Graceful stop: SIGTERM, then waits for the exit (SIGKILL after a while). */
  async stop() {
    if (!this.running) return this.#exited ? await this.#exited : null;
    this.#child.kill("SIGTERM");
    const timer = setTimeout(() => {
      this.#output.push(`[no exit ${STOP_TIMEOUT_MS} ms after SIGTERM: sending SIGKILL]\n`);
      this.#child.kill("SIGKILL");
    }, STOP_TIMEOUT_MS);
    const result = await this.#exited;
    clearTimeout(timer);
    return result;
  }

  /** Crash: SIGKILL, and waits for the exit. */
  async kill() {
    if (!this.running) return this.#exited ? await this.#exited : null;
    this.#child.kill("SIGKILL");
    return await this.#exited;
  }

  /** Starts the server again on the same port, database and JWT secret. */
  async restart() {
    if (this.running) await this.stop();
    await this.#launch();
  }

  /** Stops the process and removes the database. */
  async dispose() {
    try {
      if (this.running) await this.kill();
    } finally {
      this.db.drop();
    }
  }

  /** Everything the process printed so far. */
  log() {
    return this.#output.join("");
  }

  /** A mark for `logSince`. */
  logMark() {
    return this.#output.length;
  }

  logSince(mark) {
    return this.#output.slice(mark).join("");
  }
}
