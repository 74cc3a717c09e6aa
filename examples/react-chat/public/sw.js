// The example's service worker: a Web Push (SPEC §13: {type, conversationId, messageId, callId,
// from, title, body}) becomes a notification, one per conversation (a newer one replaces it), and
// a click opens that conversation, in the app's window when one is open.

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { body: event.data?.text() ?? "" };
  }
  const url = data.conversationId ? `/?conversation=${encodeURIComponent(data.conversationId)}` : "/";
  const fallback = data.type === "call" ? "Incoming call" : data.type === "message" ? "New message" : "";
  event.waitUntil(
    self.registration.showNotification(data.title || "CraftCode chat", {
      body: data.body || fallback,
      tag: data.conversationId ?? data.type ?? "craftcode",
      renotify: true,
      data: { ...data, url },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const { url = "/", conversationId = null } = event.notification.data ?? {};
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows.find((w) => "focus" in w);
      if (open) {
        await open.focus();
        open.postMessage({ type: "openConversation", conversationId });
        return;
      }
      await self.clients.openWindow(new URL(url, self.location.origin).href);
    })(),
  );
});
