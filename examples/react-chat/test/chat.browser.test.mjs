// The React example in a real headless Chromium: two browser contexts (Alice and Bob) sign in
// through the page and chat — a message, the typing indicator, the read receipt — against a real
// craftcode server behind `vite preview`'s proxy (the built example, dist/). Then the server is
// restarted: both pages show the reconnect banner, it goes away, and the chat goes on. The server
// lets a socket hear about everybody only while at most one user is online
// (PRESENCE_BROADCAST_MAX=1), so the people list's dots come from `watchPresence` for every page
// but the first; one test follows them live for people who are not conversation partners. Groups,
// replies, edits, reactions and deletions, Web Push through the service worker, a video call
// through a real coturn, and files (a picture and a PDF, uploaded over tus through a slowed-down
// uplink so that both pages show the upload's progress), each in a test of their own.
//
// CRAFTCODE_BIN (default ../../target/debug/craftcode) and CHROMIUM_PATH (default
// /usr/bin/chromium) must exist; `npm test` builds dist/ first. Every wait is Playwright's
// auto-waiting with a timeout; there are no fixed sleeps.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { Coturn } from "../../../tests/js/coturn.mjs";
import { makePng } from "../../../tests/js/files.mjs";
import { PushService } from "../../../tests/js/push-service.mjs";
import { Server, freePort } from "../../../tests/js/server.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.resolve(HERE, "..");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const WAIT = { timeout: 15_000 };
const PASSWORD = "correct horse battery staple";

let server;
let preview;
let previewUrl;
let browser;
let turn;
const previewOutput = [];
/** Uncaught errors in the pages: the test fails on any. */
const pageErrors = [];

async function register(name) {
  const email = `${name.toLowerCase()}@example.com`;
  const res = await fetch(`${server.url}/api/auth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: PASSWORD, name }),
  });
  const text = await res.text();
  assert.equal(res.status, 201, `register ${name}: ${res.status} ${text}`);
  const body = JSON.parse(text);
  return { ...body, id: body.user.id, email, name };
}

/** Starts `vite preview` of dist/ on `port`, proxying /api to the craftcode server. */
async function startPreview(port) {
  const vite = path.join(EXAMPLE, "node_modules", "vite", "bin", "vite.js");
  const child = spawn(process.execPath, [vite, "preview", "--host", "127.0.0.1", "--port", String(port), "--strictPort"], {
    cwd: EXAMPLE,
    env: { ...process.env, CRAFTCODE_URL: server.url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => previewOutput.push(d.toString()));
  child.stderr.on("data", (d) => previewOutput.push(d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`vite preview exited:\n${previewOutput.join("")}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return { child, url };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`vite preview did not answer on ${url}:\n${previewOutput.join("")}`);
}

/** A fresh browser context signed in as `user`, showing the chat (the page at `query`). */
async function signIn(user, query = "") {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(`${user.name}: ${err.stack}`));
  await page.goto(`${previewUrl}/${query}`);
  await page.getByTestId("email").fill(user.email);
  await page.getByTestId("password").fill(PASSWORD);
  await page.getByTestId("sign-in").click();
  await page.getByTestId("me").filter({ hasText: user.name }).waitFor(WAIT);
  await page.getByTestId("connection-banner").waitFor({ state: "detached", ...WAIT });
  return page;
}

/** After `t`, what the server and `vite preview` printed, if it failed. */
function showLogsIfFailed(t) {
  t.after(() => {
    if (!t.passed) {
      process.stderr.write(`\n----- craftcode -----\n${server.log()}\n----- vite preview -----\n${previewOutput.join("")}\n`);
    }
  });
}

/** A one-page PDF with a line of text, its cross-reference table computed. */
function makePdf(text) {
  const stream = `BT /F1 18 Tf 20 100 Td (${text}) Tj ET`;
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
  ];
  let pdf = "%PDF-1.4\n";
  const offsets = objects.map((body, i) => {
    const at = pdf.length;
    pdf += `${i + 1} 0 obj\n${body}\nendobj\n`;
    return at;
  });
  const xref = pdf.length;
  pdf += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const at of offsets) pdf += `${String(at).padStart(10, "0")} 00000 n \n`;
  pdf += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(pdf, "latin1");
}

/** The person entry for `user` in `page`'s list. */
const person = (page, user) => page.locator(`[data-testid="person"][data-user-id="${user.id}"]`);

before(async () => {
  const port = await freePort();
  turn = await Coturn.start();
  server = await Server.start({
    env: {
      CORS_ORIGINS: `http://127.0.0.1:${port}`,
      PRESENCE_INTERVAL: "200ms",
      PRESENCE_BROADCAST_MAX: "1",
      PUSH_DELAY: "500ms",
      TURN_URLS: turn.url,
      TURN_SECRET: turn.secret,
    },
  });
  ({ child: preview, url: previewUrl } = await startPreview(port));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Calls: a fake camera and microphone, allowed without asking.
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
    ],
  });
});

after(async () => {
  await browser?.close();
  preview?.kill("SIGTERM");
  await server?.dispose();
  await turn?.stop();
});

test("two people chat through the React example: message, typing indicator, read receipt, reconnect banner", async (t) => {
  showLogsIfFailed(t);
  const alice = await register("Alice");
  const bob = await register("Bob");
  const a = await signIn(alice);
  const b = await signIn(bob);

  // The online list: each sees the other online. Alice was alone when she came in, so she hears
  // about everybody; Bob was not, so Alice's dot on his page comes from watching the people shown.
  await a.locator('[data-testid="people"][data-presence-scope="all"]').waitFor(WAIT);
  await b.locator('[data-testid="people"][data-presence-scope="watched"]').waitFor(WAIT);
  await a.locator(`[data-testid="person"][data-user-id="${bob.id}"][data-online="true"]`).waitFor(WAIT);
  await b.locator(`[data-testid="person"][data-user-id="${alice.id}"][data-online="true"]`).waitFor(WAIT);

  await person(a, bob).click();
  await person(b, alice).click();

  // Alice types: Bob sees the indicator.
  await a.getByTestId("composer").pressSequentially("Hello B");
  await b.getByTestId("typing-indicator").filter({ hasText: "Alice is typing…" }).waitFor(WAIT);

  // Alice sends: the indicator goes, Bob sees the message, and his open conversation reads it.
  await a.getByTestId("composer").pressSequentially("ob!");
  await a.getByTestId("send").click();
  await b.getByTestId("message").filter({ hasText: "Hello Bob!" }).waitFor(WAIT);
  await b.getByTestId("typing-indicator").filter({ hasText: "is typing" }).waitFor({ state: "detached", ...WAIT });
  await a.locator('[data-testid="message"][data-from="me"]').filter({ hasText: "Hello Bob!" }).waitFor(WAIT);
  await a.getByTestId("receipt").filter({ hasText: "Read" }).waitFor(WAIT);

  // Bob answers.
  await b.getByTestId("composer").fill("Hi Alice");
  await b.getByTestId("composer").press("Enter");
  await a.locator('[data-testid="message"][data-from="them"]').filter({ hasText: "Hi Alice" }).waitFor(WAIT);
  await b.getByTestId("receipt").filter({ hasText: "Read" }).waitFor(WAIT);

  // The server restarts: both pages show the banner until their clients are back.
  await server.stop();
  await a.getByTestId("connection-banner").filter({ hasText: "Reconnecting" }).waitFor(WAIT);
  await b.getByTestId("connection-banner").filter({ hasText: "Reconnecting" }).waitFor(WAIT);
  await server.restart();
  await a.getByTestId("connection-banner").waitFor({ state: "detached", ...WAIT });
  await b.getByTestId("connection-banner").waitFor({ state: "detached", ...WAIT });

  await a.getByTestId("composer").fill("Still there?");
  await a.getByTestId("send").click();
  await b.getByTestId("message").filter({ hasText: "Still there?" }).waitFor(WAIT);
  await a.locator('[data-testid="message"][data-from="me"]').filter({ hasText: "Still there?" }).waitFor(WAIT);
  await a.getByTestId("receipt").filter({ hasText: "Read" }).waitFor(WAIT);

  // Each message once on each side.
  for (const page of [a, b]) {
    const texts = await page.getByTestId("message").allTextContents();
    assert.deepEqual(texts, ["Hello Bob!", "Hi Alice", "Still there?"]);
  }
  assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
  await a.screenshot({ path: path.join(EXAMPLE, "dist", "chat-alice.png") });
});

test("on a busy server the people list's dots follow the people shown, partners or not", async (t) => {
  showLogsIfFailed(t);
  const jade = await register("Jade");
  const kurt = await register("Kurt");
  const lena = await register("Lena");
  /** `user`'s entry in `page`'s people list, once it shows them online (or offline). */
  const dot = (page, user, online) =>
    page.locator(`[data-testid="person"][data-user-id="${user.id}"][data-online="${online}"]`).waitFor(WAIT);
  const l = await signIn(lena);
  // Lena is online already: Jade's socket only hears about the people it watches.
  const j = await signIn(jade);
  await j.locator('[data-testid="people"][data-presence-scope="watched"]').waitFor(WAIT);
  await dot(j, lena, true);
  await dot(j, kurt, false);

  // Kurt and Lena, whom Jade has never written to, come and go: her list follows them live.
  const k = await signIn(kurt);
  await dot(j, kurt, true);
  await k.context().close();
  await dot(j, kurt, false);
  await l.context().close();
  await dot(j, lena, false);
  assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
  await j.context().close();
});

test("a group through the React example: create it, add a member, chat, and see it read by N", async (t) => {
  showLogsIfFailed(t);
  const erin = await register("Erin");
  const frank = await register("Frank");
  const grace = await register("Grace");
  const e = await signIn(erin);
  const f = await signIn(frank);
  const g = await signIn(grace);

  // Erin makes a group with Frank.
  await e.getByTestId("group-title").fill("Book club");
  await e.locator(`[data-testid="group-member"][data-user-id="${frank.id}"]`).check();
  await e.getByTestId("create-group").click();
  await e.getByTestId("group-name").filter({ hasText: "Book club (2)" }).waitFor(WAIT);
  const inList = (page) => page.getByTestId("group").filter({ hasText: "Book club" });
  await inList(f).waitFor(WAIT);
  assert.equal(await inList(g).count(), 0, "Grace is not in it yet");

  // She adds Grace, who sees the group appear; everyone sees the notice.
  await e.getByTestId("add-member").selectOption(grace.id);
  await e.getByTestId("add-member-button").click();
  await e.getByTestId("group-name").filter({ hasText: "Book club (3)" }).waitFor(WAIT);
  await inList(g).waitFor(WAIT);

  // Erin writes; both others get it, and it counts as unread until they open the group.
  await e.getByTestId("composer").fill("First meeting on Friday");
  await e.getByTestId("send").click();
  await e.locator('[data-testid="message"][data-from="me"]').filter({ hasText: "First meeting on Friday" }).waitFor(WAIT);
  await e.getByTestId("read-by").filter({ hasText: "Read by 0" }).waitFor(WAIT);
  await inList(f).getByTestId("group-unread").waitFor(WAIT);

  // Frank opens it (and reads), then types and answers: Erin sees it read by 1, then by 2.
  await inList(f).click();
  await f.getByTestId("message").filter({ hasText: "First meeting on Friday" }).waitFor(WAIT);
  await e.getByTestId("read-by").filter({ hasText: "Read by 1" }).waitFor(WAIT);
  await f.getByTestId("composer").pressSequentially("I'll be th");
  await e.getByTestId("typing-indicator").filter({ hasText: "Frank typing…" }).waitFor(WAIT);
  await inList(g).click();
  await g.getByTestId("message").filter({ hasText: "First meeting on Friday" }).waitFor(WAIT);
  await e.getByTestId("read-by").filter({ hasText: "Read by 2" }).waitFor(WAIT);

  for (const page of [f, g]) {
    const texts = await page.locator('[data-testid="message"][data-kind="text"]').allTextContents();
    assert.deepEqual(texts, ["First meeting on Friday"]);
  }
  assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
  await e.screenshot({ path: path.join(EXAMPLE, "dist", "group-erin.png") });
});

test("replies, edits, reactions and deletions through the React example reach the other page", async (t) => {
  showLogsIfFailed(t);
  const hana = await register("Hana");
  const ivan = await register("Ivan");
  const h = await signIn(hana);
  const i = await signIn(ivan);
  await person(h, ivan).click();
  await person(i, hana).click();

  /** The row of the message reading `text` (its actions show on hover, as for a mouse user). */
  const row = (page, text) => page.getByTestId("message-row").filter({ has: page.getByTestId("message").filter({ hasText: text }) });
  const act = async (page, text, action, emoji) => {
    const r = row(page, text);
    await r.hover();
    const button = emoji ? r.locator(`[data-testid="${action}"][data-emoji="${emoji}"]`) : r.getByTestId(action);
    await button.click();
  };

  await h.getByTestId("composer").fill("See you at 5");
  await h.getByTestId("send").click();
  await row(i, "See you at 5").waitFor(WAIT);

  // Ivan answers it: Hana sees the reply with what it answers.
  await act(i, "See you at 5", "reply");
  await i.getByTestId("composing").filter({ hasText: "Replying to Hana: See you at 5" }).waitFor(WAIT);
  await i.getByTestId("composer").fill("Make it 6?");
  await i.getByTestId("send").click();
  const reply = row(h, "Make it 6?");
  await reply.getByTestId("reply-quote").filter({ hasText: "Hana: See you at 5" }).waitFor(WAIT);

  // Hana edits her message: Ivan sees the new text, marked, and the quote follows.
  await act(h, "See you at 5", "edit");
  await h.getByTestId("composer").fill("See you at 6");
  await h.getByTestId("send").click();
  await row(i, "See you at 6").getByTestId("edited").waitFor(WAIT);
  await row(i, "Make it 6?").getByTestId("reply-quote").filter({ hasText: "Hana: See you at 6" }).waitFor(WAIT);
  assert.equal(await row(i, "See you at 5").count(), 0, "the old text is gone");
  // Only the author may edit: Ivan's page offers no edit on Hana's message.
  await row(i, "See you at 6").hover();
  assert.equal(await row(i, "See you at 6").getByTestId("edit").count(), 0);

  // Reactions: Ivan 👍, Hana too (one chip, two), then Ivan takes his back.
  const chip = (page, text) => row(page, text).locator('[data-testid="reaction"][data-emoji="👍"]');
  await act(i, "See you at 6", "react", "👍");
  await chip(h, "See you at 6").filter({ hasText: "👍 1" }).waitFor(WAIT);
  await chip(h, "See you at 6").click();
  await chip(i, "See you at 6").filter({ hasText: "👍 2" }).waitFor(WAIT);
  await chip(i, "See you at 6").click();
  await h.locator('[data-testid="reaction"][data-emoji="👍"][data-mine="true"]').filter({ hasText: "👍 1" }).waitFor(WAIT);
  await i.locator('[data-testid="reaction"][data-mine="false"]').filter({ hasText: "👍 1" }).waitFor(WAIT);

  // Hana deletes it: a tombstone on both pages, without its reactions; the reply stays.
  await act(h, "See you at 6", "delete");
  for (const page of [h, i]) {
    await row(page, "This message was deleted").waitFor(WAIT);
    await row(page, "Make it 6?").getByTestId("reply-quote").filter({ hasText: "a deleted message" }).waitFor(WAIT);
    assert.equal(await page.getByTestId("reaction").count(), 0);
    const texts = await page.getByTestId("message").allTextContents();
    assert.deepEqual(texts, ["This message was deleted", "Make it 6?"]);
  }
  assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
  await i.screenshot({ path: path.join(EXAMPLE, "dist", "editing-ivan.png") });
});

test("Web Push through the React example: the service worker shows a pushed message and its link opens the conversation", async (t) => {
  showLogsIfFailed(t);
  const omar = await register("Omar");
  const pia = await register("Pia");
  const context = await browser.newContext();
  await context.grantPermissions(["notifications"], { origin: previewUrl });
  const page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(`Pia: ${err.stack}`));
  await page.goto(previewUrl);
  await page.getByTestId("email").fill(pia.email);
  await page.getByTestId("password").fill(PASSWORD);
  await page.getByTestId("sign-in").click();
  await page.getByTestId("me").filter({ hasText: "Pia" }).waitFor(WAIT);

  // "Notify me" registers the service worker, then asks the browser's push manager for a
  // subscription: headless Chromium here has no push service to reach (no network), so that last
  // step cannot succeed; the test goes on once the worker is registered.
  await page.getByTestId("enable-push").click();
  const cdp = await context.newCDPSession(page);
  const registered = new Promise((resolve) => {
    cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations }) => {
      const mine = registrations.find((r) => r.scopeURL.startsWith(previewUrl) && !r.isDeleted);
      if (mine) resolve(mine.registrationId);
    });
  });
  await cdp.send("ServiceWorker.enable");
  const registrationId = await registered;
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));

  // What the server pushes for Omar's message while Pia is away, as the push service decrypts
  // it (tests/js/push-service.mjs, the same as the push suites use): the service worker gets it.
  const service = await PushService.start();
  t.after(() => service.close());
  const { vapidPublicKey } = await (await fetch(`${server.url}/api/push/config`, { headers: { authorization: `Bearer ${pia.token}` } })).json();
  service.expectedKey = vapidPublicKey;
  const stand = service.subscribe();
  const stored = await fetch(`${server.url}/api/push/subscriptions`, {
    method: "POST",
    headers: { authorization: `Bearer ${pia.token}`, "content-type": "application/json" },
    body: JSON.stringify(stand),
  });
  assert.equal(stored.status, 201);
  await page.close();
  // Pia is away once the server has seen her socket go (else her page could still acknowledge
  // the message, and a delivered message is not pushed).
  const deadline = Date.now() + 10_000;
  for (;;) {
    const res = await fetch(`${server.url}/api/users/directory?limit=100`, { headers: { authorization: `Bearer ${omar.token}` } });
    const { users } = await res.json();
    if (users.find((u) => u.id === pia.id)?.online === false) break;
    assert.ok(Date.now() < deadline, "Pia still online 10 s after her page closed");
    await new Promise((r) => setTimeout(r, 100));
  }
  const sent = await fetch(`${server.url}/api/messages/send/${pia.id}`, {
    method: "POST",
    headers: { authorization: `Bearer ${omar.token}`, "content-type": "application/json" },
    body: JSON.stringify({ content: "Lunch tomorrow?" }),
  });
  const { message } = await sent.json();
  const push = await service.next(stand, 0);
  assert.deepEqual(service.problems, []);

  const tab = await context.newPage();
  tab.on("pageerror", (err) => pageErrors.push(`Pia: ${err.stack}`));
  await tab.goto(previewUrl);
  const worker = await context.newCDPSession(tab);
  await worker.send("ServiceWorker.enable");
  await worker.send("ServiceWorker.deliverPushMessage", {
    origin: previewUrl,
    registrationId,
    data: JSON.stringify(push.payload),
  });
  const shown = await tab.evaluate(async () => {
    const registration = await navigator.serviceWorker.ready;
    for (let i = 0; i < 100; i++) {
      const list = await registration.getNotifications();
      if (list.length > 0) return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
      await new Promise((r) => setTimeout(r, 100));
    }
    return [];
  });
  assert.equal(shown.length, 1, "one notification");
  assert.equal(shown[0].title, "Omar");
  assert.equal(shown[0].body, "Lunch tomorrow?");
  assert.equal(shown[0].tag, message.conversationId, "one per conversation");
  assert.equal(shown[0].data.url, `/?conversation=${message.conversationId}`);

  // Its link opens the conversation with Omar once Pia is signed in.
  await tab.goto(new URL(shown[0].data.url, previewUrl).href);
  await tab.getByTestId("email").fill(pia.email);
  await tab.getByTestId("password").fill(PASSWORD);
  await tab.getByTestId("sign-in").click();
  await tab.locator(`[data-testid="conversation"][data-peer-id="${omar.id}"]`).waitFor(WAIT);
  await tab.getByTestId("message").filter({ hasText: "Lunch tomorrow?" }).waitFor(WAIT);
  assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
  await context.close();
});

test("a video call through the React example: rings, is answered, connects through TURN with frames arriving, and hangs up", async (t) => {
  showLogsIfFailed(t);
  const sam = await register("Sam");
  const tess = await register("Tess");
  // `?relay`: media through coturn only, with the credentials the server issued.
  const s = await signIn(sam, "?relay");
  const u = await signIn(tess, "?relay");
  await person(s, tess).click();
  await person(u, sam).click();

  await s.getByTestId("video-call").click();
  await s.getByTestId("call-status").filter({ hasText: "Calling Tess" }).waitFor(WAIT);
  await u.getByTestId("call-status").filter({ hasText: "Sam is calling (video call)" }).waitFor(WAIT);
  await u.getByTestId("accept-call").click();

  const connected = '[data-testid="call-panel"][data-state="active"]:is([data-ice="connected"], [data-ice="completed"])';
  await s.locator(connected).waitFor(WAIT);
  await u.locator(connected).waitFor(WAIT);
  // Frames of the other side's fake camera arrive, on both pages.
  for (const page of [s, u]) {
    await page.waitForFunction(
      () => {
        const video = document.querySelector('[data-testid="remote-video"]');
        return video && video.videoWidth > 0 && video.getVideoPlaybackQuality().totalVideoFrames > 5;
      },
      null,
      WAIT,
    );
  }
  await u.screenshot({ path: path.join(EXAMPLE, "dist", "call-tess.png") });

  await s.getByTestId("hang-up").click();
  for (const page of [s, u]) {
    await page.locator('[data-testid="call-panel"][data-state="ended"]').filter({ hasText: "Call ended (ended)" }).waitFor(WAIT);
    await page.locator('[data-testid="message"][data-kind="system"]').filter({ hasText: "Video call, 0:" }).waitFor(WAIT);
  }
  assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
});

test("files through the React example: a picture and a PDF, with progress on both pages, then the thumbnail and the download link", async (t) => {
  showLogsIfFailed(t);
  const uma = await register("Uma");
  const vic = await register("Vic");
  const u = await signIn(uma);
  const v = await signIn(vic);
  await person(u, vic).click();
  await person(v, uma).click();

  // Files go into a conversation, which the first message makes.
  await u.getByTestId("composer").fill("Two files coming");
  await u.getByTestId("send").click();
  await v.getByTestId("message").filter({ hasText: "Two files coming" }).waitFor(WAIT);
  await u.locator('[data-testid="attach"]:not([disabled])').waitFor({ state: "attached", ...WAIT });

  // About 430 kB of picture, through an uplink of 150 kB/s (Chromium's network emulation): the
  // upload takes about three seconds, so the server tells Vic's page of it while it comes in.
  const png = makePng(380, 380);
  const pdf = makePdf("Minutes of the meeting");
  const cdp = await u.context().newCDPSession(u);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 150_000 });
  await u.getByTestId("attach").setInputFiles([
    { name: "photo.png", mimeType: "image/png", buffer: png },
    { name: "notes.pdf", mimeType: "application/pdf", buffer: pdf },
  ]);
  await u.getByTestId("picked-files").filter({ hasText: "photo.png" }).filter({ hasText: "notes.pdf" }).waitFor(WAIT);
  await u.getByTestId("composer").fill("Here they are");
  await u.getByTestId("send").click();

  // Uma's page shows her upload's progress; Vic's shows the picture coming in.
  await u.locator('[data-testid="upload-progress"][data-filename="photo.png"]').waitFor(WAIT);
  // (Read in one go: the bar goes as soon as the upload is complete.)
  const seen = await v.waitForFunction(
    () => {
      const bar = document.querySelector('[data-testid="incoming-upload"]');
      const progress = bar?.querySelector("progress");
      return bar && progress ? { text: bar.textContent, offset: Number(bar.dataset.offset), size: Number(bar.dataset.size), value: progress.value, max: progress.max } : null;
    },
    null,
    WAIT,
  );
  const incoming = await seen.jsonValue();
  assert.match(incoming.text, /^Uma is sending photo\.png \(\d+ kB\)$/);
  assert.equal(incoming.size, png.length);
  assert.ok(incoming.offset > 0 && incoming.offset < png.length, `part of it: ${incoming.offset} of ${png.length}`);
  assert.deepEqual([incoming.value, incoming.max], [incoming.offset, incoming.size], "the bar shows it");
  const coming = v.getByTestId("incoming-upload");
  await v.screenshot({ path: path.join(EXAMPLE, "dist", "files-incoming-vic.png") });

  // Then the message: the picture's thumbnail, loaded, and the PDF's link with name and size.
  const row = (page) => page.getByTestId("message-row").filter({ has: page.getByTestId("message").filter({ hasText: "Here they are" }) });
  for (const page of [v, u]) {
    const image = row(page).getByTestId("attachment-image");
    await image.waitFor(WAIT);
    await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await image.elementHandle(), WAIT);
    assert.equal(await image.getAttribute("alt"), "photo.png");
    await row(page).getByTestId("attachment-file").filter({ hasText: `notes.pdf (${pdf.length} B)` }).waitFor(WAIT);
  }
  await coming.waitFor({ state: "detached", ...WAIT });
  await u.getByTestId("upload-progress").first().waitFor({ state: "detached", ...WAIT });
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

  // The link saves the very same PDF.
  const [saved] = await Promise.all([v.waitForEvent("download", WAIT), row(v).getByTestId("attachment-file").click()]);
  assert.equal(saved.suggestedFilename(), "notes.pdf");
  assert.ok((await readFile(await saved.path())).equals(pdf), "the same bytes");
  assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
  await v.screenshot({ path: path.join(EXAMPLE, "dist", "files-vic.png") });
  await u.context().close();
  await v.context().close();
});
