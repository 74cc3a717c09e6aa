// The wire contract of the CraftCode Realtime main Socket.IO server (SPEC §2, §5, §10, §11): every
// object, event payload and acknowledgement, as the server sends them. Field names are the
// server's (camelCase); ids are UUIDv7 strings; times are RFC 3339 UTC strings with milliseconds.

/** A UUIDv7 string (time-ordered: a later id compares greater as a string). */
export type Id = string;
/** An RFC 3339 UTC time with milliseconds, e.g. `"2026-11-25T18:30:53.123Z"`. */
export type Timestamp = string;

import type { CallEndReason, CallObject } from "./calls.js";
export type { CallEndReason, CallObject } from "./calls.js";

/** An SDP offer or answer as the socket carries it. */
export interface SessionDescription {
  type: "offer" | "answer";
  sdp: string;
}
/** An `RTCIceCandidateInit`. */
export interface IceCandidateInit {
  candidate: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  usernameFragment?: string | null;
}

/** The public user object (SPEC §2). */
export interface User {
  id: Id;
  email: string;
  name: string;
  avatarUrl: string | null;
  isAdmin: boolean;
  isActive: boolean;
  createdAt: Timestamp;
  updatedAt: Timestamp;
}

/** What other users see of a user (`GET /api/users/directory`, conversations). */
export interface DirectoryEntry {
  id: Id;
  name: string;
  avatarUrl: string | null;
  online: boolean;
}

/** What a system message records (SPEC §10). */
export interface SystemEvent {
  type:
    | "created"
    | "renamed"
    | "membersAdded"
    | "memberRemoved"
    | "memberLeft"
    | "roleChanged"
    | "missedCall"
    | "call";
  by: Id;
  userIds: Id[];
  title: string | null;
  /** The call a `missedCall` or `call` message records (SPEC §14). */
  call?: { id: Id; media: "audio" | "video"; durationSecs?: number };
}

/** One emoji on a message, with who reacted with it (SPEC §11). */
export interface Reaction {
  /** One emoji, or a shortcode such as `:party_parrot:`. */
  emoji: string;
  count: number;
  userIds: Id[];
}

/**
 * A file attached to a message (SPEC §12). `url` and `thumbnailUrl` are server paths
 * (`/api/attachments/{id}`, `…/thumbnail`): resolve them with the client's `attachmentUrl()`, and
 * fetch them with the same authentication as the API (`fetchAttachment()` does).
 */
export interface Attachment {
  /** The upload's id (the one given in `attachmentIds`). */
  id: Id;
  filename: string;
  size: number;
  /** What the bytes are, as the server sniffed them (not what the uploader claimed). */
  contentType: string;
  /** Images (PNG, JPEG, GIF, WebP) only; null for anything else. */
  width: number | null;
  height: number | null;
  url: string;
  /** At most 320 px on its long side; null for anything but a decodable image. */
  thumbnailUrl: string | null;
}

/** A message of a direct or group conversation (SPEC §2). */
export interface Message {
  id: Id;
  conversationId: Id;
  kind: "text" | "system";
  from: Id;
  /** The recipient in a direct conversation; null in a group. */
  to: Id | null;
  content: string;
  clientId: string | null;
  /** The message this one answers, in the same conversation; kept when that one is deleted. */
  replyToId: Id | null;
  mentions: Id[];
  /** Empty when none (and on a deleted message). */
  attachments: Attachment[];
  /** In order of first use; empty when none (and on a deleted message). */
  reactions: Reaction[];
  system: SystemEvent | null;
  createdAt: Timestamp;
  editedAt: Timestamp | null;
  /** Set on a tombstone: `content` is `""`, `mentions`, `attachments` and `reactions` empty. */
  deletedAt: Timestamp | null;
  /** Direct messages only. */
  deliveredAt: Timestamp | null;
  readAt: Timestamp | null;
}

/** One member of a conversation (SPEC §10). */
export interface Member {
  userId: Id;
  name: string;
  avatarUrl: string | null;
  role: "owner" | "admin" | "member";
  joinedAt: Timestamp;
  lastReadMessageId: Id | null;
  lastReadAt: Timestamp | null;
  online: boolean;
}

/** A conversation as its member sees it (SPEC §2, §10). */
export interface Conversation {
  id: Id;
  kind: "direct" | "group";
  title: string | null;
  /** The other side of a direct conversation. */
  user: DirectoryEntry | null;
  memberCount: number;
  /** In `GET /api/conversations/{id}` and after changes made through this client. */
  members?: Member[];
  lastMessage: Message | null;
  unreadCount: number;
  mentionCount: number;
  muted: boolean;
  createdAt: Timestamp;
  updatedAt: Timestamp;
}

/** A notification (SPEC §2). */
export interface Notification {
  id: Id;
  userId: Id;
  kind: string;
  title: string;
  body: string;
  data: unknown;
  createdAt: Timestamp;
  readAt: Timestamp | null;
}

/** One online user as presence events carry it. */
export interface OnlineUser {
  userId: Id;
  name: string;
}

/**
 * Which users a socket hears about (SPEC §5 "Presence"): `all` when the cluster had at most
 * `PRESENCE_BROADCAST_MAX` users online as it authenticated, else `watched` — its user's
 * conversation partners plus its last `watchPresence` list.
 */
export type PresenceScope = "all" | "watched";

// ---------------------------------------------------------------------------------------------
// Acknowledgements

/** The error half of every acknowledgement: `{ok: false, error: {code, message}}`. */
export interface AckError {
  ok: false;
  error: { code: ErrorCode | (string & {}); message: string; fields?: Record<string, string> };
}

/** `{ok: true, ...data}` or the error. */
export type Ack<T> = ({ ok: true } & T) | AckError;

/** Error codes a client can meet on the socket (SPEC §2, §3, §5, §9). */
export type ErrorCode =
  | "invalid_payload"
  | "unauthenticated"
  | "auth_timeout"
  | "invalid_token"
  | "token_expired"
  | "session_revoked"
  | "account_disabled"
  | "too_many_connections"
  | "origin_not_allowed"
  | "rate_limited"
  | "user_not_found"
  | "recipient_disabled"
  | "forbidden"
  | "not_found"
  | "conversation_not_found"
  | "invalid_mention"
  | "group_full"
  | "owner_must_transfer"
  | "message_not_found"
  | "edit_window_passed"
  | "invalid_emoji"
  | "too_many_reactions"
  | "invalid_reply"
  | "too_many_subscriptions"
  | "invalid_attachment"
  | "attachment_not_found"
  | "upload_not_found"
  | "payload_too_large"
  | "call_not_found"
  | "call_not_ringing"
  | "user_busy"
  | "unavailable";

/** The reason codes of a refused handshake or a failed `authenticate`. */
export type AuthErrorCode =
  | "invalid_token"
  | "token_expired"
  | "session_revoked"
  | "account_disabled"
  | "auth_timeout"
  | "unauthenticated";

export interface AuthenticateAck {
  user: User;
  sessionId: Id;
}
export interface SendMessageAck {
  message: Message;
  delivered: boolean;
}
/** One page of all online users, ordered by user id: the ack of `getOnlineUsers`. */
export interface OnlineUsersPage {
  users: OnlineUser[];
  /** Online users in the whole cluster. */
  total: number;
  /** The `cursor` of the next page; null on the last one. */
  nextCursor: string | null;
}
export type OnlineUsersAck = OnlineUsersPage;
/** The ack of `watchPresence`: the state of each listed user that exists, the caller left out. */
export interface WatchPresenceAck {
  online: OnlineUser[];
  offline: Id[];
}
export interface MarkReadAck {
  count: number;
}
export interface SyncAck {
  messages: Message[];
  hasMore: boolean;
  /** Sent by this server beside the contract's fields: notifications after `since`. */
  notifications?: Notification[];
  hasMoreNotifications?: boolean;
  /** Messages at or before `since` edited, deleted or reacted to after it, oldest change first. */
  changed: Message[];
  hasMoreChanged: boolean;
  /** When `hasMoreChanged`: the `changedAfter` of the next page (with the same `since`). */
  changedCursor: string | null;
}
export interface EditMessageAck {
  message: Message;
}
export interface ReactAck {
  reactions: Reaction[];
}
export interface PongPayload {
  ts: unknown;
  serverTime: Timestamp;
}

// ---------------------------------------------------------------------------------------------
// Client → server events (SPEC §5). Every one may take an ack.

export interface AuthenticatePayload {
  token: string;
}
/** A user (their direct conversation) or a conversation by id. */
export type Destination = { to: Id } | { conversationId: Id };
export type SendMessagePayload = Destination & {
  content: string;
  clientId?: string;
  mentions?: Id[];
  replyToId?: Id;
  /** 1–10 finished uploads of the sender to this conversation, not attached before (SPEC §12). */
  attachmentIds?: Id[];
};
export type TypingPayload = Destination & { isTyping: boolean };
export type MarkReadPayload = ({ userId: Id } | { conversationId: Id }) & { upTo: Id };
export interface SyncPayload {
  since: Id | null;
  limit?: number;
  /** The `changedCursor` of the previous page with this `since`. */
  changedAfter?: string;
}
export interface EditMessagePayload {
  messageId: Id;
  content: string;
}
export interface DeleteMessagePayload {
  messageId: Id;
}
export interface ReactPayload {
  messageId: Id;
  emoji: string;
  /** `true` adds this user's reaction, `false` takes it back; both are idempotent. */
  add: boolean;
}
export interface PingPayload {
  ts?: unknown;
}
export interface GetOnlineUsersPayload {
  /** The previous page's `nextCursor`; absent for the first page. */
  cursor?: string;
  /** Users per page, 1–500; the server's default is 100. */
  limit?: number;
}
export interface WatchPresencePayload {
  /** Replaces this socket's explicit watch list (at most `PRESENCE_WATCH_MAX`, default 500). */
  userIds: Id[];
}

/** What the client emits, with the ack each event answers (socket.io-client typing). */
export interface ClientToServerEvents {
  authenticate: (payload: AuthenticatePayload, ack: (reply: Ack<AuthenticateAck>) => void) => void;
  sendMessage: (payload: SendMessagePayload, ack: (reply: Ack<SendMessageAck>) => void) => void;
  typing: (payload: TypingPayload, ack?: (reply: Ack<object>) => void) => void;
  getOnlineUsers: (payload: GetOnlineUsersPayload, ack: (reply: Ack<OnlineUsersPage>) => void) => void;
  watchPresence: (payload: WatchPresencePayload, ack: (reply: Ack<WatchPresenceAck>) => void) => void;
  markRead: (payload: MarkReadPayload, ack: (reply: Ack<MarkReadAck>) => void) => void;
  sync: (payload: SyncPayload, ack: (reply: Ack<SyncAck>) => void) => void;
  editMessage: (payload: EditMessagePayload, ack: (reply: Ack<EditMessageAck>) => void) => void;
  deleteMessage: (payload: DeleteMessagePayload, ack: (reply: Ack<object>) => void) => void;
  react: (payload: ReactPayload, ack: (reply: Ack<ReactAck>) => void) => void;
  startCall: (payload: { to: Id; media: "audio" | "video"; offer: SessionDescription }, ack: (reply: Ack<{ call: CallObject }>) => void) => void;
  acceptCall: (payload: { callId: Id; answer: SessionDescription }, ack: (reply: Ack<{ call: CallObject }>) => void) => void;
  declineCall: (payload: { callId: Id }, ack: (reply: Ack<object>) => void) => void;
  iceCandidate: (payload: { callId: Id; candidates: IceCandidateInit[] }, ack: (reply: Ack<object>) => void) => void;
  endCall: (payload: { callId: Id }, ack: (reply: Ack<object>) => void) => void;
  ping: (payload: PingPayload, ack: (reply: Ack<PongPayload>) => void) => void;
}

// ---------------------------------------------------------------------------------------------
// Server → client events (SPEC §5)

export interface AuthenticatedPayload {
  user: User;
  sessionId: Id;
  expiresAt: Timestamp;
}
export interface AuthErrorPayload {
  code: AuthErrorCode | (string & {});
  message: string;
}
export interface TokenUpdatedPayload {
  token: string;
  expiresAt: Timestamp;
  user: User;
}
export interface UserStatusChangedPayload {
  userId: Id;
  isActive: boolean;
  isAdmin: boolean;
}
export interface NewMessagePayload {
  message: Message;
}
export interface MessageSentPayload {
  message: Message;
}
/** An edit: the whole message as it is now (SPEC §11). */
export interface MessageUpdatedPayload {
  message: Message;
}
export interface MessageDeletedPayload {
  messageId: Id;
  conversationId: Id;
  deletedAt: Timestamp;
}
export interface ReactionsChangedPayload {
  messageId: Id;
  conversationId: Id;
  reactions: Reaction[];
}
export interface MessageDeliveredPayload {
  messageId: Id;
  to: Id;
  deliveredAt: Timestamp;
}
export interface MessagesReadPayload {
  conversationId: Id | null;
  by: Id;
  upTo: Id;
  readAt: Timestamp;
}
export interface UserTypingPayload {
  userId: Id;
  isTyping: boolean;
  /** Null when typing to someone not written to yet. */
  conversationId?: Id | null;
}
export interface ConversationUpdatedPayload {
  conversation: Conversation;
  change: { type: SystemEvent["type"]; by: Id; userIds: Id[] };
}
export interface ConversationRemovedPayload {
  conversationId: Id;
  reason: "removed" | "left" | "deleted";
}
/**
 * The `getOnlineUsers` a socket gets right after `authenticated` and on the admin action
 * `emitOnlineUsers`: the online users it watches (everybody with scope `all`).
 */
export interface OnlineUsersWelcome {
  users: OnlineUser[];
  /** Online users in the whole cluster. */
  total: number;
  scope: PresenceScope;
}
/**
 * The `getOnlineUsers` event: the welcome list (it has `scope`), or a page asked for without an
 * ack (it has `nextCursor` and no `scope`).
 */
export type OnlineUsersPayload = OnlineUsersWelcome | OnlineUsersPage;
export interface PresenceChangedPayload {
  online: OnlineUser[];
  offline: Id[];
}
export interface NotificationPayload {
  notification: Notification;
}
export type NotificationsReadPayload = { ids: Id[] } | { all: true };
export interface TestMessagePayload {
  message: string;
  action: string;
  sentAt: Timestamp;
}
/** Why a session ended: `logout`, `session_revoked`, `account_disabled`, `account_deleted`. */
export type ForceLogoutReason = "logout" | "session_revoked" | "account_disabled" | "account_deleted";
export interface ForceLogoutPayload {
  reason: ForceLogoutReason | (string & {});
}
/**
 * How far an upload to one of this user's conversations is (SPEC §12): sent to the uploader's
 * sockets and the conversation's members at most once a second per upload while bytes arrive, and
 * once more, with `offset === size`, when it completes.
 */
export interface UploadProgressPayload {
  uploadId: Id;
  conversationId: Id;
  /** The uploader's user id. */
  from: Id;
  filename: string;
  size: number;
  offset: number;
}
export interface ServerShutdownPayload {
  reason: string;
  reconnectAfterMs: number;
}

/** What the server emits (socket.io-client typing). */
export interface ServerToClientEvents {
  authenticated: (payload: AuthenticatedPayload) => void;
  authError: (payload: AuthErrorPayload) => void;
  tokenUpdated: (payload: TokenUpdatedPayload) => void;
  userStatusChanged: (payload: UserStatusChangedPayload) => void;
  /** Acking it marks the message delivered. */
  newMessage: (payload: NewMessagePayload, ack?: () => void) => void;
  messageSent: (payload: MessageSentPayload) => void;
  messageUpdated: (payload: MessageUpdatedPayload) => void;
  messageDeleted: (payload: MessageDeletedPayload) => void;
  reactionsChanged: (payload: ReactionsChangedPayload) => void;
  incomingCall: (payload: { call: CallObject; offer: SessionDescription }) => void;
  callAccepted: (payload: { callId: Id; answer: SessionDescription }) => void;
  callEnded: (payload: { callId: Id; reason: CallEndReason }) => void;
  iceCandidate: (payload: { callId: Id; candidates: IceCandidateInit[] }) => void;
  messageDelivered: (payload: MessageDeliveredPayload) => void;
  messagesRead: (payload: MessagesReadPayload) => void;
  userTyping: (payload: UserTypingPayload) => void;
  conversationUpdated: (payload: ConversationUpdatedPayload) => void;
  conversationRemoved: (payload: ConversationRemovedPayload) => void;
  getOnlineUsers: (payload: OnlineUsersPayload) => void;
  presenceChanged: (payload: PresenceChangedPayload) => void;
  notification: (payload: NotificationPayload) => void;
  notificationsRead: (payload: NotificationsReadPayload) => void;
  testMessage: (payload: TestMessagePayload) => void;
  pong: (payload: PongPayload) => void;
  force_logout: (payload: ForceLogoutPayload) => void;
  server_shutdown: (payload: ServerShutdownPayload) => void;
  uploadProgress: (payload: UploadProgressPayload) => void;
}

// ---------------------------------------------------------------------------------------------
// REST shapes a web app needs next to the socket (SPEC §4)

/** The answer of `POST /api/auth/login` and `POST /api/auth/register`. */
export interface LoginResponse {
  token: string;
  expiresAt: Timestamp;
  refreshToken: string;
  user: User;
  session: { id: Id } & Record<string, unknown>;
  socketReady: boolean;
  socket: { url: string; path: string; namespacesPath: string };
}

/** A REST error body. */
export interface RestErrorBody {
  error: { code: string; message: string; fields?: Record<string, string> };
}
