// A real cluster for the cluster suite: a Redis server of its own (so a test can restart it), one
// fresh PostgreSQL database, three `craftcode serve` nodes sharing both under a fresh key prefix,
// and nginx in front of them, twice: round robin without sticky sessions (for websocket-only
// clients) and `ip_hash` (sticky, for clients that poll).

import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, afterEach, before } from "node:test";

import { Probe, api } from "../helpers.mjs";
import { Server, createDatabase, freePort } from "../server.mjs";

const HOST = "127.0.0.1";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` (async, truthy when done) every 50 ms; fails with `what` after `ms`. */
export async function eventually(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await sleep(50);
  }
  throw new Error(`timed out after ${ms} ms waiting until ${what}`);
}

/** A redis-server process of the suite's own, on a fixed port so it can be restarted. */
class Redis {
  constructor(port, dir) {
    this.port = port;
    this.dir = dir;
    this.url = `redis://${HOST}:${port}`;
    this.child = null;
  }

  async start() {
    const child = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", this.dir],
      { stdio: "ignore" },
    );
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", resolve));
    await eventually(`redis-server answers on ${this.port}`, () => this.answers());
  }

  answers() {
    const out = spawnSync("redis-cli", ["-p", String(this.port), "ping"], { encoding: "utf8" });
    return out.stdout?.trim() === "PONG";
  }

  /** Kills it (SIGKILL: everything it held is gone, as in a crash). */
  async kill() {
    if (!this.child) return;
    this.child.kill("SIGKILL");
    await this.exited;
    this.child = null;
  }

  /** Keys under a prefix (to check that the cluster writes only there). */
  keys(pattern) {
    const out = spawnSync("redis-cli", ["-p", String(this.port), "--scan", "--pattern", pattern], {
      encoding: "utf8",
    });
    return out.stdout.split("\n").filter(Boolean);
  }
}

/** nginx in front of the nodes: `roundRobinUrl` (no stickiness) and `stickyUrl` (ip_hash). */
class Nginx {
  constructor(dir, nodes) {
    this.dir = dir;
    this.nodes = nodes;
  }

  async start() {
    const [rr, sticky] = [await freePort(), await freePort()];
    this.roundRobinUrl = `http://${HOST}:${rr}`;
    this.stickyUrl = `http://${HOST}:${sticky}`;
    const proxy = (port, upstream) => `
  server {
    listen ${HOST}:${port};
    location / {
      proxy_pass http://${upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 1h;
      proxy_connect_timeout 1s;
    }
  }`;
    const upstream = this.nodes.map((n) => `    server ${HOST}:${n.port} max_fails=1 fail_timeout=5s;`).join("\n");
    mkdirSync(path.join(this.dir, "logs"), { recursive: true });
    const conf = `
${process.getuid?.() === 0 ? "user root;" : ""}
worker_processes 1;
error_log ${this.dir}/logs/error.log warn;
pid ${this.dir}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${this.dir}/body;
  proxy_temp_path ${this.dir}/proxy;
  fastcgi_temp_path ${this.dir}/fastcgi;
  uwsgi_temp_path ${this.dir}/uwsgi;
  scgi_temp_path ${this.dir}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  upstream round_robin {
${upstream}
  }
  upstream sticky {
    ip_hash;
${upstream}
  }
${proxy(rr, "round_robin")}
${proxy(sticky, "sticky")}
}
`;
    const file = path.join(this.dir, "nginx.conf");
    writeFileSync(file, conf);
    this.child = spawn("nginx", ["-p", this.dir, "-c", file, "-g", "daemon off;"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.errors = [];
    this.child.stderr.on("data", (c) => this.errors.push(c.toString()));
    // A missing nginx is an `error` with no `exit`: fail at once rather than wait for it.
    let failed = null;
    this.exited = new Promise((resolve) => {
      this.child.once("exit", resolve);
      this.child.once("error", (err) => {
        failed = err;
        this.child = null;
        resolve();
      });
    });
    await eventually("nginx forwards to a node", async () => {
      if (failed) throw new Error(`cannot run nginx: ${failed.message}`);
      try {
        return (await fetch(`${this.roundRobinUrl}/healthz`)).status === 200;
      } catch {
        return false;
      }
    });
  }

  async stop() {
    if (!this.child) return;
    this.child.kill("SIGTERM");
    await this.exited;
    this.child = null;
  }
}

/**
 * The per-file fixture: `fx.nodes` (three Servers), `fx.redis`, `fx.nginx`, `fx.prefix`, and
 * `fx.socket(url, options)` for sockets that are closed after each test. Node output is printed
 * when a test fails.
 */
export function useCluster(env = {}) {
  const fx = {
    nodes: [],
    probes: new Set(),
    prefix: `craftcode_test_${randomBytes(6).toString("hex")}`,

    /** A socket to `target` (a node or `{url}`), closed after the test. */
    socket(target, options = {}) {
      const probe = new Probe(target, options);
      fx.probes.add(probe);
      return probe;
    },

    /** A connected, authenticated socket. */
    async connect(target, options = {}) {
      const probe = fx.socket(target, options);
      await probe.connected();
      probe.welcome = await probe.next("authenticated");
      return probe;
    },

    /** How many sockets each node holds itself (from its self-test, as an admin). */
    async socketsPerNode(admin) {
      const counts = [];
      for (const node of fx.nodes) {
        if (!node.running) {
          counts.push(0);
          continue;
        }
        const { body } = await api(node, "GET", "/api/socket-test", { token: admin.token });
        counts.push(body.connections.byNamespace["/"]);
      }
      return counts;
    },
  };
  let dir;
  let db;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "craftcode-cluster-"));
    fx.redis = new Redis(await freePort(), dir);
    await fx.redis.start();
    db = createDatabase("postgres");
    const jwtSecret = randomBytes(32).toString("hex");
    const nodeEnv = {
      REDIS_URL: fx.redis.url,
      REDIS_PREFIX: fx.prefix,
      PRESENCE_INTERVAL: "200ms",
      PRESENCE_TTL: "3s",
      ...env,
    };
    // One after the other: the first migrates the fresh database.
    for (let i = 0; i < 3; i++) {
      fx.nodes.push(await Server.start({ env: nodeEnv, db, jwtSecret }));
    }
    fx.nginx = new Nginx(path.join(dir, "nginx"), fx.nodes);
    await fx.nginx.start();
  });

  afterEach((t) => {
    for (const probe of fx.probes) probe.close();
    fx.probes.clear();
    if (!t.passed) {
      fx.nodes.forEach((node, i) => {
        process.stderr.write(`\n----- node ${i + 1} output -----\n${node.log()}`);
      });
      process.stderr.write(`\n----- nginx -----\n${fx.nginx?.errors.join("") ?? ""}\n`);
    }
  });

  after(async () => {
    for (const probe of fx.probes) probe.close();
    await fx.nginx?.stop();
    for (const node of fx.nodes) await node.dispose();
    db?.drop();
    await fx.redis?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  return fx;
}
