// The realtime client: one socket.io-client socket on the main server (`/api/socket`) with the
// glue every web app needs around it. It keeps the newest access token (a `tokenUpdated` replaces
// it, so reconnections hand the server the newest one), stops for good on `force_logout` or an
// authentication failure, catches up with `sync` after every reconnect so that each message
// reaches the `newMessage` / `messageSent` listeners exactly once and in order, retries sends
// across reconnects under one `clientId`, tells edits, deletions and reactions (live, and those
// missed while away from `sync`'s `changed`), and keeps presence and typing state. Presence is
// scoped (SPEC §5): the map follows the users this socket watches — everybody with scope `all`,
// else its conversation partners and its `watchPresence` list, which is sent again after every
// reconnect.

import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

import { Call, type CallTransport } from "./calls.js";
import { resolveAttachmentUrl, tusUpload, type UploadedFile, type UploadOptions, type UploadSource } from "./uploads.js";

import type {
  Ack,
  Attachment,
  AuthErrorPayload,
  AuthenticatedPayload,
  ClientToServerEvents,
  Conversation,
  ConversationRemovedPayload,
  ConversationUpdatedPayload,
  Destination,
  ForceLogoutPayload,
  Id,
  Message,
  MessageDeletedPayload,
  MessageDeliveredPayload,
  MessagesReadPayload,
  Notification,
  NotificationsReadPayload,
  OnlineUser,
  OnlineUsersPage,
  OnlineUsersPayload,
  PongPayload,
  PresenceScope,
  Reaction,
  ReactionsChangedPayload,
  ServerShutdownPayload,
  ServerToClientEvents,
  SyncAck,
  TestMessagePayload,
  TokenUpdatedPayload,
  User,
  UserStatusChangedPayload,
  UserTypingPayload,
  UploadProgressPayload,
  WatchPresenceAck,
} from "./types.js";

/** Where the connection stands. `loggedOut` and `disconnected` are final: make a new client. */
export type ConnectionStatus =
  | "connecting" // first handshake under way
  | "connected" // authenticated; events flow
  | "reconnecting" // the connection dropped; socket.io-client is trying again
  | "disconnected" // `close()` was called, or the server refused us for a non-auth reason
  | "loggedOut"; // force_logout, or the token was refused: sign in again

/** Where a delivered message came from: pushed live, or fetched by `sync` after a reconnect. */
export interface DeliveryInfo {
  source: "live" | "sync" | "ack";
}

export type RealtimeSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** The client's events; `on(name, listener)` returns a function that removes the listener. */
export interface RealtimeEvents {
  /** Every status change (drive a "reconnecting…" banner with it). */
  status: (status: ConnectionStatus) => void;
  /** After each successful handshake (the first and every reconnection). */
  authenticated: (payload: AuthenticatedPayload) => void;
  /** The token was refused (handshake or `authenticate`). The client has stopped. */
  authError: (payload: AuthErrorPayload) => void;
  /** The session ended (logout, revoke, deactivation, deletion). The client has stopped. */
  force_logout: (payload: ForceLogoutPayload) => void;
  /** A new token for this session; the client already uses it. Store it if you keep one. */
  tokenUpdated: (payload: TokenUpdatedPayload) => void;
  userStatusChanged: (payload: UserStatusChangedPayload) => void;
  /** A message to this user: each one exactly once, in id order, live or caught up by `sync`. */
  newMessage: (message: Message, info: DeliveryInfo) => void;
  /** A message this user sent (from this device or another): each one exactly once, in order. */
  messageSent: (message: Message, info: DeliveryInfo) => void;
  /**
   * The whole message as it is now: after an edit (live), or after any change this device missed
   * while away (`sync`: edits, reactions and deletions, a deleted one with `deletedAt` set).
   * Replace the message you hold with it.
   */
  messageUpdated: (message: Message, info: DeliveryInfo) => void;
  /**
   * A message became a tombstone (`content` `""`, no mentions, attachments or reactions), live
   * or caught up by `sync` (which tells it as `messageUpdated` too).
   */
  messageDeleted: (payload: MessageDeletedPayload, info: DeliveryInfo) => void;
  /** A message's reactions now (live; `sync` tells missed ones as `messageUpdated`). */
  reactionsChanged: (payload: ReactionsChangedPayload, info: DeliveryInfo) => void;
  messageDelivered: (payload: MessageDeliveredPayload) => void;
  messagesRead: (payload: MessagesReadPayload) => void;
  /** From the server, plus a stop this client infers when the connection drops. */
  userTyping: (payload: UserTypingPayload) => void;
  /** A conversation of this user's changed (made, renamed, members, roles); the map has it. */
  conversationUpdated: (payload: ConversationUpdatedPayload) => void;
  /** This user lost access to a group (removed, left, deleted); the map no longer has it. */
  conversationRemoved: (payload: ConversationRemovedPayload) => void;
  /** The live map of this user's conversations, after every change (`loadConversations` fills it). */
  conversations: (conversations: ReadonlyMap<Id, Conversation>) => void;
  /**
   * The live map of online users this socket watches (`client.online`), after every change:
   * the welcome list, `presenceChanged`, a `watchPresence` answer.
   */
  presence: (online: ReadonlyMap<Id, OnlineUser>) => void;
  /** A notification for this user: each one once, live or caught up by `sync`. */
  notification: (notification: Notification, info: DeliveryInfo) => void;
  notificationsRead: (payload: NotificationsReadPayload) => void;
  testMessage: (payload: TestMessagePayload) => void;
  server_shutdown: (payload: ServerShutdownPayload) => void;
  /**
   * A catch-up after a reconnect finished: how many messages it delivered, how many changes to
   * earlier ones it told (`messageUpdated`), over how many pages.
   */
  synced: (info: { messages: number; changed: number; pages: number }) => void;
  /** A send attempt got no answer (the connection dropped or timed out); it will be retried. */
  sendRetry: (info: { to: Id; clientId: string; attempt: number; reason: string }) => void;
  /**
   * An upload to one of this user's conversations moved on (SPEC §12): others' uploads, and this
   * user's own (from this device too), at most once a second each while bytes arrive, and a last
   * time with `offset === size`. `client.uploads` keeps those of others and other devices.
   */
  uploadProgress: (progress: UploadProgressPayload) => void;
  /** The live map of uploads under way that this client is not making itself (`client.uploads`), after every change. */
  uploads: (uploads: ReadonlyMap<Id, UploadProgressPayload>) => void;
  /** Someone calls this user: `call.accept()` or `call.decline()`; every device rings. */
  incomingCall: (call: Call) => void;
  /** Something went wrong that the client handles by itself (a failed sync, a listener threw). */
  error: (error: Error) => void;
}

export interface ConnectOptions {
  /** The server's base URL, e.g. `http://localhost:3000` (in a browser: `location.origin`). */
  url: string;
  /** The access token from the login response. */
  token?: string;
  /**
   * Called before every handshake (the first and each reconnection) with the token the client
   * holds — the newest `tokenUpdated` one, or `null` when there is none or the server has just
   * refused it as expired or invalid — and answers the token to hand over. Typically
   * `async (current) => current ?? (await refreshMyToken())`.
   */
  getToken?: (
    current: string | null,
  ) => string | null | undefined | Promise<string | null | undefined>;
  /** The main server's path. Default `/api/socket`. */
  path?: string;
  /**
   * The newest message id the app already has (e.g. from history it loaded); messages after it
   * are caught up at connect. Default: start from the moment of the first connection.
   */
  since?: Id | null;
  /** Messages per `sync` page. Default 100 (the server's maximum). */
  syncPageSize?: number;
  /** How long one acknowledged request may wait for its ack before it counts as lost. Default 10 s. */
  ackTimeoutMs?: number;
  /** How many times a send is tried before its promise rejects. Default 5. */
  sendAttempts?: number;
  /** While typing goes on, `typing: true` is sent again this often (the server forgets after 6 s). Default 3 s. */
  typingRefreshMs?: number;
  /** After this long without a `typing()` call, `typing: false` is sent. Default 4 s. */
  typingIdleMs?: number;
  /**
   * An upload in `client.uploads` that has not been heard of for this long is taken as given up
   * (its uploader went away) and leaves the map. Default 60 s.
   */
  uploadStaleMs?: number;
  /** socket.io-client's reconnection delays. Defaults 500 ms and 5 s. */
  reconnectionDelay?: number;
  reconnectionDelayMax?: number;
  /**
   * Added to every call's RTCPeerConnection settings after the server's ICE servers, e.g.
   * `{iceTransportPolicy: "relay"}` to send media through TURN only.
   */
  rtcConfiguration?: Partial<RTCConfiguration>;
  /** Anything else for socket.io-client's `io()` (transports, extraHeaders in Node, …). */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
}

/** An error with the server's code (`rate_limited`, `user_not_found`, `logged_out`, …). */
export class RealtimeError extends Error {
  readonly code: string;
  readonly fields: Record<string, string> | undefined;
  constructor(code: string, message: string, fields?: Record<string, string>) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
    this.fields = fields;
  }
}

/** The four reasons a handshake is refused for the token (SPEC §5). */
const AUTH_REFUSALS = new Set(["invalid_token", "token_expired", "session_revoked", "account_disabled"]);
/** How many message ids are remembered to drop repeats. */
const SEEN_LIMIT = 10_000;
/** The server ends a typing indicator 6 s after the last refresh; past this we assume it ended. */
const PEER_TYPING_EXPIRY_MS = 7_000;
/** Codes worth retrying a send for, after a pause. */
const RETRYABLE_SEND_CODES = new Set(["rate_limited", "internal_error", "unavailable"]);
/** The largest `getOnlineUsers` page the server gives (SPEC §5). */
const ONLINE_PAGE_MAX = 500;

/** A fresh `clientId`: a random UUID (browsers on https/localhost, Node ≥ 19). */
export function newClientId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  let s = "";
  for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-a${s.slice(17, 20)}-${s.slice(20, 32)}`;
}

/**
 * The smallest UUIDv7 of a millisecond: every message id stored at or after `time` is greater,
 * so it works as a `sync` cursor for "everything from now on".
 */
export function uuidv7Floor(time: number): Id {
  const hex = Math.max(0, Math.floor(time)).toString(16).padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}

/** What a send may carry beside its content. */
export interface SendOptions {
  /** Repeats of one send share it; made for you when absent. */
  clientId?: string;
  /** Members of the conversation this message mentions. */
  mentions?: Id[];
  /** A message of the same conversation this one answers. */
  replyToId?: Id;
  /**
   * Finished uploads of this user to this conversation (`upload()`'s ids), 1–10, each attached
   * once; `content` may then be `""`.
   */
  attachmentIds?: Id[];
}

/** The bytes of a base64url text (a VAPID key). */
function base64UrlBytes(text: string): Uint8Array {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  const binary = atob(base64);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

type Listeners = { [K in keyof RealtimeEvents]?: Set<RealtimeEvents[K]> };
type Waiter = { resolve: () => void; reject: (err: Error) => void };
type TypingState = { active: boolean; lastSent: number; idle: ReturnType<typeof setTimeout> | undefined };

/** Connects to the main server. The returned client is live at once; see `status`. */
export function connect(options: ConnectOptions): RealtimeClient {
  return new RealtimeClient(options);
}

export class RealtimeClient {
  /** The underlying socket.io-client socket, for anything this class does not wrap. */
  readonly socket: RealtimeSocket;

  #options: Required<
    Pick<
      ConnectOptions,
      "syncPageSize" | "ackTimeoutMs" | "sendAttempts" | "typingRefreshMs" | "typingIdleMs" | "uploadStaleMs"
    >
  >;
  #getToken: ConnectOptions["getToken"];
  #rtc: Partial<RTCConfiguration>;
  #token: string | null;
  #refetchedToken = false;
  #status: ConnectionStatus = "connecting";
  #stopped: RealtimeError | null = null;
  #user: User | null = null;
  #sessionId: Id | null = null;
  #ready = false;
  #waiters: Waiter[] = [];
  #listeners: Listeners = {};

  /** Newest message id delivered to the listeners: where the next `sync` starts. */
  #cursor: Id | null;
  #seen = new Set<Id>();
  #seenOrder: Id[] = [];
  /**
   * While catching up, live messages wait here so that everything comes out in order, and so do
   * the receipts (`messageDelivered`, `messagesRead`) and changes (`messageUpdated`,
   * `messageDeleted`, `reactionsChanged`), which must not overtake their messages or be
   * overtaken by the older state the catch-up brings.
   */
  #buffering = false;
  #pending: Array<{ message: Message; source: DeliveryInfo["source"] }> = [];
  #pendingReceipts: Array<() => void> = [];
  #syncRunning = false;
  #syncAgain = false;

  #online = new Map<Id, OnlineUser>();
  /** This socket's presence scope, from its welcome `getOnlineUsers`; null before the first. */
  #scope: PresenceScope | null = null;
  /** The last `watchPresence` list the app asked for: the server's copy of it is per socket. */
  #watched: Id[] = [];
  /** `watchPresence` requests go one at a time, so the server keeps the newest list. */
  #watchQueue: Promise<unknown> = Promise.resolve();
  /**
   * The list is on its way again after a reconnect: until its answer, the new welcome (which
   * cannot know it yet) leaves those users as they were instead of dropping them.
   */
  #rewatching = false;
  #conversations = new Map<Id, Conversation>();
  /** Whether the app asked for the map (`loadConversations`): then new conversations join it. */
  #conversationsLoaded = false;
  /**
   * Conversations being fetched because a first message came from them, and whether more
   * messages came meanwhile (the answer may predate them: it is fetched again).
   */
  #joining = new Map<Id, boolean>();
  #url: string;
  #typingTo = new Map<Id, TypingState>();
  #typingFrom = new Map<Id, ReturnType<typeof setTimeout>>();
  #shutdownNotice: ServerShutdownPayload | null = null;
  /** Calls of this device by id, and events for a call whose id it does not know yet. */
  #calls = new Map<Id, Call>();
  #early = new Map<Id, Array<[string, unknown]>>();
  /** Uploads under way that others (or this user's other devices) make, by upload id. */
  #uploads = new Map<Id, UploadProgressPayload>();
  #uploadTimers = new Map<Id, ReturnType<typeof setTimeout>>();
  /** The uploads this client makes (they have their own `onProgress`): kept out of the map. */
  #ownUploads = new Set<Id>();

  constructor(options: ConnectOptions) {
    if (!options.token && !options.getToken) {
      throw new TypeError("connect() needs a token or a getToken function");
    }
    this.#options = {
      syncPageSize: options.syncPageSize ?? 100,
      ackTimeoutMs: options.ackTimeoutMs ?? 10_000,
      sendAttempts: options.sendAttempts ?? 5,
      typingRefreshMs: options.typingRefreshMs ?? 3_000,
      typingIdleMs: options.typingIdleMs ?? 4_000,
      uploadStaleMs: options.uploadStaleMs ?? 60_000,
    };
    this.#getToken = options.getToken;
    this.#rtc = options.rtcConfiguration ?? {};
    this.#url = options.url.replace(/\/$/, "");
    this.#token = options.token ?? null;
    this.#cursor = options.since ?? null;

    this.socket = io(options.url, {
      path: options.path ?? "/api/socket",
      reconnectionDelay: options.reconnectionDelay ?? 500,
      reconnectionDelayMax: options.reconnectionDelayMax ?? 5_000,
      ...options.socketOptions,
      // Called at every (re)connection, so the newest token is the one handed over.
      auth: (cb: (data: object) => void) => {
        this.#currentToken().then(
          (token) => cb(token ? { token } : {}),
          (err) => {
            this.#emit("error", err instanceof Error ? err : new Error(String(err)));
            cb({});
          },
        );
      },
    }) as RealtimeSocket;
    this.#wire();
  }

  // -------------------------------------------------------------------------------------------
  // State

  get status(): ConnectionStatus {
    return this.#status;
  }
  /** The signed-in user (after the first `authenticated`; refreshed by `tokenUpdated`). */
  get user(): User | null {
    return this.#user;
  }
  get sessionId(): Id | null {
    return this.#sessionId;
  }
  /** The access token in use (the newest `tokenUpdated` one). */
  get token(): string | null {
    return this.#token;
  }
  /** The newest message id delivered so far (the `sync` cursor). */
  get lastMessageId(): Id | null {
    return this.#cursor;
  }
  /**
   * Online users by id, among those this socket watches: everybody with scope `all`, else this
   * user's conversation partners and the `watchPresence` list. Kept live from the welcome
   * `getOnlineUsers`, `presenceChanged` and `watchPresence` answers; a user dropped from the
   * watch list keeps the last state it was told.
   */
  get online(): ReadonlyMap<Id, OnlineUser> {
    return this.#online;
  }
  /**
   * Which users this socket hears about: `all`, or `watched` when the server had more than
   * `PRESENCE_BROADCAST_MAX` users online as it authenticated; null before the first welcome.
   */
  get scope(): PresenceScope | null {
    return this.#scope;
  }
  /** The last list given to `watchPresence` (sent again after every reconnect). */
  get watchedUsers(): readonly Id[] {
    return this.#watched;
  }
  isOnline(userId: Id): boolean {
    return this.#online.has(userId);
  }
  /**
   * This user's conversations by id, kept live from `conversationUpdated`, `conversationRemoved`,
   * every message (last message, unread and mention counts) and this user's reads. Empty until
   * `loadConversations()`.
   */
  get conversations(): ReadonlyMap<Id, Conversation> {
    return this.#conversations;
  }
  /**
   * Uploads under way to this user's conversations that this client is not making itself (others',
   * and this user's from other devices), by upload id, as their last `uploadProgress` told. An
   * upload leaves the map when it completes (`offset === size`), when a message attaches it, or
   * after `uploadStaleMs` without news.
   */
  get uploads(): ReadonlyMap<Id, UploadProgressPayload> {
    return this.#uploads;
  }
  /** The uploads of `uploads` to one conversation, oldest first. */
  uploadsIn(conversationId: Id): UploadProgressPayload[] {
    return [...this.#uploads.values()]
      .filter((u) => u.conversationId === conversationId)
      .sort((a, b) => (a.uploadId < b.uploadId ? -1 : a.uploadId > b.uploadId ? 1 : 0));
  }
  /** Whether `userId` is typing to this user right now. */
  isTyping(userId: Id): boolean {
    return this.#typingFrom.has(userId);
  }

  on<K extends keyof RealtimeEvents>(event: K, listener: RealtimeEvents[K]): () => void {
    let set = this.#listeners[event] as Set<RealtimeEvents[K]> | undefined;
    if (!set) {
      set = new Set();
      (this.#listeners as Record<string, Set<unknown>>)[event] = set;
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  off<K extends keyof RealtimeEvents>(event: K, listener: RealtimeEvents[K]): void {
    (this.#listeners[event] as Set<RealtimeEvents[K]> | undefined)?.delete(listener);
  }

  /** Resolves once authenticated (at once if already); rejects when the client has stopped. */
  ready(): Promise<void> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    if (this.#ready) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  /**
   * Sends a direct message and resolves with it once stored. The attempt is repeated, under the
   * same `clientId`, when the connection drops or the ack does not come: the server answers a
   * repeated `clientId` with the message it already stored, so nothing is ever sent twice.
   */
  async sendMessage(
    to: Id,
    content: string,
    options: Omit<SendOptions, "mentions"> = {},
  ): Promise<Message> {
    this.stopTyping(to);
    return this.#send({ to }, content, options);
  }

  /**
   * Sends a message to a conversation (direct or group) by id, mentioning `mentions` (members),
   * answering `replyToId` (a message of the same conversation), with the same retries under one
   * `clientId` as `sendMessage`.
   */
  async sendToConversation(
    conversationId: Id,
    content: string,
    options: SendOptions = {},
  ): Promise<Message> {
    this.stopTypingIn(conversationId);
    return this.#send({ conversationId }, content, options);
  }

  async #send(destination: Destination, content: string, options: SendOptions): Promise<Message> {
    const clientId = options.clientId ?? newClientId();
    const to = "to" in destination ? destination.to : destination.conversationId;
    const payload = {
      ...destination,
      content,
      clientId,
      ...(options.mentions ? { mentions: options.mentions } : {}),
      ...(options.replyToId ? { replyToId: options.replyToId } : {}),
      ...(options.attachmentIds?.length ? { attachmentIds: options.attachmentIds } : {}),
    };
    let lastReason = "";
    for (let attempt = 1; attempt <= this.#options.sendAttempts; attempt++) {
      await this.ready();
      let reply: Ack<{ message: Message; delivered: boolean }>;
      try {
        reply = await this.#request("sendMessage", payload);
      } catch (err) {
        if (this.#stopped) throw this.#stopped;
        lastReason = (err as Error).message;
        this.#emit("sendRetry", { to, clientId, attempt, reason: lastReason });
        continue;
      }
      if (reply.ok) {
        this.#deliver(reply.message, "ack");
        return reply.message;
      }
      const { code, message, fields } = reply.error;
      if (!RETRYABLE_SEND_CODES.has(code)) throw new RealtimeError(code, message, fields);
      lastReason = code;
      this.#emit("sendRetry", { to, clientId, attempt, reason: code });
      await new Promise((r) => setTimeout(r, 1_000 * attempt));
    }
    throw new RealtimeError(
      "send_failed",
      `the message was not confirmed after ${this.#options.sendAttempts} attempts (${lastReason})`,
    );
  }

  /**
   * Gives one of this user's text messages new content (within the server's edit window, 24 h by
   * default); resolves with the edited message. Every member's devices, this one included, get
   * `messageUpdated`.
   */
  async editMessage(messageId: Id, content: string): Promise<Message> {
    const reply = await this.#ask("editMessage", { messageId, content });
    return reply.message;
  }

  /**
   * Deletes a message (this user's own; any in a group this user owns or administers; any at all
   * for a platform admin). Every member's devices get `messageDeleted`; deleting twice is fine.
   */
  async deleteMessage(messageId: Id): Promise<void> {
    await this.#ask("deleteMessage", { messageId });
  }

  /**
   * Adds this user's reaction `emoji` (one emoji, or a shortcode like `:tada:`) to a message, or
   * takes it back with `add = false`; both are idempotent. Resolves with the message's reactions;
   * every member's devices get `reactionsChanged` when something changed.
   */
  async react(messageId: Id, emoji: string, add = true): Promise<Reaction[]> {
    const reply = await this.#ask("react", { messageId, emoji, add });
    return reply.reactions;
  }

  /** Marks messages from `userId` up to and including `upTo` read; resolves with how many. */
  async markRead(userId: Id, upTo: Id): Promise<number> {
    return (await this.#ask("markRead", { userId, upTo })).count;
  }

  /**
   * Moves this user's read pointer in a conversation to `upTo` (forward only); resolves with
   * how many messages became read. The conversation's counts in the map follow.
   */
  async markConversationRead(conversationId: Id, upTo: Id): Promise<number> {
    const reply = await this.#ask("markRead", { conversationId, upTo });
    await this.#refreshConversation(conversationId);
    return reply.count;
  }

  // -------------------------------------------------------------------------------------------
  // Conversations over REST (SPEC §10), with the same token as the socket

  /** Fetches this user's conversations (most recently active first) into the live map. */
  async loadConversations(): Promise<Conversation[]> {
    const list: Conversation[] = [];
    let before: Id | null = null;
    do {
      const query: string = before ? `?limit=100&before=${before}` : "?limit=100";
      const page = await this.#rest<{ conversations: Conversation[]; nextCursor: Id | null }>(
        "GET",
        `/api/conversations${query}`,
      );
      list.push(...page.conversations);
      before = page.nextCursor;
    } while (before);
    this.#conversations = new Map(list.map((c) => [c.id, c]));
    this.#conversationsLoaded = true;
    this.#emit("conversations", this.#conversations);
    return list;
  }

  /** One conversation, with its members. */
  async getConversation(id: Id): Promise<Conversation> {
    return this.#fetchConversation(id);
  }

  /** Makes a group owned by this user with `memberIds` (1 to 100 users). */
  async createGroup(title: string, memberIds: Id[]): Promise<Conversation> {
    const body = { title, memberIds };
    return this.#keep((await this.#rest<{ conversation: Conversation }>("POST", "/api/conversations", body)).conversation);
  }

  /** Renames a group (owner and admins). */
  async renameGroup(id: Id, title: string): Promise<Conversation> {
    return this.#keep((await this.#rest<{ conversation: Conversation }>("PATCH", `/api/conversations/${id}`, { title })).conversation);
  }

  /** Adds users to a group (owner and admins); those already in are ignored. */
  async addMembers(id: Id, userIds: Id[]): Promise<Conversation> {
    const path = `/api/conversations/${id}/members`;
    return this.#keep((await this.#rest<{ conversation: Conversation }>("POST", path, { userIds })).conversation);
  }

  /** Gives a member a role (the owner only); `owner` passes ownership on. */
  async setRole(id: Id, userId: Id, role: "owner" | "admin" | "member"): Promise<Conversation> {
    const path = `/api/conversations/${id}/members/${userId}`;
    return this.#keep((await this.#rest<{ conversation: Conversation }>("PATCH", path, { role })).conversation);
  }

  /** Removes a member (owner and admins). */
  async removeMember(id: Id, userId: Id): Promise<void> {
    await this.#rest("DELETE", `/api/conversations/${id}/members/${userId}`);
  }

  /** Leaves a group (the owner passes ownership on first, unless they are the last member). */
  async leave(id: Id): Promise<void> {
    if (!this.#user) await this.ready();
    await this.#rest("DELETE", `/api/conversations/${id}/members/${this.#user!.id}`);
    this.#forget(id);
  }

  // -------------------------------------------------------------------------------------------
  // Attachments (SPEC §12)

  /**
   * Uploads a file (a `File` or `Blob`; in Node a `Buffer`, `Uint8Array` or `Blob`) to a
   * conversation of this user's with tus 1.0.0 (`tus-js-client`, `POST /api/uploads`), sending the
   * client's newest token with every request; failed requests are tried again (`retryDelays`)
   * and continue at the server's offset. Resolves once the server has every byte, with the
   * upload's id to attach: `sendToConversation(conversationId, text, {attachmentIds: [id]})`.
   * `onProgress(sent, total)` follows the bytes; aborting `signal` deletes the upload. Rejects
   * with the server's code (`conversation_not_found`, `payload_too_large`, `rate_limited`, …).
   * The conversation's other members hear of it as `uploadProgress`.
   */
  async upload(file: UploadSource, conversationId: Id, options: UploadOptions = {}): Promise<UploadedFile> {
    if (this.#stopped) throw this.#stopped;
    return tusUpload(
      {
        endpoint: `${this.#url}/api/uploads`,
        token: async () => this.#token ?? (await this.#currentToken()),
        refreshToken: (refused) => {
          if (this.#stopped) return false;
          if (this.#token && this.#token !== refused) return true;
          if (!this.#getToken) return false;
          // As after a refused handshake: `getToken(null)` fetches a fresh one.
          this.#token = null;
          return true;
        },
        userId: this.#user?.id ?? null,
      },
      file,
      conversationId,
      options,
      (id) => {
        this.#ownUploads.add(id);
        // Their last `uploadProgress` normally takes them out again; this is for those it misses.
        if (this.#ownUploads.size > 1_000) this.#ownUploads.delete(this.#ownUploads.values().next().value!);
      },
    );
  }

  /**
   * An attachment's file, or with `"thumbnail"` its thumbnail (null when it has none), as a URL
   * against the client's server URL. Fetching it needs the same authentication as the API (the
   * bearer token, or the `craftcode_token` cookie): use `fetchAttachment()` where cookies are
   * not used, e.g. for an `<img>` through an object URL.
   */
  attachmentUrl(attachment: Pick<Attachment, "url" | "thumbnailUrl">, variant: "file" | "thumbnail" = "file"): string | null {
    return resolveAttachmentUrl(this.#url, attachment, variant);
  }

  /**
   * Downloads an attachment (or its thumbnail) with the client's token: a `Blob` of its bytes,
   * typed as the server answered. Rejects with the server's code (`attachment_not_found` for one
   * this user may not see).
   */
  async fetchAttachment(
    attachment: Pick<Attachment, "url" | "thumbnailUrl">,
    options: { thumbnail?: boolean; signal?: AbortSignal } = {},
  ): Promise<Blob> {
    const url = this.attachmentUrl(attachment, options.thumbnail ? "thumbnail" : "file");
    if (!url) throw new RealtimeError("attachment_not_found", "this attachment has no thumbnail");
    const token = this.#token ?? (await this.#currentToken());
    const res = await fetch(url, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (!res.ok) {
      const answer = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
      throw new RealtimeError(answer?.error?.code ?? `http_${res.status}`, answer?.error?.message ?? `GET ${url} answered ${res.status}`);
    }
    return res.blob();
  }

  /** Keeps an upload others make in the map, or lets it go once complete. */
  #uploadProgress(p: UploadProgressPayload): void {
    this.#emit("uploadProgress", p);
    if (this.#ownUploads.has(p.uploadId)) {
      if (p.offset >= p.size) this.#ownUploads.delete(p.uploadId);
      return;
    }
    if (p.offset >= p.size) {
      this.#dropUpload(p.uploadId);
      return;
    }
    clearTimeout(this.#uploadTimers.get(p.uploadId));
    this.#uploadTimers.set(p.uploadId, setTimeout(() => this.#dropUpload(p.uploadId), this.#options.uploadStaleMs));
    this.#uploads.set(p.uploadId, p);
    this.#emit("uploads", this.#uploads);
  }

  #dropUpload(id: Id): void {
    clearTimeout(this.#uploadTimers.get(id));
    this.#uploadTimers.delete(id);
    if (this.#uploads.delete(id)) this.#emit("uploads", this.#uploads);
  }

  // -------------------------------------------------------------------------------------------
  // Web Push (SPEC §13)

  /**
   * Subscribes this browser to Web Push with the server's VAPID key (through `registration`, the
   * app's service worker registration; the page must have notification permission) and stores
   * the subscription for this session, so that what this user would have been sent live reaches
   * the service worker's `push` event while no device of theirs is connected. Subscribing again
   * is harmless; signing out (ending the session) deletes it on the server.
   */
  async enablePush(registration: Pick<ServiceWorkerRegistration, "pushManager">): Promise<PushSubscription> {
    const { vapidPublicKey } = await this.#rest<{ vapidPublicKey: string }>("GET", "/api/push/config");
    const applicationServerKey = base64UrlBytes(vapidPublicKey);
    let subscription = await registration.pushManager.getSubscription();
    const key = subscription?.options?.applicationServerKey;
    if (subscription && key && !sameBytes(new Uint8Array(key), applicationServerKey)) {
      // Made for another server key (the server's was replaced): a new one is needed.
      await subscription.unsubscribe();
      subscription = null;
    }
    subscription ??= await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: applicationServerKey as BufferSource,
    });
    await this.#rest("POST", "/api/push/subscriptions", subscription.toJSON());
    return subscription;
  }

  /** Stops Web Push to this browser: deletes the subscription on the server, then in the browser. */
  async disablePush(registration: Pick<ServiceWorkerRegistration, "pushManager">): Promise<void> {
    const subscription = await registration.pushManager.getSubscription();
    if (!subscription) return;
    await this.#rest("DELETE", "/api/push/subscriptions", { endpoint: subscription.endpoint }).catch((err) => {
      // Already gone on the server (its session ended): only the browser's is left.
      if (!(err instanceof RealtimeError && err.code === "not_found")) throw err;
    });
    await subscription.unsubscribe();
  }

  // -------------------------------------------------------------------------------------------
  // Calls (SPEC §14)

  /**
   * Calls `userId` (audio, or video with `media: "video"`): takes the microphone (and camera)
   * unless `stream` is given, makes the RTCPeerConnection with the server's ICE servers, and
   * rings every device of theirs. Resolves once the call rings (`call.state`, `call.on(...)`);
   * rejects with `user_busy`, `user_not_found`, `recipient_disabled`, `rate_limited`.
   */
  async call(userId: Id, options: { media?: "audio" | "video"; stream?: MediaStream } = {}): Promise<Call> {
    await this.ready();
    const call = new Call({ transport: this.#callTransport(), direction: "outgoing", peer: userId, media: options.media ?? "audio" });
    await call.start(options.stream);
    if (call.id) this.#track(call);
    return call;
  }

  #callTransport(): CallTransport {
    return {
      ask: (event, payload) => this.#ask(event as keyof ClientToServerEvents, payload),
      prepare: async (media, given) => {
        const { iceServers } = await this.#rest<{ iceServers: RTCIceServer[] }>("GET", "/api/calls/ice-servers");
        const stream = given ?? (await navigator.mediaDevices.getUserMedia({ audio: true, video: media === "video" }));
        return { stream, config: { iceServers, ...this.#rtc } };
      },
    };
  }

  #track(call: Call): void {
    const id = call.id!;
    this.#calls.set(id, call);
    call.on("ended", () => this.#calls.delete(id));
    for (const [event, payload] of this.#early.get(id) ?? []) call.handle(event as "callEnded", payload);
    this.#early.delete(id);
  }

  #toCall(event: "callAccepted" | "iceCandidate" | "callEnded", payload: { callId?: Id } | undefined): void {
    const id = payload?.callId;
    if (!id) return;
    const call = this.#calls.get(id);
    if (call) {
      call.handle(event, payload);
      return;
    }
    // A call this device placed whose ack has not come back yet.
    const waiting = this.#early.get(id) ?? [];
    if (waiting.length < 100) waiting.push([event, payload]);
    this.#early.set(id, waiting);
    if (this.#early.size > 20) this.#early.delete(this.#early.keys().next().value!);
  }

  /**
   * One page of all online users (not only those this socket watches), ordered by user id:
   * `limit` 1–500 (the server's default is 100), `cursor` the previous page's `nextCursor`, which
   * is null on the last page. The presence map is left as it is.
   */
  async getOnlineUsers(options: { cursor?: string | null; limit?: number } = {}): Promise<OnlineUsersPage> {
    const reply = await this.#ask("getOnlineUsers", {
      ...(options.cursor ? { cursor: options.cursor } : {}),
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
    });
    return { users: reply.users, total: reply.total, nextCursor: reply.nextCursor ?? null };
  }

  /** Every online user, paged through `getOnlineUsers` 500 at a time; the map is left alone. */
  async allOnlineUsers(): Promise<OnlineUser[]> {
    const users = new Map<Id, OnlineUser>();
    let cursor: string | null = null;
    do {
      const page: OnlineUsersPage = await this.getOnlineUsers({ cursor, limit: ONLINE_PAGE_MAX });
      for (const user of page.users) users.set(user.userId, user);
      // A cursor that does not move would page forever.
      cursor = page.nextCursor !== cursor ? page.nextCursor : null;
    } while (cursor);
    return [...users.values()];
  }

  /**
   * Watches these users' presence (replacing the previous list; at most the server's
   * `PRESENCE_WATCH_MAX`, 500 by default): resolves with the state of each of them that exists
   * (this user left out), which joins the presence map, and from then on `presenceChanged`
   * covers them. The list is sent again after every reconnect. With scope `all` everybody is
   * watched already; calling it does no harm. A refused list (`invalid_payload`) rejects and
   * leaves the previous one in force.
   */
  async watchPresence(userIds: readonly Id[]): Promise<WatchPresenceAck> {
    const list = [...userIds];
    const previous = this.#watched;
    this.#watched = list;
    try {
      return await this.#queueWatch(list);
    } catch (err) {
      // Refused by the server: it kept the previous list, and so do we.
      if (err instanceof RealtimeError && this.#watched === list && !this.#stopped) this.#watched = previous;
      throw err;
    }
  }

  #queueWatch(list: Id[]): Promise<WatchPresenceAck> {
    const run = this.#watchQueue.then(() => this.#watch(list));
    this.#watchQueue = run.catch(() => {});
    return run;
  }

  /** Sends one list; a connection lost meanwhile means trying again once reconnected. */
  async #watch(list: Id[]): Promise<WatchPresenceAck> {
    for (let attempt = 1; ; attempt++) {
      await this.ready();
      let reply: Ack<WatchPresenceAck>;
      try {
        reply = await this.#request("watchPresence", { userIds: list });
      } catch (err) {
        if (this.#stopped) throw this.#stopped;
        if (attempt >= this.#options.sendAttempts) throw err;
        continue;
      }
      if (!reply.ok) throw new RealtimeError(reply.error.code, reply.error.message, reply.error.fields);
      const answer: WatchPresenceAck = { online: reply.online ?? [], offline: reply.offline ?? [] };
      for (const user of answer.online) this.#online.set(user.userId, user);
      for (const userId of answer.offline) this.#online.delete(userId);
      this.#emit("presence", this.#online);
      return answer;
    }
  }

  /** After a reconnect: the new socket watches nobody explicitly until it is told again. */
  #rewatch(): void {
    if (this.#watched.length === 0) return;
    this.#rewatching = true;
    const list = this.#watched;
    this.#queueWatch(list)
      .catch((err) => this.#emit("error", new Error(`watchPresence after reconnecting failed: ${(err as Error).message}`)))
      .finally(() => {
        this.#rewatching = false;
      });
  }

  /** A round trip: the server's answer to `ping`. */
  async ping(): Promise<PongPayload> {
    await this.ready();
    const reply = await this.#request("ping", { ts: Date.now() });
    if (!reply.ok) throw new RealtimeError(reply.error.code, reply.error.message);
    return { ts: reply.ts, serverTime: reply.serverTime };
  }

  /**
   * Call on every keystroke in a conversation with `to`: sends `typing: true` at once, again
   * every `typingRefreshMs` while it goes on, and `typing: false` after `typingIdleMs` without a
   * call. Sending a message to `to` stops it too.
   */
  typing(to: Id): void {
    this.#typing(to, { to });
  }

  #typing(key: string, destination: Destination): void {
    if (this.#stopped) return;
    const now = Date.now();
    let state = this.#typingTo.get(key);
    if (!state) {
      state = { active: false, lastSent: 0, idle: undefined };
      this.#typingTo.set(key, state);
    }
    if (!state.active || now - state.lastSent >= this.#options.typingRefreshMs) {
      if (this.#ready) this.socket.emit("typing", { ...destination, isTyping: true });
      state.active = true;
      state.lastSent = now;
    }
    clearTimeout(state.idle);
    state.idle = setTimeout(() => this.#stopTyping(key, destination), this.#options.typingIdleMs);
  }

  /** As `typing(to)`, in a conversation by id (a group's other members see it). */
  typingIn(conversationId: Id): void {
    this.#typing(`c:${conversationId}`, { conversationId });
  }

  /** Sends `typing: false` in a conversation if a `typing: true` is standing. */
  stopTypingIn(conversationId: Id): void {
    this.#stopTyping(`c:${conversationId}`, { conversationId });
  }

  /** Sends `typing: false` to `to` if a `typing: true` is standing. */
  stopTyping(to: Id): void {
    this.#stopTyping(to, { to });
  }

  #stopTyping(key: string, destination: Destination): void {
    const state = this.#typingTo.get(key);
    if (!state) return;
    clearTimeout(state.idle);
    this.#typingTo.delete(key);
    if (state.active && this.#ready) this.socket.emit("typing", { ...destination, isTyping: false });
  }

  /** Catches up now (it also happens by itself after every reconnect). */
  async sync(): Promise<void> {
    await this.ready();
    await this.#runSync();
  }

  /** Disconnects for good. Pending sends reject with code `closed`. */
  close(): void {
    this.#stop("disconnected", new RealtimeError("closed", "the client was closed"));
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  async #currentToken(): Promise<string | null> {
    if (this.#getToken) this.#token = (await this.#getToken(this.#token)) ?? null;
    return this.#token;
  }

  #emit<K extends keyof RealtimeEvents>(event: K, ...args: Parameters<RealtimeEvents[K]>): void {
    const set = this.#listeners[event] as Set<(...a: unknown[]) => void> | undefined;
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        if (event === "error") {
          console.error(err);
        } else {
          this.#emit("error", err instanceof Error ? err : new Error(String(err)));
        }
      }
    }
  }

  #setStatus(status: ConnectionStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    this.#emit("status", status);
  }

  /** Once ready, one acknowledged emit; its `{ok: false}` answer rejects with the server's code. */
  async #ask<E extends keyof ClientToServerEvents>(event: E, payload: unknown): Promise<any> {
    await this.ready();
    const reply = await this.#request(event, payload);
    if (!reply.ok) throw new RealtimeError(reply.error.code, reply.error.message, reply.error.fields);
    return reply;
  }

  /** One acknowledged emit; rejects when the connection drops or the ack takes too long. */
  #request<E extends keyof ClientToServerEvents>(event: E, payload: unknown): Promise<any> {
    return new Promise((resolve, reject) => {
      if (!this.socket.connected) {
        reject(new Error("not connected"));
        return;
      }
      const done = (err: Error | null, reply?: unknown) => (err ? reject(err) : resolve(reply));
      const s = this.socket.timeout(this.#options.ackTimeoutMs) as unknown as {
        emit: (event: string, ...args: unknown[]) => void;
      };
      if (payload === undefined) s.emit(event, done);
      else s.emit(event, payload, done);
    });
  }

  #stop(status: "loggedOut" | "disconnected", error: RealtimeError): void {
    if (this.#stopped) return;
    this.#stopped = error;
    this.#ready = false;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
    for (const state of this.#typingTo.values()) clearTimeout(state.idle);
    this.#typingTo.clear();
    for (const timer of this.#uploadTimers.values()) clearTimeout(timer);
    this.#uploadTimers.clear();
    this.#clearPeerTyping();
    this.socket.disconnect();
    this.#setStatus(status);
  }

  #wire(): void {
    const s = this.socket;

    s.on("connect", () => {
      // Until the catch-up is done, live messages queue behind it.
      if (this.#cursor !== null) this.#buffering = true;
    });

    s.on("connect_error", (err: Error) => {
      if (this.#stopped) return;
      if (s.active) {
        // The transport failed; socket.io-client tries again by itself.
        if (this.#status !== "connecting") this.#setStatus("reconnecting");
        return;
      }
      // Refused by the server's middleware: socket.io-client will not retry by itself.
      const code = err.message;
      if (
        (code === "token_expired" || code === "invalid_token") &&
        this.#getToken &&
        !this.#refetchedToken
      ) {
        this.#refetchedToken = true;
        this.#token = null;
        s.connect();
        return;
      }
      const payload = { code, message: `the server refused the connection: ${code}` };
      if (AUTH_REFUSALS.has(code)) {
        this.#emit("authError", payload);
        this.#stop("loggedOut", new RealtimeError(code, payload.message));
      } else {
        this.#emit("error", new RealtimeError(code, payload.message));
        this.#stop("disconnected", new RealtimeError(code, payload.message));
      }
    });

    s.on("disconnect", (reason) => {
      this.#ready = false;
      this.#clearPeerTyping();
      if (this.#stopped) return;
      if (reason === "io client disconnect") return;
      this.#setStatus("reconnecting");
      if (reason === "io server disconnect") {
        // The server closed this socket without ending the session (force_logout would have
        // stopped us): a restart or a kick. Try again; a refused handshake tells us if it is over.
        const wait = this.#shutdownNotice?.reconnectAfterMs ?? 500;
        setTimeout(() => {
          if (!this.#stopped && !s.connected) s.connect();
        }, wait);
      }
    });

    s.on("authenticated", (payload) => {
      this.#refetchedToken = false;
      this.#shutdownNotice = null;
      this.#user = payload.user;
      this.#sessionId = payload.sessionId;
      this.#ready = true;
      this.#setStatus("connected");
      for (const waiter of this.#waiters.splice(0)) waiter.resolve();
      this.#emit("authenticated", payload);
      this.#rewatch();
      if (this.#cursor === null) void this.#startCursor();
      else void this.#runSync();
    });

    s.on("authError", (payload) => {
      this.#emit("authError", payload);
      // `unauthenticated` answers an event sent before authenticating; the socket stays.
      if (payload.code !== "unauthenticated") {
        this.#stop("loggedOut", new RealtimeError(payload.code, payload.message));
      }
    });

    s.on("force_logout", (payload) => {
      this.#emit("force_logout", payload);
      this.#stop("loggedOut", new RealtimeError("logged_out", `the session ended: ${payload.reason}`));
    });

    s.on("tokenUpdated", (payload) => {
      // Replaced in place: the `auth` callback hands this one over at the next reconnection.
      this.#token = payload.token;
      this.#user = payload.user;
      this.#emit("tokenUpdated", payload);
    });

    s.on("newMessage", (payload, ack) => {
      // Acknowledging marks it delivered (the sender sees `messageDelivered`); repeats too.
      if (typeof ack === "function") ack();
      if (payload?.message?.id) this.#deliver(payload.message, "live");
    });
    s.on("messageSent", (payload) => {
      if (payload?.message?.id) this.#deliver(payload.message, "live");
    });

    s.on("getOnlineUsers", (payload) => this.#welcome(payload));
    s.on("presenceChanged", (payload) => {
      for (const user of payload.online) this.#online.set(user.userId, user);
      for (const userId of payload.offline) this.#online.delete(userId);
      this.#emit("presence", this.#online);
    });

    s.on("userTyping", (payload) => {
      clearTimeout(this.#typingFrom.get(payload.userId));
      if (payload.isTyping) {
        this.#typingFrom.set(
          payload.userId,
          setTimeout(() => {
            this.#typingFrom.delete(payload.userId);
            this.#emit("userTyping", { userId: payload.userId, isTyping: false });
          }, PEER_TYPING_EXPIRY_MS),
        );
      } else {
        this.#typingFrom.delete(payload.userId);
      }
      this.#emit("userTyping", payload);
    });

    s.on("conversationUpdated", (payload) => {
      if (!payload?.conversation?.id) return;
      const known = this.#conversations.get(payload.conversation.id);
      // The event carries no member list; keep the one already loaded.
      this.#keep({ ...payload.conversation, members: payload.conversation.members ?? known?.members });
      this.#emit("conversationUpdated", payload);
    });
    s.on("conversationRemoved", (payload) => {
      if (!payload?.conversationId) return;
      this.#forget(payload.conversationId);
      this.#emit("conversationRemoved", payload);
    });

    s.on("server_shutdown", (payload) => {
      this.#shutdownNotice = payload;
      this.#emit("server_shutdown", payload);
    });

    s.on("messageUpdated", (p) => {
      if (p?.message?.id) this.#receipt(() => this.#updated(p.message, "live"));
    });
    s.on("messageDeleted", (p) => {
      if (p?.messageId) this.#receipt(() => this.#deleted(p, "live"));
    });
    s.on("reactionsChanged", (p) => {
      if (!p?.messageId || !Array.isArray(p.reactions)) return;
      this.#receipt(() => {
        this.#patchLastMessage(p.conversationId, p.messageId, { reactions: p.reactions });
        this.#emit("reactionsChanged", p, { source: "live" });
      });
    });

    s.on("incomingCall", (p) => {
      if (!p?.call?.id || this.#calls.has(p.call.id)) return;
      const call = new Call({
        transport: this.#callTransport(),
        direction: "incoming",
        peer: p.call.from,
        media: p.call.media,
        id: p.call.id,
        offer: p.offer,
      });
      this.#track(call);
      this.#emit("incomingCall", call);
    });
    s.on("callAccepted", (p) => this.#toCall("callAccepted", p));
    s.on("iceCandidate", (p) => this.#toCall("iceCandidate", p));
    s.on("callEnded", (p) => this.#toCall("callEnded", p));

    s.on("userStatusChanged", (p) => this.#emit("userStatusChanged", p));
    s.on("messageDelivered", (p) => this.#receipt(() => this.#emit("messageDelivered", p)));
    s.on("messagesRead", (p) =>
      this.#receipt(() => {
        // This user read on another device: the counts there moved.
        if (p.conversationId && this.#user && p.by === this.#user.id && this.#conversations.has(p.conversationId)) {
          void this.#refreshConversation(p.conversationId).catch(() => {});
        }
        this.#emit("messagesRead", p);
      }),
    );
    s.on("notification", (p) => {
      if (p?.notification?.id) this.#notify(p.notification, "live");
    });
    s.on("notificationsRead", (p) => this.#emit("notificationsRead", p));
    s.on("testMessage", (p) => this.#emit("testMessage", p));
    s.on("uploadProgress", (p) => {
      if (p?.uploadId && p.conversationId && typeof p.size === "number" && typeof p.offset === "number") {
        this.#uploadProgress(p);
      }
    });
  }

  /**
   * The welcome list (after `authenticated`, and on `emitOnlineUsers`) replaces the map; a page
   * someone asked for without an ack (it has no `scope`) is not about this socket's watch.
   */
  #welcome(payload: OnlineUsersPayload | undefined): void {
    if (!payload || !("scope" in payload) || !Array.isArray(payload.users)) return;
    const online = new Map(payload.users.map((u) => [u.userId, u]));
    if (this.#rewatching && payload.scope === "watched") {
      // The list being sent again is not in this welcome yet; its answer settles those users.
      for (const userId of this.#watched) {
        const known = this.#online.get(userId);
        if (known && !online.has(userId)) online.set(userId, known);
      }
    }
    this.#scope = payload.scope;
    this.#online = online;
    this.#emit("presence", this.#online);
  }

  #clearPeerTyping(): void {
    for (const [userId, timer] of this.#typingFrom) {
      clearTimeout(timer);
      this.#emit("userTyping", { userId, isTyping: false });
    }
    this.#typingFrom.clear();
  }

  /** First connection without a `since`: the cursor starts at the server's clock. */
  async #startCursor(): Promise<void> {
    // The client's clock at once, so a drop before the ping's answer still leaves a cursor; then
    // the server's clock, which is the one message ids are made from.
    const provisional = uuidv7Floor(Date.now());
    this.#cursor = provisional;
    try {
      const pong = await this.#request("ping", { ts: Date.now() });
      const serverTime = pong?.ok ? Date.parse(pong.serverTime) : Number.NaN;
      if (this.#cursor === provisional && Number.isFinite(serverTime)) {
        this.#cursor = uuidv7Floor(serverTime);
      }
    } catch {
      // The client's clock will do.
    }
  }

  /** Notifications are told once each (their ids share the seen set with messages). */
  #notify(notification: Notification, source: DeliveryInfo["source"]): void {
    if (!this.#remember(notification.id)) return;
    this.#emit("notification", notification, { source });
  }

  /** Records an id as delivered; false when it already was. */
  #remember(id: Id): boolean {
    if (this.#seen.has(id)) return false;
    this.#seen.add(id);
    this.#seenOrder.push(id);
    if (this.#seenOrder.length > SEEN_LIMIT) {
      for (const old of this.#seenOrder.splice(0, this.#seenOrder.length - SEEN_LIMIT)) {
        this.#seen.delete(old);
      }
    }
    return true;
  }

  /** Receipts wait behind a running catch-up, after the messages they are about. */
  #receipt(emit: () => void): void {
    if (this.#buffering) this.#pendingReceipts.push(emit);
    else emit();
  }

  /** Live and acked messages go through here; queued while a catch-up is running. */
  #deliver(message: Message, source: DeliveryInfo["source"]): void {
    if (this.#buffering) this.#pending.push({ message, source });
    else this.#dispatch(message, source);
  }

  #dispatch(message: Message, source: DeliveryInfo["source"]): void {
    if (!this.#remember(message.id)) return;
    // An upload a message attaches is over, whatever its last progress said.
    for (const attachment of message.attachments ?? []) this.#dropUpload(attachment.id);
    if (this.#cursor === null || message.id > this.#cursor) this.#cursor = message.id;
    const mine = this.#user !== null && message.from === this.#user.id;
    this.#count(message, mine);
    if (mine) this.#emit("messageSent", message, { source });
    else this.#emit("newMessage", message, { source });
  }

  /**
   * A new message in a known conversation: its last message, and the counts when from others.
   * The first message of a direct conversation the map does not have yet brings it in.
   */
  #count(message: Message, mine: boolean): void {
    const conversation = this.#conversations.get(message.conversationId);
    if (!conversation) {
      if (this.#conversationsLoaded) void this.#join(message.conversationId);
      return;
    }
    const updated = { ...conversation, lastMessage: message };
    if (!mine) {
      updated.unreadCount += 1;
      if (this.#user && message.mentions.includes(this.#user.id)) updated.mentionCount += 1;
    }
    this.#keep(updated);
  }

  /** The new state of a message the app may hold: an edit, or any change `sync` caught up. */
  #updated(message: Message, source: DeliveryInfo["source"]): void {
    this.#patchLastMessage(message.conversationId, message.id, message);
    this.#emit("messageUpdated", message, { source });
    if (message.deletedAt) {
      const payload = { messageId: message.id, conversationId: message.conversationId, deletedAt: message.deletedAt };
      this.#deleted(payload, source);
    }
  }

  #deleted(payload: MessageDeletedPayload, source: DeliveryInfo["source"]): void {
    const tombstone = { content: "", mentions: [], attachments: [], reactions: [], deletedAt: payload.deletedAt };
    const conversation = this.#conversations.get(payload.conversationId);
    this.#patchLastMessage(payload.conversationId, payload.messageId, tombstone);
    // An unread message that is deleted no longer counts: the server has the new counts.
    if (conversation && conversation.unreadCount > 0) {
      void this.#refreshConversation(payload.conversationId).catch(() => {});
    }
    this.#emit("messageDeleted", payload, { source });
  }

  /** When `messageId` is a kept conversation's last message, it takes `change`. */
  #patchLastMessage(conversationId: Id, messageId: Id, change: Partial<Message>): void {
    const conversation = this.#conversations.get(conversationId);
    if (!conversation && this.#joining.has(conversationId)) this.#joining.set(conversationId, true);
    if (conversation?.lastMessage?.id !== messageId) return;
    this.#keep({ ...conversation, lastMessage: { ...conversation.lastMessage, ...change } });
  }

  #keep(conversation: Conversation): Conversation {
    this.#conversations.set(conversation.id, conversation);
    this.#emit("conversations", this.#conversations);
    return conversation;
  }

  #forget(id: Id): void {
    if (this.#conversations.delete(id)) this.#emit("conversations", this.#conversations);
  }

  async #refreshConversation(id: Id): Promise<void> {
    if (this.#conversations.has(id)) await this.#fetchConversation(id);
  }

  /** Brings a conversation the map lacks into it, with everything that came while fetching. */
  async #join(id: Id): Promise<void> {
    if (this.#joining.has(id)) {
      this.#joining.set(id, true);
      return;
    }
    try {
      do {
        this.#joining.set(id, false);
        await this.#fetchConversation(id);
      } while (this.#joining.get(id));
    } catch {
      // The next message tries again.
    } finally {
      this.#joining.delete(id);
    }
  }

  async #fetchConversation(id: Id): Promise<Conversation> {
    const fresh = await this.#rest<{ conversation: Conversation }>("GET", `/api/conversations/${id}`);
    return this.#keep(fresh.conversation);
  }

  /** A REST call with this client's token; rejects with the server's error code. */
  async #rest<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const token = this.#token ?? (await this.#currentToken());
    const res = await fetch(`${this.#url}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 204) return undefined as T;
    const answer = (await res.json().catch(() => null)) as (T & object) | { error?: { code: string; message: string; fields?: Record<string, string> } } | null;
    if (!res.ok || answer === null || (typeof answer === "object" && "error" in answer && answer.error)) {
      const error = answer && "error" in answer ? answer.error : undefined;
      throw new RealtimeError(error?.code ?? `http_${res.status}`, error?.message ?? `${method} ${path} answered ${res.status}`, error?.fields);
    }
    return answer as T;
  }

  /** Follows `sync` pages from the cursor, then lets the queued live messages through. */
  async #runSync(): Promise<void> {
    if (this.#syncRunning) {
      this.#syncAgain = true;
      return;
    }
    this.#syncRunning = true;
    this.#buffering = true;
    let messages = 0;
    let changed = 0;
    let pages = 0;
    try {
      do {
        this.#syncAgain = false;
        let since = this.#cursor;
        let newest = since;
        // The changes to messages the app already has are those after the first `since`, paged
        // with `changedAfter`; later pages' changes are to messages this catch-up has just
        // delivered as they are now, so they are passed over.
        let changes = true;
        let changedAfter: string | null = null;
        for (;;) {
          const reply: Ack<SyncAck> = await this.#request("sync", {
            since,
            limit: this.#options.syncPageSize,
            ...(changedAfter ? { changedAfter } : {}),
          });
          if (!reply.ok) throw new RealtimeError(reply.error.code, reply.error.message);
          pages += 1;
          for (const message of reply.messages) {
            if (!this.#seen.has(message.id)) messages += 1;
            this.#dispatch(message, "sync");
            // Already-seen messages move the cursor too, so the next page starts after them.
            if (this.#cursor === null || message.id > this.#cursor) this.#cursor = message.id;
          }
          // This server also answers the notifications after `since` (their ids are
          // time-ordered like messages'), in a list of its own with its own `hasMore`.
          const notifications = reply.notifications ?? [];
          for (const notification of notifications) this.#notify(notification, "sync");
          const lastMessage = reply.messages.at(-1)?.id ?? null;
          const lastNotification = notifications.at(-1)?.id ?? null;
          for (const id of [lastMessage, lastNotification]) {
            if (id !== null && (newest === null || id > newest)) newest = id;
          }
          if (changes) {
            for (const message of reply.changed ?? []) {
              changed += 1;
              this.#updated(message, "sync");
            }
            if (reply.hasMoreChanged && reply.changedCursor) {
              // The same `since` again: its messages repeat and are dropped as seen.
              changedAfter = reply.changedCursor;
              continue;
            }
            changes = false;
            changedAfter = null;
          }
          // The next page starts where the first truncated list stopped; the other list's
          // repeats are dropped as already seen.
          const cuts: Id[] = [];
          if (reply.hasMore && lastMessage) cuts.push(lastMessage);
          if (reply.hasMoreNotifications && lastNotification) cuts.push(lastNotification);
          if (cuts.length === 0) break;
          since = cuts.sort()[0]!;
        }
        if (newest !== null && (this.#cursor === null || newest > this.#cursor)) this.#cursor = newest;
      } while (this.#syncAgain);
    } catch (err) {
      this.#syncRunning = false;
      // The queue stays: the next catch-up (after the reconnect) covers those messages too.
      this.#emit("error", new Error(`sync failed: ${(err as Error).message}`));
      if (this.socket.connected && !this.#stopped) {
        setTimeout(() => {
          if (this.#ready) void this.#runSync();
        }, 1_000);
      }
      return;
    }
    this.#syncRunning = false;
    this.#buffering = false;
    const queued = this.#pending.splice(0).sort((a, b) =>
      a.message.id < b.message.id ? -1 : a.message.id > b.message.id ? 1 : 0,
    );
    for (const { message, source } of queued) this.#dispatch(message, source);
    for (const emit of this.#pendingReceipts.splice(0)) emit();
    this.#emit("synced", { messages, changed, pages });
  }
}
