// Web Push (SPEC §13) against a real server and a push service on loopback that verifies every
// VAPID token and decrypts every payload (../push-service.mjs): what is pushed and when, to whom
// not, what the push service's answers do, a crash before the push, and bad subscriptions.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { api, apiOk, registerUser, restSend as restSendFull, useServer } from "../helpers.mjs";
import { PushService } from "../push-service.mjs";

const PUSH_DELAY_MS = 700;
const fx = useServer({ PUSH_DELAY: `${PUSH_DELAY_MS}ms`, PUSH_TIMEOUT: "1s", CALL_RING_TIMEOUT: "30s" });
let service;

before(async () => {
  service = await PushService.start();
});
after(async () => {
  await service?.close();
});

/** The admin: the first user of the database, so registered before anyone else. */
let adminPromise;
const theAdmin = () => (adminPromise ??= registerUser(fx.server, "Admin"));
async function person(name) {
  await theAdmin();
  return registerUser(fx.server, name);
}

/** A browser of `user` subscribes: the push service's subscription, stored by the server. */
async function subscribe(user) {
  const { vapidPublicKey } = await apiOk(fx.server, "GET", "/api/push/config", { token: user.token });
  service.expectedKey = vapidPublicKey;
  const subscription = service.subscribe();
  await apiOk(fx.server, "POST", "/api/push/subscriptions", { token: user.token, body: subscription }, 201);
  return subscription;
}

/** A direct message over REST: the stored message. */
const restSend = async (...args) => (await restSendFull(...args)).message;

const noProblems = () => assert.deepEqual(service.problems, [], "every push verified and decrypted");

test("a direct message to a user with no device online is pushed once, encrypted and signed", async () => {
  const [alice, bob] = [await person("Alice"), await person("Bob")];
  const phone = await subscribe(bob);
  const message = await restSend(fx.server, alice, bob, "Are you coming tonight? ".repeat(8));

  const push = await service.next(phone, 0);
  assert.deepEqual(Object.keys(push.payload).sort(), ["body", "callId", "conversationId", "from", "messageId", "title", "type"]);
  assert.equal(push.payload.type, "message");
  assert.equal(push.payload.messageId, message.id);
  assert.equal(push.payload.conversationId, message.conversationId);
  assert.deepEqual(push.payload.from, { id: alice.id, name: "Alice" });
  assert.equal(push.payload.title, "Alice");
  assert.equal(push.payload.body, message.content.slice(0, 100), "the first 100 characters");
  assert.equal(push.payload.callId, null);
  assert.deepEqual(push.headers, {
    ttl: 24 * 3600,
    urgency: "high",
    topic: message.conversationId.replaceAll("-", ""),
  });
  assert.ok(push.bytes < 4096, `${push.bytes} bytes on the wire`);
  assert.ok(Buffer.byteLength(JSON.stringify(push.payload)) < 3800);

  // A later message goes too; the first is not pushed again.
  const later = await restSend(fx.server, alice, bob, "?");
  assert.equal((await service.next(phone, 1)).payload.messageId, later.id);
  assert.equal(service.delivered(phone).length, 2);
  noProblems();
});

test("no push for what a device acknowledged, what was read in time, one's own or a muted conversation", async () => {
  const [alice, bob, carol] = [await person("Alice"), await person("Bob"), await person("Carol")];
  const bobPhone = await subscribe(bob);
  const alicePhone = await subscribe(alice);
  const carolPhone = await subscribe(carol);

  // Bob's laptop is online and acknowledges: delivered, no push.
  const laptop = await fx.connect({ token: bob.token, ackNewMessages: true, label: "bob laptop" });
  const seen = await restSend(fx.server, alice, bob, "seen on the laptop");
  await laptop.next("newMessage", { where: (p) => p.message.id === seen.id });
  laptop.close();
  // Carol reads Alice's message on another device before the delay: no push to her phone.
  const read = await restSend(fx.server, alice, carol, "read on the desktop");
  await apiOk(fx.server, "POST", `/api/messages/${alice.id}/read`, { token: carol.token, body: { upTo: read.id } });
  // Bob mutes his conversation with Carol.
  const muted = await restSend(fx.server, carol, bob, "muted");
  await apiOk(fx.server, "PATCH", `/api/conversations/${muted.conversationId}`, { token: bob.token, body: { muted: true } });
  const mutedToo = await restSend(fx.server, carol, bob, "still muted");

  // Then a message that is pushed, to each: the decision goes in message order, so whatever
  // came before it and was not pushed by then never is.
  const last = {
    bob: await restSend(fx.server, alice, bob, "pushed to Bob"),
    carol: await restSend(fx.server, alice, carol, "pushed to Carol"),
  };
  assert.deepEqual(service.delivered(bobPhone).length, 0);
  assert.equal((await service.next(bobPhone, 0)).payload.messageId, last.bob.id);
  assert.equal((await service.next(carolPhone, 0)).payload.messageId, last.carol.id);
  assert.equal(service.delivered(bobPhone).length, 1, "nothing else to Bob");
  assert.equal(service.delivered(carolPhone).length, 1, "nothing else to Carol");
  assert.equal(service.delivered(alicePhone).length, 0, "no push of one's own messages");
  assert.ok(mutedToo.id < last.bob.id);
  noProblems();
});

test("a group message: offline members only, high urgency when mentioned, the group in the title", async () => {
  const [dana, erin, finn] = [await person("Dana"), await person("Erin"), await person("Finn")];
  const erinPhone = await subscribe(erin);
  const finnPhone = await subscribe(finn);
  const { conversation } = await apiOk(
    fx.server, "POST", "/api/conversations",
    { token: dana.token, body: { title: "Climbing", memberIds: [erin.id, finn.id] } }, 201,
  );
  // Finn is online (a live socket gets every message): no push for him.
  const finnLaptop = await fx.connect({ token: finn.token, label: "finn" });
  const sent = await apiOk(
    fx.server, "POST", `/api/conversations/${conversation.id}/messages`,
    { token: dana.token, body: { content: "@Erin rope?", mentions: [erin.id] } }, 201,
  );
  const push = await service.next(erinPhone, 0);
  assert.equal(push.payload.messageId, sent.message.id);
  assert.equal(push.payload.title, "Dana in Climbing");
  assert.equal(push.headers.urgency, "high");
  const plain = await apiOk(
    fx.server, "POST", `/api/conversations/${conversation.id}/messages`,
    { token: dana.token, body: { content: "see you at 6" } }, 201,
  );
  const second = await service.next(erinPhone, 1);
  assert.equal(second.payload.messageId, plain.message.id);
  assert.equal(second.headers.urgency, "normal");
  assert.equal(service.delivered(finnPhone).length, 0, "Finn was online");
  finnLaptop.close();
  noProblems();
});

test("a notification to a user with no socket is pushed at once", async () => {
  const admin = await theAdmin();
  const gina = await person("Gina");
  const phone = await subscribe(gina);
  const body = { userId: gina.id, title: "Maintenance", body: "Tonight at 22:00 ".repeat(10) };
  await apiOk(fx.server, "POST", "/api/notifications", { token: admin.token, body }, 201);
  const push = await service.next(phone, 0);
  assert.equal(push.payload.type, "notification");
  assert.equal(push.payload.title, "Maintenance");
  assert.equal(push.payload.body, body.body.slice(0, 100));
  assert.equal(push.headers.urgency, "normal");
  noProblems();
});

test("an incoming call rings an offline device at once, for as long as it rings", async () => {
  const [olga, pete] = [await person("Olga"), await person("Pete")];
  const phone = await subscribe(pete);
  const caller = await fx.connect({ token: olga.token, label: "olga" });
  const started = await caller.ack("startCall", { to: pete.id, media: "video", offer: { type: "offer", sdp: "v=0\r\n" } });
  assert.equal(started.ok, true, JSON.stringify(started));
  const push = await service.next(phone, 0);
  assert.equal(push.payload.type, "call");
  assert.equal(push.payload.callId, started.call.id);
  assert.deepEqual(push.payload.from, { id: olga.id, name: "Olga" });
  assert.equal(push.payload.body, "Incoming video call");
  assert.deepEqual([push.headers.urgency, push.headers.ttl], ["high", 30]);
  assert.equal((await caller.ack("endCall", { callId: started.call.id })).ok, true);
  noProblems();
});

test("the push service's answers: 404 and 410 delete, 429 and 500 are retried, a hang times out", async () => {
  const [hank, ivy] = [await person("Hank"), await person("Ivy")];
  const gone = await subscribe(ivy);
  const unknown = await subscribe(ivy);
  const busy = await subscribe(ivy);
  const hangs = await subscribe(ivy);
  const failing = await subscribe(ivy);
  service.script(gone, { status: 410 });
  service.script(unknown, { status: 404 });
  service.script(busy, { status: 429, retryAfter: 1 }, { status: 500 });
  service.script(hangs, "hang");
  service.script(failing, { status: 500 }, { status: 503 }, { status: 502 });
  const message = await restSend(fx.server, hank, ivy, "are you there?");

  // Retried after Retry-After, then after the backoff; then sent.
  assert.equal((await service.next(busy, 0)).payload.messageId, message.id);
  assert.equal(service.requests(busy), 3);
  // The hung request timed out (PUSH_TIMEOUT) and the retry went through.
  assert.equal((await service.next(hangs, 0)).payload.messageId, message.id);
  const { subscriptions } = await apiOk(fx.server, "GET", "/api/push/subscriptions", { token: ivy.token });
  const endpoints = subscriptions.map((s) => s.endpoint);
  assert.ok(!endpoints.includes(gone.endpoint), "the gone subscription was deleted");
  assert.ok(!endpoints.includes(unknown.endpoint), "the unknown subscription was deleted");
  assert.ok(endpoints.includes(busy.endpoint));
  // Three answers of 5xx: given up, counted.
  const metrics = await waitForMetric(/craftcode_pushes_total\{outcome="failed"\} [1-9]/);
  assert.match(metrics, /craftcode_pushes_total\{outcome="gone"\} [1-9]/);
  assert.match(metrics, /craftcode_pushes_total\{outcome="retried"\} [1-9]/);
  assert.match(metrics, /^craftcode_push_outbox \d+$/m);
  assert.equal(service.requests(failing), 3, "three tries, no more");
  assert.equal(service.requests(gone), 1);
  noProblems();
});

/** `/metrics` once it matches `pattern` (the sender settles pushes in the background). */
async function waitForMetric(pattern, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const res = await fetch(`${fx.server.url}/metrics`);
    const text = await res.text();
    if (pattern.test(text)) return text;
    if (Date.now() > deadline) assert.fail(`/metrics never matched ${pattern}:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("a push pending when the server is killed is sent after the restart", async () => {
  const [jack, kim] = [await person("Jack"), await person("Kim")];
  const phone = await subscribe(kim);
  const message = await restSend(fx.server, jack, kim, "before the crash");
  // Killed at once: the push was not decided yet (PUSH_DELAY).
  await fx.server.kill();
  assert.equal(service.delivered(phone).length, 0);
  await fx.server.restart();
  assert.equal((await service.next(phone, 0)).payload.messageId, message.id);
  noProblems();
});

test("subscriptions: checked, stored once, at most 10 a session, one's own only, gone with the session", async () => {
  const [lea, max] = [await person("Lea"), await person("Max")];
  const sub = service.subscribe();
  const post = (user, body) => api(fx.server, "POST", "/api/push/subscriptions", { token: user.token, body });
  for (const [body, field] of [
    [{ ...sub, endpoint: "http://push.example.com/x" }, "endpoint"],
    [{ ...sub, endpoint: "ftp://127.0.0.1/x" }, "endpoint"],
    [{ ...sub, endpoint: `https://push.example.com/${"a".repeat(2100)}` }, "endpoint"],
    [{ ...sub, keys: { ...sub.keys, p256dh: sub.keys.p256dh.slice(0, 40) } }, "keys.p256dh"],
    [{ ...sub, keys: { ...sub.keys, p256dh: "not base64url!" } }, "keys.p256dh"],
    [{ ...sub, keys: { ...sub.keys, auth: "c2hvcnQ" } }, "keys.auth"],
  ]) {
    const res = await post(lea, body);
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error.code, "validation_failed");
    assert.ok(res.body.error.fields[field], `${field} named: ${JSON.stringify(res.body.error)}`);
  }
  for (const body of [{}, { endpoint: sub.endpoint }, { endpoint: 7, keys: sub.keys }, "nope"]) {
    const res = await post(lea, body);
    assert.equal(res.status, 400, JSON.stringify(body));
  }
  assert.equal((await api(fx.server, "POST", "/api/push/subscriptions", { body: sub })).status, 401);
  assert.equal((await api(fx.server, "GET", "/api/push/config")).status, 401);

  // The same endpoint twice is stored once.
  assert.equal((await post(lea, sub)).status, 201);
  assert.equal((await post(lea, sub)).status, 201);
  const listed = async (user) =>
    (await apiOk(fx.server, "GET", "/api/push/subscriptions", { token: user.token })).subscriptions;
  assert.deepEqual((await listed(lea)).map((s) => s.endpoint), [sub.endpoint]);
  // Ten a session.
  for (let i = 1; i < 10; i++) assert.equal((await post(lea, service.subscribe())).status, 201);
  const eleventh = await post(lea, service.subscribe());
  assert.equal(eleventh.status, 409);
  assert.equal(eleventh.body.error.code, "too_many_subscriptions");
  assert.equal((await listed(lea)).length, 10);

  // Max cannot delete Lea's (it is as unknown as none), Lea can.
  const del = (user, endpoint) => api(fx.server, "DELETE", "/api/push/subscriptions", { token: user.token, body: { endpoint } });
  assert.equal((await del(max, sub.endpoint)).status, 404);
  assert.equal((await del(lea, sub.endpoint)).status, 204);
  assert.equal((await del(lea, sub.endpoint)).status, 404);
  assert.equal((await listed(lea)).length, 9);
  for (const body of [{}, { endpoint: 7 }, "nope"]) {
    const res = await api(fx.server, "DELETE", "/api/push/subscriptions", { token: lea.token, body });
    assert.equal(res.status, 400, JSON.stringify(body));
  }
  // A browser subscribed by one user and then by another belongs to the second only.
  const shared = service.subscribe();
  assert.equal((await post(lea, shared)).status, 201);
  assert.equal((await post(max, shared)).status, 201);
  assert.ok(!(await listed(lea)).some((s) => s.endpoint === shared.endpoint));
  assert.deepEqual((await listed(max)).map((s) => s.endpoint), [shared.endpoint]);
  assert.equal((await del(max, shared.endpoint)).status, 204);

  // Logging out ends the session and its subscriptions.
  await apiOk(fx.server, "POST", "/api/auth/logout", { token: lea.token, body: {} });
  const again = await apiOk(fx.server, "POST", "/api/auth/login", { body: { email: lea.email, password: lea.password } });
  assert.deepEqual(await listed({ token: again.token }), []);
});

test("the VAPID key is made once and kept: the same after a restart", async () => {
  const user = await person("Nina");
  const before = await apiOk(fx.server, "GET", "/api/push/config", { token: user.token });
  assert.match(before.vapidPublicKey, /^B[A-Za-z0-9_-]{86}$/, "an uncompressed P-256 point, base64url");
  await fx.server.stop();
  await fx.server.restart();
  const afterRestart = await apiOk(fx.server, "GET", "/api/push/config", { token: user.token });
  assert.equal(afterRestart.vapidPublicKey, before.vapidPublicKey);
});
