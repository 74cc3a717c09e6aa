// The Socket Monitor (GET /monitor): signs an admin in (with the form or the craftcode_token
// cookie), opens this browser's own Socket.IO connection and shows it live, next to the server's
// figures, the test actions, the self-test, the results and an error log.
//
// Every string that comes from the server or a user reaches the page through textContent (the
// `h` helper below), never as HTML: user names are chosen by users.
//
// Presence is scoped (SPEC §5 "Presence"): this socket's welcome `getOnlineUsers` and its
// `presenceChanged` only cover the users it watches — everybody when the server says scope
// "all", far fewer when it says "watched". So the list of online users is never taken from the
// welcome: it is paged through with `getOnlineUsers {cursor, limit}` (on connect, with the
// list's Refresh button, and every few seconds), and the `presenceChanged` this socket does get
// are applied on top. Listing again matters most with "watched" (strangers' changes never
// come), but also with "all": a page says who is online now, while `presenceChanged` tells
// changes since the last batch, so a user who came and went within one batch around a listing
// would otherwise stay listed.

import { io } from "socket.io-client";

const SOCKET_PATH = "/api/socket";
const PING_EVERY_MS = 5_000;
const PING_TIMEOUT_MS = 5_000;
const REFRESH_EVERY_MS = 10_000;
/** How long one `getOnlineUsers` page may take before the listing counts as failed. */
const PAGE_TIMEOUT_MS = 10_000;
/**
 * Online users asked for per `getOnlineUsers` page: `?pageSize=` of the page's address (1–500,
 * the server's range), else the server's default of 100.
 */
const PAGE_SIZE = (() => {
  const asked = Number(new URLSearchParams(window.location.search).get("pageSize"));
  return Number.isInteger(asked) && asked >= 1 && asked <= 500 ? asked : 100;
})();
/** Entries kept in the results panel and in the error log. */
const LOG_LIMIT = 200;

/** What this page knows about the admin and their connection; reset on sign-out. */
const current = {
  /** The access token, once the form or `tokenUpdated` gave us one; null = rely on the cookie. */
  token: null,
  user: null,
  socket: null,
  /** userId → name: the last listing of every online user, with `presenceChanged` applied. */
  online: new Map(),
  /** This socket's presence scope from its welcome `getOnlineUsers`: "all", "watched" or null. */
  scope: null,
  /**
   * The listing under way: the `presenceChanged` that arrive while its pages come in, applied
   * again on top of its result (they are newer than the pages fetched before them).
   */
  listing: null,
  /** What the last complete listing found: `{total, pages, at}`. */
  listed: null,
  pingTimer: null,
  refreshTimer: null,
  /** Lists the online users again every few seconds. */
  onlineTimer: null,
  /** The server ended our session (`force_logout`): no reconnecting. */
  signedOutBy: null,
  /** Self-test requests under way (figures refresh or the button). */
  reportsInFlight: 0,
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
const setText = (id, text) => {
  byTestId(id).textContent = text;
};

/** Builds an element; attributes are set as attributes, children are nodes or plain text. */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null && value !== false) {
      element.setAttribute(name, String(value));
    }
  }
  element.append(...children.filter((c) => c !== undefined && c !== null && c !== false));
  return element;
}

// ---------------------------------------------------------------------------------------------
// Views

const VIEWS = ["loading", "signin-panel", "refusal", "dashboard"];

function show(view) {
  for (const name of VIEWS) byTestId(name).hidden = name !== view;
  byTestId("sign-out").hidden = view === "signin-panel" || view === "loading";
  if (view === "signin-panel") {
    setText("whoami", "");
    byTestId("signin-email").focus();
  }
}

function showBanner(text) {
  const banner = byTestId("banner");
  banner.textContent = text;
  banner.hidden = !text;
}

function clock() {
  return new Date().toLocaleTimeString([], { hour12: false });
}

function prependLimited(list, entry) {
  list.prepend(entry);
  while (list.childElementCount > LOG_LIMIT) list.lastElementChild.remove();
}

/** An entry in the results panel: `kind` is answer, testMessage, selfTest or event. */
function logResult(kind, ...body) {
  prependLimited(
    byTestId("results"),
    h(
      "li",
      { "data-testid": "result-entry", "data-kind": kind },
      h("time", {}, clock()),
      h("span", { class: `tag tag-${kind}` }, kind),
      h("div", { class: "body" }, ...body),
    ),
  );
}

/** An entry in the error log; the same error again (a server that stays down) only counts up. */
function logError(text) {
  const log = byTestId("error-log");
  const latest = log.firstElementChild;
  if (latest && latest.dataset.text === text) {
    const repeats = Number(latest.dataset.repeats) + 1;
    latest.dataset.repeats = String(repeats);
    latest.querySelector("time").textContent = clock();
    latest.querySelector(".repeats").textContent = `×${repeats}`;
    return;
  }
  const entry = h(
    "li",
    { "data-testid": "error-entry", "data-repeats": "1" },
    h("time", {}, clock()),
    h("div", { class: "body" }, text),
    h("span", { class: "repeats" }),
  );
  entry.dataset.text = text;
  prependLimited(log, entry);
}

// ---------------------------------------------------------------------------------------------
// REST

class RequestError extends Error {
  constructor(method, path, status, code, message) {
    super(message);
    this.method = method;
    this.path = path;
    this.status = status;
    this.code = code;
  }

  toString() {
    const status = this.status ? `${this.status} ` : "";
    return `${this.method} ${this.path}: ${status}${this.code} — ${this.message}`;
  }
}

/** A JSON request with the token when we have one, else the cookie. Throws a RequestError. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (current.token) headers.Authorization = `Bearer ${current.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (e) {
    throw new RequestError(method, path, 0, "network_error", e.message);
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const error = answer?.error ?? {};
    throw new RequestError(
      method,
      path,
      response.status,
      error.code ?? `http_${response.status}`,
      error.message ?? response.statusText,
    );
  }
  return answer;
}

// ---------------------------------------------------------------------------------------------
// Signing in and out

async function checkSignedIn() {
  try {
    const { user } = await api("GET", "/api/auth/me");
    enter(user);
  } catch {
    // No cookie, or an expired one: the form it is.
    show("signin-panel");
  }
}

async function signIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = byTestId("signin-error");
  const submit = byTestId("signin-submit");
  error.hidden = true;
  submit.disabled = true;
  try {
    const answer = await api("POST", "/api/auth/login", {
      email: form.elements.email.value,
      password: form.elements.password.value,
    });
    form.reset();
    current.token = answer.token;
    enter(answer.user);
  } catch (e) {
    error.textContent =
      e.code === "invalid_credentials" ? "Wrong email or password." : `${e.message} (${e.code})`;
    error.hidden = false;
  } finally {
    submit.disabled = false;
  }
}

function enter(user) {
  current.user = user;
  current.signedOutBy = null;
  showBanner("");
  setText("whoami", `${user.name} · ${user.email}${user.isAdmin ? " · admin" : ""}`);
  if (!user.isAdmin) {
    setText("refusal-name", `${user.name} (${user.email})`);
    show("refusal");
    return;
  }
  show("dashboard");
  connect();
  // The first figures come once this socket is in (see `authenticated`), so they count it.
  current.refreshTimer = setInterval(refreshServer, REFRESH_EVERY_MS);
  current.onlineTimer = setInterval(() => {
    // A long listing (many users) is left to finish rather than started over.
    if (!current.listing) listOnline();
  }, REFRESH_EVERY_MS);
}

/** Closes the socket and stops every timer; the page keeps what it shows. */
function stop() {
  clearInterval(current.refreshTimer);
  current.refreshTimer = null;
  clearInterval(current.onlineTimer);
  current.onlineTimer = null;
  current.listing = null;
  stopPinging();
  const socket = current.socket;
  if (socket) {
    socket.io.reconnection(false);
    socket.disconnect();
  }
}

async function signOut() {
  stop();
  try {
    await api("POST", "/api/auth/logout", {});
  } catch (e) {
    // The session may already be over (force_logout); the page resets all the same.
    if (e.status !== 401) logError(String(e));
  }
  current.socket?.off();
  current.socket?.io.off();
  current.token = null;
  current.user = null;
  current.socket = null;
  forgetOnline();
  showBanner("");
  byTestId("results").replaceChildren();
  byTestId("error-log").replaceChildren();
  for (const id of ["conn-transport", "conn-session", "server-sockets", "server-users"]) setText(id, "–");
  for (const id of ["server-adapter", "server-nodes", "server-node", "server-uptime"]) setText(id, "–");
  setText("server-updated", "");
  byTestId("server-namespaces").replaceChildren();
  show("signin-panel");
}

// ---------------------------------------------------------------------------------------------
// This browser's socket

function setState(state, detail = "") {
  const element = byTestId("conn-state");
  element.textContent = state;
  element.dataset.state = state;
  setText("conn-detail", detail);
  byTestId("reconnect").hidden = state !== "disconnected" || current.signedOutBy !== null;
}

function setTransport(name) {
  setText("conn-transport", name);
}

function connect() {
  if (current.socket) {
    current.socket.io.off();
    current.socket.off();
  }
  forgetOnline();
  const socket = io(window.location.origin, {
    path: SOCKET_PATH,
    // Without a token the handshake carries the craftcode_token cookie instead.
    auth: current.token ? { token: current.token } : {},
  });
  current.socket = socket;
  setState("reconnecting", "connecting…");

  socket.io.on("open", () => {
    const engine = socket.io.engine;
    setTransport(engine.transport.name);
    engine.on("upgrade", (transport) => setTransport(transport.name));
  });
  socket.io.on("reconnect_attempt", (attempt) => setState("reconnecting", `attempt ${attempt}`));

  socket.on("connect", () => {
    setState("connected");
    setText("conn-id", socket.id);
    setTransport(socket.io.engine.transport.name);
  });
  socket.on("disconnect", (reason) => {
    stopPinging();
    for (const id of ["conn-id", "conn-transport", "conn-ping"]) setText(id, "–");
    forgetOnline();
    const why = current.signedOutBy ? `signed out by the server: ${current.signedOutBy}` : reason;
    setState(socket.active ? "reconnecting" : "disconnected", why);
  });
  socket.on("connect_error", (error) => {
    logError(`connect_error: ${error.message}`);
    setState(socket.active ? "reconnecting" : "disconnected", error.message);
  });

  socket.on("authenticated", ({ user, sessionId } = {}) => {
    setText("conn-session", sessionId ?? "–");
    logResult("event", `authenticated as ${user?.name ?? "?"}`);
    // The server takes events once it has said `authenticated`, not as soon as it says connect.
    startPinging(socket);
    refreshServer();
    listOnline();
  });
  socket.on("authError", ({ code, message } = {}) => logError(`authError ${code}: ${message}`));
  socket.on("getOnlineUsers", (payload = {}) => {
    // Only the welcome (and `emitOnlineUsers`) carries `scope`; a page has `nextCursor` instead,
    // and this page asks for its pages with an ack, so those never come as events here.
    if (!("scope" in payload)) return;
    current.scope = payload.scope;
    renderOnlineSummary();
    const listed = Array.isArray(payload.users) ? payload.users.length : 0;
    logResult("event", `getOnlineUsers: ${payload.total ?? listed} online, scope ${payload.scope} (${listed} listed)`);
  });
  socket.on("presenceChanged", (change = {}) => {
    current.listing?.changes.push(change);
    applyPresence(change);
    renderOnline();
  });
  socket.on("testMessage", ({ message, action, sentAt } = {}) => {
    // The self-test's REST check sends its probe (a UUID) to every socket of the admin who runs
    // it, this page included; the figures refresh runs the self-test every few seconds.
    if (current.reportsInFlight > 0 && action === "sendToUser" && UUID.test(String(message))) return;
    logResult(
      "testMessage",
      `testMessage (${action}): `,
      h("q", {}, String(message)),
      h("span", { class: "muted" }, ` sent at ${sentAt}`),
    );
  });
  socket.on("tokenUpdated", ({ token, expiresAt, user } = {}) => {
    current.token = token;
    socket.auth = { token };
    logResult("event", `tokenUpdated: a new token, valid until ${expiresAt}`);
    if (user) {
      if (!user.isAdmin) {
        stop();
        enter(user);
        return;
      }
      current.user = user;
      setText("whoami", `${user.name} · ${user.email} · admin`);
    }
  });
  socket.on("force_logout", ({ reason } = {}) => {
    current.signedOutBy = reason ?? "unknown";
    socket.io.reconnection(false);
    clearInterval(current.refreshTimer);
    logError(`force_logout: ${reason}`);
    showBanner(`The server ended this session (${reason}). Sign out, then sign in again to keep monitoring.`);
  });
  socket.on("server_shutdown", ({ reason, reconnectAfterMs } = {}) => {
    logResult("event", `server_shutdown (${reason}): reconnecting after about ${reconnectAfterMs} ms`);
    setText("conn-detail", "the server is shutting down");
  });
}

function startPinging(socket) {
  stopPinging();
  ping(socket);
  current.pingTimer = setInterval(() => ping(socket), PING_EVERY_MS);
}

function stopPinging() {
  clearInterval(current.pingTimer);
  current.pingTimer = null;
}

function ping(socket) {
  const started = performance.now();
  socket.timeout(PING_TIMEOUT_MS).emit("ping", { ts: Date.now() }, (error, ack) => {
    if (socket !== current.socket || !socket.connected) return;
    if (error) {
      setText("conn-ping", `no answer in ${PING_TIMEOUT_MS / 1000} s`);
    } else if (ack?.ok === false) {
      logError(`ping: ${ack.error?.code} — ${ack.error?.message}`);
    } else {
      const ms = performance.now() - started;
      setText("conn-ping", `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`);
    }
  });
}

/** Applies one `presenceChanged` to the list. */
function applyPresence({ online = [], offline = [] }) {
  for (const u of online) current.online.set(u.userId, u.name);
  for (const id of offline) current.online.delete(id);
}

/** Empties the list (signed out, or the socket is gone: nothing it shows is live any more). */
function forgetOnline() {
  current.online.clear();
  current.scope = null;
  current.listing = null;
  current.listed = null;
  byTestId("online-refresh").disabled = false;
  renderOnline();
}

/**
 * Pages through every online user with `getOnlineUsers {cursor, limit}` and replaces the list
 * with what the pages said, plus the `presenceChanged` that came meanwhile. A newer listing (or a
 * lost socket) makes an older one stop and drop its result.
 */
async function listOnline() {
  const socket = current.socket;
  if (!socket?.connected) return;
  const listing = { changes: [] };
  current.listing = listing;
  byTestId("online-refresh").disabled = true;
  const users = new Map();
  let total = 0;
  let pages = 0;
  let cursor = null;
  try {
    do {
      const ask = cursor === null ? { limit: PAGE_SIZE } : { cursor, limit: PAGE_SIZE };
      const reply = await socket.timeout(PAGE_TIMEOUT_MS).emitWithAck("getOnlineUsers", ask);
      if (current.listing !== listing) return;
      if (reply?.ok !== true) {
        throw new Error(`${reply?.error?.code ?? "no_answer"} — ${reply?.error?.message ?? "no page"}`);
      }
      for (const u of reply.users ?? []) users.set(u.userId, u.name);
      total = Number(reply.total) || users.size;
      pages += 1;
      // A cursor that does not move would page forever.
      cursor = reply.nextCursor && reply.nextCursor !== cursor ? reply.nextCursor : null;
    } while (cursor !== null);
  } catch (e) {
    if (current.listing === listing) logError(`getOnlineUsers: ${e.message}`);
    return;
  } finally {
    if (current.listing === listing) {
      current.listing = null;
      byTestId("online-refresh").disabled = false;
    }
  }
  current.online = users;
  for (const change of listing.changes) applyPresence(change);
  current.listed = { total, pages, at: clock() };
  renderOnline();
}

/** Where the list comes from: the last listing, and which changes reach it live. */
function renderOnlineSummary() {
  const listed = current.listed;
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  setText(
    "online-summary",
    listed
      ? `Last listed at ${listed.at} (${listed.total} online then, ${plural(listed.pages, "page")} of up to ${PAGE_SIZE})`
      : "",
  );
  const scope = byTestId("presence-scope");
  scope.dataset.scope = current.scope ?? "";
  scope.textContent =
    current.scope === "all"
      ? `Live: every user's changes; listed again every ${REFRESH_EVERY_MS / 1000} s.`
      : current.scope === "watched"
        ? `Live: only the users this socket watches; listed again every ${REFRESH_EVERY_MS / 1000} s.`
        : "";
}

function renderOnline() {
  const users = [...current.online].sort(([, a], [, b]) => String(a).localeCompare(String(b)));
  byTestId("online-list").replaceChildren(
    ...users.map(([id, name]) =>
      h(
        "li",
        { "data-testid": "online-user", "data-user-id": id },
        h("span", { class: "name" }, String(name)),
        id === current.user?.id ? h("span", { class: "you" }, "you") : null,
        h("span", { class: "mono muted", title: id }, id.slice(-8)),
      ),
    ),
  );
  setText("online-count", String(users.length));
  renderOnlineSummary();

  const picker = byTestId("action-target");
  const chosen = picker.value;
  picker.replaceChildren(
    new Option("Choose an online user", ""),
    ...users.map(([id, name]) => new Option(`${name} (…${id.slice(-8)})`, id)),
  );
  picker.value = current.online.has(chosen) ? chosen : "";
}

// ---------------------------------------------------------------------------------------------
// Server figures, actions and the self-test

function duration(seconds) {
  const d = Math.floor(seconds / 86_400);
  const hours = Math.floor((seconds % 86_400) / 3_600);
  const m = Math.floor((seconds % 3_600) / 60);
  const s = seconds % 60;
  return [d && `${d} d`, (d || hours) && `${hours} h`, (d || hours || m) && `${m} min`, `${s} s`]
    .filter(Boolean)
    .join(" ");
}

function renderFigures(report) {
  const { connections = {}, adapter = {} } = report;
  setText("server-sockets", String(connections.sockets ?? "–"));
  setText("server-users", String(connections.users ?? "–"));
  // The namespace server's namespaces are listed by their own name, under its path.
  const namespacesPath = report.server?.namespacesPath ?? "";
  byTestId("server-namespaces").replaceChildren(
    ...Object.entries(connections.byNamespace ?? {}).map(([ns, count]) => {
      const own = namespacesPath && ns.startsWith(`${namespacesPath}/`);
      const label = own ? ns.slice(namespacesPath.length) : `${ns} (main)`;
      return h(
        "li",
        { title: ns },
        h("span", { class: "mono" }, label),
        h("span", { class: "num" }, String(count)),
      );
    }),
  );
  setText("server-adapter", String(adapter.kind ?? "–"));
  setText("server-nodes", String(adapter.nodes ?? "–"));
  setText("server-node", String(report.node ?? "–"));
  setText("server-uptime", duration(Number(report.uptimeSec) || 0));
  setText("server-updated", `updated ${clock()}`);
}

/** The self-test report, which also carries the server's figures. */
async function fetchReport() {
  current.reportsInFlight += 1;
  try {
    const report = await api("GET", "/api/socket-test");
    renderFigures(report);
    return report;
  } catch (e) {
    logError(String(e));
    return null;
  } finally {
    // The probe can arrive just after the answer, over a slower transport.
    setTimeout(() => {
      current.reportsInFlight -= 1;
    }, 1_000);
  }
}

async function refreshServer() {
  const button = byTestId("server-refresh");
  button.disabled = true;
  await fetchReport();
  button.disabled = false;
}

async function runSelfTest() {
  const button = byTestId("run-self-test");
  button.disabled = true;
  const report = await fetchReport();
  button.disabled = false;
  if (!report) return;
  const checks = report.checks ?? [];
  const passed = checks.filter((c) => c.ok).length;
  const summary = report.ok
    ? `Self-test passed: ${passed}/${checks.length} checks ok`
    : `Self-test found a problem: ${passed}/${checks.length} checks ok`;
  const table = h(
    "table",
    { class: "checks", "data-testid": "selftest-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Check"), h("th", {}, "Result"), h("th", {}, "Detail"), h("th", {}, "ms"))),
    h(
      "tbody",
      {},
      ...checks.map((c) =>
        h(
          "tr",
          { "data-testid": "check-row", "data-ok": String(Boolean(c.ok)) },
          h("td", { class: "mono" }, String(c.name)),
          h("td", { class: c.ok ? "ok" : "failed" }, c.ok ? "ok" : "failed"),
          h("td", {}, String(c.detail ?? "")),
          h("td", { class: "num" }, String(c.ms ?? "")),
        ),
      ),
    ),
  );
  logResult("selfTest", h("div", { "data-testid": "selftest-summary", class: report.ok ? "ok" : "failed" }, summary), table);
}

async function runAction(action) {
  const body = { action };
  let target = "";
  if (action !== "emitOnlineUsers") body.message = byTestId("action-message").value;
  if (action === "sendToUser") {
    body.targetUserId = byTestId("action-target").value;
    target = ` to ${current.online.get(body.targetUserId) ?? body.targetUserId}`;
  }
  try {
    const answer = await api("POST", "/api/socket-test", body);
    const plural = answer.recipients === 1 ? "" : "s";
    logResult("answer", `${answer.action}${target}: ${answer.recipients} recipient${plural}`);
  } catch (e) {
    logError(String(e));
  }
}

// ---------------------------------------------------------------------------------------------

function start() {
  byTestId("signin-form").addEventListener("submit", signIn);
  byTestId("sign-out").addEventListener("click", signOut);
  byTestId("reconnect").addEventListener("click", () => {
    current.socket?.io.reconnection(true);
    current.socket?.connect();
  });
  byTestId("server-refresh").addEventListener("click", refreshServer);
  byTestId("online-refresh").addEventListener("click", listOnline);
  byTestId("run-self-test").addEventListener("click", runSelfTest);
  byTestId("action-send-to-user").addEventListener("click", () => runAction("sendToUser"));
  byTestId("action-broadcast").addEventListener("click", () => runAction("broadcast"));
  byTestId("action-emit-online-users").addEventListener("click", () => runAction("emitOnlineUsers"));
  byTestId("results-clear").addEventListener("click", () => byTestId("results").replaceChildren());
  byTestId("errors-clear").addEventListener("click", () => byTestId("error-log").replaceChildren());
  checkSignedIn();
}

start();
