// The Socket Monitor (GET /monitor) in a real headless Chromium, against a real craftcode
// process on a fresh SQLite database: an admin signs in and watches their own connection, a
// second user (whose name is an HTML payload) comes online from node's socket.io-client, the
// test actions and the self-test run from the page's buttons, a non-admin is refused, the cookie
// alone signs the admin in, the online list is paged through (`?pageSize=2`) and listed again on
// demand for a socket whose presence scope is "watched", a revoked session is shown, and a
// stopped server is noticed.
//
// Nothing is built here: CRAFTCODE_BIN (default ../../target/debug/craftcode) must exist.
// Every wait is Playwright's auto-waiting (locator.waitFor, page.waitForFunction) or an event,
// each with a timeout; there are no fixed sleeps.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it as test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";
import { io } from "socket.io-client";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const SCREENSHOT = path.join(REPO, "target", "monitor.png");
const BIN = process.env.CRAFTCODE_BIN
  ? path.resolve(process.env.CRAFTCODE_BIN)
  : path.join(REPO, "target", "debug", "craftcode");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const HOST = "127.0.0.1";
const WAIT = { timeout: 15_000 };

const ADMIN = { email: "ada@example.com", password: "correct horse battery", name: "Ada Admin" };
const EVIL_NAME = "<img src=x onerror=alert(1)>";
const MEMBER = { email: "bob@example.com", password: "correct horse battery", name: EVIL_NAME };
/**
 * Sockets that authenticate while more users than this are online only watch some users
 * (presence scope "watched", SPEC §5): the admin's first page (alone, then with Bob) sees
 * everybody live, a tab opened once five are online does not.
 */
const PRESENCE_BROADCAST_MAX = 3;

/** A regular expression that matches exactly `text`. */
const exactly = (text) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);

/** Waits until the element with this test id shows exactly `text` (or matches a RegExp). */
async function seeText(page, testId, text) {
  await page
    .getByTestId(testId)
    .filter({ hasText: text instanceof RegExp ? text : exactly(text) })
    .first()
    .waitFor(WAIT);
}

/** The body of a results-panel entry of this kind (answer, testMessage, selfTest, event). */
const resultBody = (page, kind) => page.locator(`[data-testid="result-entry"][data-kind="${kind}"] .body`);

async function seeResult(page, kind, text) {
  await resultBody(page, kind).filter({ hasText: text }).first().waitFor(WAIT);
}

/** Waits for an error-log entry whose message matches. */
async function seeError(page, text) {
  await page.locator('[data-testid="error-entry"] .body').filter({ hasText: text }).first().waitFor(WAIT);
}

/** Resolves with the first `event` the socket receives, or rejects after the timeout. */
function nextEvent(socket, event, timeout = WAIT.timeout) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, got);
      reject(new Error(`no ${event} within ${timeout} ms`));
    }, timeout);
    const got = (payload) => {
      clearTimeout(timer);
      resolve(payload);
    };
    socket.once(event, got);
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, HOST, () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** A craftcode process on a free port with a fresh SQLite database in a temp dir. */
async function startServer() {
  if (!existsSync(BIN)) {
    throw new Error(`craftcode binary not found at ${BIN}: run \`cargo build\` first or set CRAFTCODE_BIN`);
  }
  const dir = mkdtempSync(path.join(tmpdir(), "craftcode-monitor-"));
  const port = await freePort();
  const url = `http://${HOST}:${port}`;
  const child = spawn(BIN, ["serve"], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      NO_COLOR: "1",
      RUST_LOG: "info",
      HOST,
      PORT: String(port),
      BASE_URL: url,
      DATABASE_URL: `sqlite://${dir}/db.sqlite`,
      JWT_SECRET: randomBytes(32).toString("hex"),
      PRESENCE_INTERVAL: "200ms",
      PRESENCE_BROADCAST_MAX: String(PRESENCE_BROADCAST_MAX),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = [];
  child.stdout.on("data", (chunk) => output.push(chunk.toString()));
  child.stderr.on("data", (chunk) => output.push(chunk.toString()));
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const server = { url, dir, child, exited, output };

  // Ready when /healthz answers; each attempt is a real request, bounded by the deadline.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const status = await Promise.race([
      fetch(`${url}/healthz`).then((r) => r.status, () => 0),
      exited.then(() => -1),
    ]);
    if (status === 200) return server;
    if (status === -1 || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`craftcode did not start:\n${output.join("")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function register(server, user) {
  const response = await fetch(`${server.url}/api/auth/register`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(user),
  });
  assert.equal(response.status, 201, `registering ${user.email}: ${await response.clone().text()}`);
  return response.json();
}

/** A page that records every dialog, uncaught error and CSP violation it meets. */
async function openPage(context, problems) {
  const page = await context.newPage();
  page.on("dialog", (dialog) => {
    problems.push(`dialog: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy/i.test(message.text())) {
      problems.push(`CSP: ${message.text()}`);
    }
  });
  return page;
}

async function signIn(page, server, { email, password }) {
  await page.goto(`${server.url}/monitor`);
  await page.getByTestId("signin-panel").waitFor(WAIT);
  await page.getByTestId("signin-email").fill(email);
  await page.getByTestId("signin-password").fill(password);
  await page.getByTestId("signin-submit").click();
}

describe("the Socket Monitor in a real Chromium", () => {
  let server;
  let browser;
  let context;
  let page;
  let admin;
  let member;
  let memberSocket;
  /** Sockets of more users, for the paging test. */
  const crowd = [];
  const problems = [];
  let failed = false;
  /** A test whose failure also prints the server's output at the end. */
  const it = (name, fn) =>
    test(name, async () => {
      try {
        await fn();
      } catch (error) {
        failed = true;
        throw error;
      }
    });

  before(async () => {
    server = await startServer();
    admin = await register(server, ADMIN);
    member = await register(server, MEMBER);
    assert.equal(admin.user.isAdmin, true, "the first user of an empty database is an admin");
    assert.equal(member.user.isAdmin, false);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await openPage(context, problems);
  });

  after(async () => {
    memberSocket?.disconnect();
    for (const socket of crowd) socket.disconnect();
    await browser?.close();
    if (server) {
      if (server.child.exitCode === null && server.child.signalCode === null) {
        server.child.kill("SIGKILL");
      }
      await server.exited;
      if (failed) process.stderr.write(`--- craftcode output ---\n${server.output.join("")}\n`);
      rmSync(server.dir, { recursive: true, force: true });
    }
  });

  it("serves the page with a strict Content-Security-Policy and no caching", async () => {
    const response = await fetch(`${server.url}/monitor`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/html/);
    assert.equal(response.headers.get("cache-control"), "no-cache");
    const csp = response.headers.get("content-security-policy");
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /style-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const script = await fetch(`${server.url}/monitor/monitor.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get("content-type"), /^text\/javascript/);
  });

  it("an admin signs in with the form and sees this browser's connection", async () => {
    await signIn(page, server, ADMIN);
    await page.getByTestId("dashboard").waitFor(WAIT);
    await seeText(page, "conn-state", "connected");
    await seeText(page, "conn-id", /^[\w-]{8,}$/);
    await seeText(page, "conn-transport", "websocket");
    await seeText(page, "conn-ping", /^\d+(\.\d)? ms$/);
    await seeText(page, "whoami", `${ADMIN.name} · ${ADMIN.email} · admin`);
    await seeText(page, "server-adapter", "local");
    await seeText(page, "server-nodes", "1");
    assert.equal(await page.getByTestId("signin-panel").isHidden(), true);
  });

  it("a user who comes online appears in the list, their name shown as text", async () => {
    memberSocket = io(server.url, {
      path: "/api/socket",
      auth: { token: member.token },
      transports: ["websocket"],
    });
    await nextEvent(memberSocket, "authenticated");
    const list = page.getByTestId("online-list");
    await list.getByText(EVIL_NAME, { exact: true }).waitFor(WAIT);
    await list.getByText(ADMIN.name, { exact: true }).waitFor(WAIT);
    await seeText(page, "online-count", "2");
    assert.equal(await list.locator("img").count(), 0, "the name must not become an element");
    assert.match(await list.innerHTML(), /&lt;img src=x onerror=alert\(1\)&gt;/);

    await page.getByTestId("server-refresh").click();
    await seeText(page, "server-sockets", "2");
    await seeText(page, "server-users", "2");
  });

  it("sendToUser reaches the chosen user", async () => {
    await page.getByTestId("action-target").selectOption(member.user.id);
    await page.getByTestId("action-message").fill("hello Bob, from the monitor");
    const received = nextEvent(memberSocket, "testMessage");
    await page.getByTestId("action-send-to-user").click();
    const message = await received;
    assert.equal(message.message, "hello Bob, from the monitor");
    assert.equal(message.action, "sendToUser");
    await seeResult(page, "answer", exactly(`sendToUser to ${EVIL_NAME}: 1 recipient`));
    assert.equal(await page.getByTestId("results").locator("img").count(), 0);
  });

  it("broadcast reaches this page's own socket", async () => {
    await page.getByTestId("action-message").fill("broadcast from the monitor");
    const received = nextEvent(memberSocket, "testMessage");
    await page.getByTestId("action-broadcast").click();
    assert.equal((await received).message, "broadcast from the monitor");
    await seeResult(page, "testMessage", /testMessage \(broadcast\): .*broadcast from the monitor/);
    await seeResult(page, "answer", /^broadcast: \d+ recipients$/);
  });

  it("emitOnlineUsers answers how many sockets got the list", async () => {
    const received = nextEvent(memberSocket, "getOnlineUsers");
    await page.getByTestId("action-emit-online-users").click();
    const { users, scope } = await received;
    assert.equal(scope, "all", "two users online: Bob's socket watches everybody");
    assert.deepEqual(users.map((u) => u.name).sort(), [ADMIN.name, EVIL_NAME].sort());
    const answer = resultBody(page, "answer").filter({ hasText: /^emitOnlineUsers: \d+ recipients?$/ });
    await answer.first().waitFor(WAIT);
    const recipients = Number((await answer.first().textContent()).match(/\d+/)[0]);
    assert.ok(recipients >= 2, `emitOnlineUsers reached ${recipients} sockets, expected the page and Bob`);
  });

  it("the self-test passes every check", async () => {
    await page.getByTestId("run-self-test").click();
    await seeText(page, "selftest-summary", /^Self-test passed: (\d+)\/\1 checks ok$/);
    const table = page.getByTestId("selftest-table").first();
    const rows = table.getByTestId("check-row");
    const names = await rows.locator("td:first-child").allTextContents();
    for (const name of [
      "socketServer",
      "connectionTracking",
      "messageSending",
      "broadcast",
      "database",
      "adapter",
      "apiIntegration",
    ]) {
      assert.ok(names.includes(name), `the self-test table lists ${name} (got ${names.join(", ")})`);
    }
    const failing = await table.locator('[data-testid="check-row"][data-ok="false"]').count();
    assert.equal(failing, 0);

    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it("a second tab of the same browser is signed in by the cookie alone", async () => {
    const tab = await openPage(context, problems);
    await tab.goto(`${server.url}/monitor`);
    await tab.getByTestId("dashboard").waitFor(WAIT);
    await seeText(tab, "conn-state", "connected");
    assert.equal(await tab.getByTestId("signin-panel").isHidden(), true);
    // A cookie-authenticated POST passes the origin check.
    await tab.getByTestId("action-emit-online-users").click();
    await seeResult(tab, "answer", /^emitOnlineUsers: \d+ recipients?$/);
    await tab.close();
  });

  it("the online list pages through every online user, and a watched-scope tab lists them again on Refresh", async () => {
    // The first page's socket came in while the admin was alone: it watches everybody.
    await seeText(page, "presence-scope", /^Live: every user's changes/);
    const names = ["Cleo", "Dan", "Eve"];
    for (const name of names) {
      const user = { email: `${name.toLowerCase()}@example.com`, password: "correct horse battery", name };
      const { token } = await register(server, user);
      const socket = io(server.url, { path: "/api/socket", auth: { token }, transports: ["websocket"] });
      crowd.push(socket);
      await nextEvent(socket, "authenticated");
    }
    const everybody = [ADMIN.name, EVIL_NAME, ...names];
    await seeText(page, "online-count", String(everybody.length));

    // Five online, more than PRESENCE_BROADCAST_MAX: this tab's socket only watches some users,
    // so its list must come from paging, two users a page.
    const tab = await openPage(context, problems);
    try {
      await tab.goto(`${server.url}/monitor?pageSize=2`);
      await seeText(tab, "conn-state", "connected");
      await tab.locator('[data-testid="presence-scope"][data-scope="watched"]').waitFor(WAIT);
      await seeText(tab, "online-count", String(everybody.length));
      await seeText(tab, "online-summary", /^Last listed at [\d:]+ \(5 online then, 3 pages of up to 2\)$/);
      const listed = await tab.getByTestId("online-user").locator(".name").allTextContents();
      assert.deepEqual(listed.sort(), [...everybody].sort(), "each online user listed exactly once");

      // Eve leaves: the first page hears it live; the tab lists again when asked.
      crowd.pop().disconnect();
      await seeText(page, "online-count", String(everybody.length - 1));
      await page.getByTestId("online-list").getByText("Eve", { exact: true }).waitFor({ state: "detached", ...WAIT });
      await tab.getByTestId("online-refresh").click();
      await seeText(tab, "online-summary", /^Last listed at [\d:]+ \(4 online then, 2 pages of up to 2\)$/);
      await seeText(tab, "online-count", String(everybody.length - 1));
      const after = await tab.getByTestId("online-user").locator(".name").allTextContents();
      assert.deepEqual(after.sort(), everybody.filter((n) => n !== "Eve").sort());
    } finally {
      await tab.close();
    }
  });

  it("a non-admin is refused, and signing out forgets them", async () => {
    const other = await browser.newContext();
    try {
      const refused = await openPage(other, problems);
      await signIn(refused, server, MEMBER);
      await refused.getByTestId("refusal").waitFor(WAIT);
      await seeText(refused, "refusal", /The Socket Monitor is for admins/);
      await seeText(refused, "refusal-name", `${EVIL_NAME} (${MEMBER.email})`);
      assert.equal(await refused.getByTestId("dashboard").isHidden(), true);
      assert.equal(await refused.locator("main img").count(), 0);

      await refused.getByTestId("sign-out").click();
      await refused.getByTestId("signin-panel").waitFor(WAIT);
      await refused.reload();
      await refused.getByTestId("signin-panel").waitFor(WAIT);
    } finally {
      await other.close();
    }
  });

  it("a session revoked by the server is shown and not reconnected", async () => {
    const other = await browser.newContext();
    try {
      const revoked = await openPage(other, problems);
      await signIn(revoked, server, ADMIN);
      await seeText(revoked, "conn-state", "connected");
      await seeText(revoked, "conn-session", /^[0-9a-f-]{36}$/);
      const sessionId = await revoked.getByTestId("conn-session").textContent();
      const response = await fetch(`${server.url}/api/sessions/${sessionId}`, {
        method: "DELETE",
        headers: { Authorization: `Bearer ${admin.token}` },
      });
      assert.ok(response.ok, `DELETE /api/sessions answered ${response.status}`);
      await seeText(revoked, "banner", /The server ended this session \(session_revoked\)/);
      await seeText(revoked, "conn-state", "disconnected");
      await seeError(revoked, exactly("force_logout: session_revoked"));
    } finally {
      await other.close();
    }
  });

  it("a stopped server shows as reconnecting", async () => {
    server.child.kill("SIGTERM");
    await seeText(page, "conn-state", /^(reconnecting|disconnected)$/);
    await seeResult(page, "event", /^server_shutdown \(server_shutdown\)/);
    const { code, signal } = await server.exited;
    assert.equal(code, 0, `craftcode exited with ${code ?? signal} on SIGTERM`);
    await seeError(page, /^connect_error: /);
    await seeText(page, "conn-state", "reconnecting");
  });

  it("no dialog, uncaught error or CSP violation happened on any page", () => {
    assert.deepEqual(problems, []);
  });
});
