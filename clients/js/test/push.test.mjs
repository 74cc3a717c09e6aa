// Web Push through the package: `enablePush` subscribes a browser's push manager with the
// server's VAPID key and stores the subscription; while the user has no device connected, what
// they are sent reaches the push service, verified and decrypted (tests/js/push-service.mjs).
// The push manager here is a small stand-in for the browser's: it subscribes at that push
// service, which binds the subscription to the key it was given, as browsers' services do.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { apiOk, registerUser, restSend, useServer } from "./support.mjs";
import { PushService } from "../../../tests/js/push-service.mjs";

const fx = useServer({ PUSH_DELAY: "300ms" });
let service;

before(async () => {
  service = await PushService.start();
});
after(async () => {
  await service?.close();
});

/** A service worker registration whose push manager subscribes at the local push service. */
function registration() {
  let current = null;
  return {
    pushManager: {
      async getSubscription() {
        return current;
      },
      async subscribe(options) {
        assert.equal(options.userVisibleOnly, true, "pushes are shown to the user");
        const key = Buffer.from(options.applicationServerKey);
        // The push service accepts pushes signed with this key only.
        service.expectedKey = key.toString("base64url");
        const made = service.subscribe();
        current = {
          id: made.id,
          endpoint: made.endpoint,
          options: { applicationServerKey: key.buffer.slice(key.byteOffset, key.byteOffset + key.length) },
          toJSON: () => ({ endpoint: made.endpoint, expirationTime: null, keys: made.keys }),
          unsubscribe: async () => ((current = null), true),
        };
        return current;
      },
    },
  };
}

test("enablePush subscribes with the server's key; an offline user's message arrives as a push", async () => {
  const [alice, bob] = [await registerUser(fx.server, "Alice"), await registerUser(fx.server, "Bob")];
  const b = await fx.client(bob);
  const browser = registration();
  const subscription = await b.client.enablePush(browser);
  const { vapidPublicKey } = await apiOk(fx.server, "GET", "/api/push/config", { token: bob.token });
  assert.equal(service.expectedKey, vapidPublicKey, "subscribed with the server's key");
  // Enabling again reuses the browser's subscription and stores it once.
  assert.equal(await b.client.enablePush(browser), subscription);
  const listed = await apiOk(fx.server, "GET", "/api/push/subscriptions", { token: bob.token });
  assert.deepEqual(listed.subscriptions.map((s) => s.endpoint), [subscription.endpoint]);

  // Bob closes the app; Alice writes.
  b.client.close();
  const sent = await restSend(fx.server, alice, bob, "ping?");
  const push = await service.next(subscription.id, 0);
  assert.equal(push.payload.type, "message");
  assert.equal(push.payload.messageId, sent.id);
  assert.equal(push.payload.body, "ping?");
  assert.deepEqual(service.problems, []);
});

test("disablePush deletes the subscription on the server and in the browser", async () => {
  const carol = await registerUser(fx.server, "Carol");
  const c = await fx.client(carol);
  const browser = registration();
  await c.client.enablePush(browser);
  await c.client.disablePush(browser);
  assert.equal(await browser.pushManager.getSubscription(), null);
  const listed = await apiOk(fx.server, "GET", "/api/push/subscriptions", { token: carol.token });
  assert.deepEqual(listed.subscriptions, []);
  await c.client.disablePush(browser); // nothing left: no error
});
