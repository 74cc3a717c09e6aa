// Web Push with PUSH_PREVIEW=false (SPEC §13): the push service sees who wrote, never what.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { apiOk, registerUser, restSend, useServer } from "../helpers.mjs";
import { PushService } from "../push-service.mjs";

const fx = useServer({ PUSH_DELAY: "300ms", PUSH_PREVIEW: "false" });
let service;

before(async () => {
  service = await PushService.start();
});
after(async () => {
  await service?.close();
});

test("without previews a pushed message and a notification carry no content", async () => {
  const admin = await registerUser(fx.server, "Admin");
  const [ana, ben] = [await registerUser(fx.server, "Ana"), await registerUser(fx.server, "Ben")];
  const { vapidPublicKey } = await apiOk(fx.server, "GET", "/api/push/config", { token: ben.token });
  service.expectedKey = vapidPublicKey;
  const phone = service.subscribe();
  await apiOk(fx.server, "POST", "/api/push/subscriptions", { token: ben.token, body: phone }, 201);

  const { message } = await restSend(fx.server, ana, ben, "the door code is 4711");
  const pushed = await service.next(phone, 0);
  assert.equal(pushed.payload.messageId, message.id);
  assert.deepEqual([pushed.payload.title, pushed.payload.body], ["Ana", ""]);

  const body = { userId: ben.id, title: "Payroll", body: "Your salary: 1,000,000" };
  await apiOk(fx.server, "POST", "/api/notifications", { token: admin.token, body }, 201);
  const notified = await service.next(phone, 1);
  assert.deepEqual([notified.payload.type, notified.payload.title, notified.payload.body], ["notification", "Payroll", ""]);
  assert.ok(!JSON.stringify(service.delivered(phone)).includes("4711"));
  assert.deepEqual(service.problems, []);
});
