// A minimal chat on @craftcode/realtime-client: sign in, the people list with live presence (the
// client's presence map, with the people shown watched through `watchPresence`: on a busy server
// a socket only hears about the users it watches), a
// conversation with a typing indicator and read receipts, groups (create, add a member, chat,
// "read by N"), replies, edits, deletions and reactions in both, files attached to messages
// (uploaded with the client's `upload()`, with a progress bar on the sender's page and one on the
// others' pages while the file comes in; pictures shown as thumbnails, other files as download
// links, both fetched with the token), and a banner while the connection is down. The page talks
// to its own origin; Vite forwards /api (REST, the socket and the uploads) to craftcode.

import { useEffect, useMemo, useRef, useState, type FormEvent, type ReactNode } from "react";

import {
  connect,
  login,
  type Attachment,
  type Call,
  type Conversation as ConversationObject,
  type ConnectionStatus,
  type DirectoryEntry,
  type ForceLogoutPayload,
  type Message,
  type PresenceScope,
  type RealtimeClient,
  type UploadProgressPayload,
  type User,
} from "@craftcode/realtime-client";

type Session = { token: string; user: User };

/** A REST call with the current token. */
async function api<T>(token: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [ended, setEnded] = useState<string | null>(null);
  if (!session) {
    return (
      <SignIn
        notice={ended}
        onSignedIn={(s) => {
          setEnded(null);
          setSession(s);
        }}
      />
    );
  }
  return (
    <Chat
      session={session}
      onSignedOut={(reason) => {
        setEnded(reason);
        setSession(null);
      }}
    />
  );
}

function SignIn({ notice, onSignedIn }: { notice: string | null; onSignedIn: (s: Session) => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const res = await login({ url: "", email, password });
      onSignedIn({ token: res.token, user: res.user });
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <form className="sign-in" onSubmit={submit}>
      <h1>CraftCode chat</h1>
      {notice && <p data-testid="signed-out-notice">Signed out: {notice}</p>}
      <input data-testid="email" type="email" placeholder="email" value={email} onChange={(e) => setEmail(e.target.value)} />
      <input data-testid="password" type="password" placeholder="password" value={password} onChange={(e) => setPassword(e.target.value)} />
      <button data-testid="sign-in" type="submit">Sign in</button>
      {error && <p className="error" data-testid="sign-in-error">{error}</p>}
    </form>
  );
}

/** Messages by the other user's id, each list sorted by id (ids are time-ordered). */
type Conversations = Record<string, Message[]>;

function merge(list: Message[] | undefined, incoming: Message[]): Message[] {
  const byId = new Map((list ?? []).map((m) => [m.id, m]));
  for (const m of incoming) byId.set(m.id, { ...byId.get(m.id), ...m });
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function Chat({ session, onSignedOut }: { session: Session; onSignedOut: (reason: string) => void }) {
  const me = session.user;
  const [client, setClient] = useState<RealtimeClient | null>(null);
  const [status, setStatus] = useState<ConnectionStatus>("connecting");
  const [online, setOnline] = useState<Set<string>>(new Set());
  const [presenceScope, setPresenceScope] = useState<PresenceScope | null>(null);
  const [people, setPeople] = useState<DirectoryEntry[]>([]);
  const [conversations, setConversations] = useState<Conversations>({});
  const [typing, setTyping] = useState<Set<string>>(new Set());
  /** Per other user, the newest of my messages they have read (a watermark: ids are ordered). */
  const [readUpTo, setReadUpTo] = useState<Record<string, string>>({});
  const [selected, setSelected] = useState<string | null>(null);
  const [groups, setGroups] = useState<ConversationObject[]>([]);
  const [groupMessages, setGroupMessages] = useState<Conversations>({});
  const [selectedGroup, setSelectedGroup] = useState<string | null>(null);
  /** Who types in which group: conversation id → user ids. */
  const [groupTyping, setGroupTyping] = useState<Record<string, Set<string>>>({});
  /** Bumped on every read receipt of a group, so an open group asks who has read again. */
  const [groupReads, setGroupReads] = useState(0);
  const tokenRef = useRef(session.token);
  /** The call of this page, ringing, active or just ended. */
  const [call, setCall] = useState<Call | null>(null);
  /** Files others (or my other devices) are sending to my conversations, as they come in. */
  const [incoming, setIncoming] = useState<UploadProgressPayload[]>([]);

  const addGroupMessages = (group: string, messages: Message[]) =>
    setGroupMessages((all) => ({ ...all, [group]: merge(all[group], messages) }));
  const addMessages = (peer: string, messages: Message[]) =>
    setConversations((all) => ({ ...all, [peer]: merge(all[peer], messages) }));
  const patchMessages = (peer: string, patch: (m: Message) => Message | null) =>
    setConversations((all) => {
      const list = all[peer];
      if (!list) return all;
      return { ...all, [peer]: list.map((m) => patch(m) ?? m) };
    });
  /** Edits, deletions and reactions: the message takes `patch` wherever it is kept. */
  const patchMessage = (id: string, patch: (m: Message) => Message) => {
    const apply = (all: Conversations) => {
      const key = Object.keys(all).find((k) => all[k].some((m) => m.id === id));
      return key === undefined ? all : { ...all, [key]: all[key].map((m) => (m.id === id ? patch(m) : m)) };
    };
    setConversations(apply);
    setGroupMessages(apply);
  };

  useEffect(() => {
    // `?relay` sends call media through the TURN server only (to try one out).
    const relay = new URLSearchParams(window.location.search).has("relay");
    const c = connect({
      url: window.location.origin,
      token: session.token,
      ...(relay ? { rtcConfiguration: { iceTransportPolicy: "relay" as const } } : {}),
    });
    const offs = [
      c.on("status", setStatus),
      c.on("presence", (map) => {
        setOnline(new Set(map.keys()));
        setPresenceScope(c.scope);
      }),
      c.on("tokenUpdated", (p) => (tokenRef.current = p.token)),
      // Group messages have no `to`; they are kept by conversation.
      c.on("newMessage", (m) => (m.to === null ? addGroupMessages(m.conversationId, [m]) : addMessages(m.from, [m]))),
      c.on("messageSent", (m) => (m.to === null ? addGroupMessages(m.conversationId, [m]) : addMessages(m.to, [m]))),
      // The whole message after an edit, or after whatever changed while this page was away.
      c.on("messageUpdated", (m) => patchMessage(m.id, () => m)),
      c.on("messageDeleted", (p) =>
        patchMessage(p.messageId, (m) => ({ ...m, content: "", mentions: [], attachments: [], reactions: [], deletedAt: p.deletedAt })),
      ),
      c.on("reactionsChanged", (p) => patchMessage(p.messageId, (m) => ({ ...m, reactions: p.reactions }))),
      c.on("conversations", (map) => setGroups([...map.values()].filter((g) => g.kind === "group"))),
      // The client's live map of uploads under way that this page is not making itself.
      c.on("uploads", (map) => setIncoming([...map.values()])),
      c.on("conversationRemoved", (p) => setSelectedGroup((open) => (open === p.conversationId ? null : open))),
      c.on("messageDelivered", (p) =>
        patchMessages(p.to, (m) => (m.id === p.messageId ? { ...m, deliveredAt: p.deliveredAt } : null)),
      ),
      c.on("messagesRead", (p) => {
        setReadUpTo((all) => (all[p.by] && all[p.by] >= p.upTo ? all : { ...all, [p.by]: p.upTo }));
        setGroupReads((n) => n + 1);
      }),
      c.on("userTyping", (p) => {
        const inGroup = p.conversationId && c.conversations.get(p.conversationId)?.kind === "group";
        if (inGroup) {
          setGroupTyping((all) => {
            const next = new Set(all[p.conversationId!] ?? []);
            if (p.isTyping) next.add(p.userId);
            else next.delete(p.userId);
            return { ...all, [p.conversationId!]: next };
          });
          return;
        }
        setTyping((set) => {
          const next = new Set(set);
          if (p.isTyping) next.add(p.userId);
          else next.delete(p.userId);
          return next;
        });
      }),
      c.on("incomingCall", (incoming) => setCall((current) => (current && current.state !== "ended" ? current : incoming))),
      c.on("force_logout", (p: ForceLogoutPayload) => onSignedOut(p.reason)),
      c.on("authError", (p) => onSignedOut(p.code)),
    ];
    setClient(c);
    // A conversation to open: from a notification's link (`?conversation=`), or from the
    // service worker when a notification is clicked while this page is open.
    const open = (id: string | null) => {
      const conversation = id ? c.conversations.get(id) : undefined;
      if (conversation?.kind === "group") {
        setSelected(null);
        setSelectedGroup(conversation.id);
      } else if (conversation?.user) {
        setSelectedGroup(null);
        setSelected(conversation.user.id);
      }
    };
    const fromWorker = (e: MessageEvent) => {
      if (e.data?.type === "openConversation") open(e.data.conversationId);
    };
    navigator.serviceWorker?.addEventListener("message", fromWorker);
    offs.push(() => navigator.serviceWorker?.removeEventListener("message", fromWorker));
    c.ready()
      .then(() => c.loadConversations())
      .then(() => open(new URLSearchParams(window.location.search).get("conversation")))
      .catch(() => {});
    api<{ users: DirectoryEntry[] }>(session.token, "GET", "/api/users/directory?limit=100")
      .then((body) => setPeople(body.users.filter((u) => u.id !== me.id)))
      .catch(() => {});
    return () => {
      for (const off of offs) off();
      c.close();
    };
    // One client per signed-in session.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [session.token]);

  // The people shown are watched: their dots stay live even when this socket does not hear about
  // everybody (scope "watched"). The client sends the list again after every reconnect.
  useEffect(() => {
    if (!client || people.length === 0) return;
    client.watchPresence(people.map((p) => p.id)).catch(() => {});
  }, [client, people]);

  // Opening a group loads its history (newest 50).
  useEffect(() => {
    if (!selectedGroup) return;
    api<{ messages: Message[] }>(tokenRef.current, "GET", `/api/conversations/${selectedGroup}/messages?limit=50`)
      .then((body) => addGroupMessages(selectedGroup, body.messages))
      .catch(() => {});
  }, [selectedGroup]);

  // Opening a conversation loads its history (newest 50).
  useEffect(() => {
    if (!selected) return;
    api<{ messages: Message[] }>(tokenRef.current, "GET", `/api/messages/${selected}?limit=50`)
      .then((body) => addMessages(selected, body.messages))
      .catch(() => {});
  }, [selected]);

  // An open conversation is read: mark the newest message from the other side.
  const messages = selected ? conversations[selected] ?? [] : [];
  const lastIncoming = [...messages].reverse().find((m) => m.from === selected);
  useEffect(() => {
    if (!client || !selected || !lastIncoming || lastIncoming.readAt || status !== "connected") return;
    const upTo = lastIncoming.id;
    client
      .markRead(selected, upTo)
      .then(() =>
        patchMessages(selected, (m) =>
          m.from === selected && m.id <= upTo && !m.readAt ? { ...m, readAt: new Date().toISOString() } : null,
        ),
      )
      .catch(() => {});
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, selected, lastIncoming?.id, lastIncoming?.readAt, status]);

  const signOut = async () => {
    try {
      await api(tokenRef.current, "POST", "/api/auth/logout", {});
    } finally {
      client?.close();
      onSignedOut("logout");
    }
  };

  const names = useMemo(() => new Map(people.map((p) => [p.id, p.name])), [people]);
  const peer = people.find((p) => p.id === selected);
  const group = groups.find((g) => g.id === selectedGroup);

  return (
    <>
      {status !== "connected" && (
        <div className={`banner ${status === "loggedOut" || status === "disconnected" ? "stopped" : ""}`} data-testid="connection-banner">
          {status === "connecting" ? "Connecting…" : status === "reconnecting" ? "Reconnecting…" : "Disconnected"}
        </div>
      )}
      <header>
        <span data-testid="me">{me.name}</span>
        {client && <PushToggle client={client} />}
        <button data-testid="sign-out" onClick={signOut}>Sign out</button>
      </header>
      {call && <CallPanel call={call} name={names.get(call.peer) ?? "Someone"} onClose={() => setCall(null)} />}
      <main>
        <aside data-testid="people" data-presence-scope={presenceScope ?? ""}>
          {people.map((p) => {
            const unread = (conversations[p.id] ?? []).filter((m) => m.from === p.id && !m.readAt).length;
            return (
              <button
                key={p.id}
                data-testid="person"
                data-user-id={p.id}
                data-online={online.has(p.id) ? "true" : "false"}
                className={p.id === selected ? "selected" : ""}
                onClick={() => {
                  setSelectedGroup(null);
                  setSelected(p.id);
                }}
              >
                <span className={`dot ${online.has(p.id) ? "online" : ""}`} />
                <span className="name">{p.name}</span>
                {unread > 0 && p.id !== selected && <span className="unread" data-testid="unread">{unread}</span>}
              </button>
            );
          })}
          <h2>Groups</h2>
          {groups.map((g) => (
            <button
              key={g.id}
              data-testid="group"
              data-group-id={g.id}
              className={g.id === selectedGroup ? "selected" : ""}
              onClick={() => {
                setSelected(null);
                setSelectedGroup(g.id);
              }}
            >
              <span className="name">{g.title}</span>
              {g.unreadCount > 0 && g.id !== selectedGroup && <span className="unread" data-testid="group-unread">{g.unreadCount}</span>}
            </button>
          ))}
          {client && <NewGroup client={client} people={people} onCreated={(g) => setSelectedGroup(g.id)} />}
        </aside>
        {group && client ? (
          <Group
            key={group.id}
            client={client}
            me={me}
            group={group}
            people={people}
            messages={groupMessages[group.id] ?? []}
            names={names}
            typing={[...(groupTyping[group.id] ?? [])].map((id) => names.get(id) ?? "Someone")}
            readsVersion={groupReads}
            token={tokenRef}
            incoming={incoming}
          />
        ) : peer && client ? (
          <Conversation
            key={peer.id}
            client={client}
            me={me}
            peer={peer}
            messages={messages}
            names={names}
            typing={typing.has(peer.id)}
            readUpTo={readUpTo[peer.id] ?? null}
            inCall={call !== null && call.state !== "ended"}
            onCall={setCall}
            incoming={incoming}
          />
        ) : (
          <p className="empty">Pick someone to talk to{names.size === 0 ? " (nobody else has signed up yet)" : ""}.</p>
        )}
      </main>
    </>
  );
}

function Conversation(props: {
  client: RealtimeClient;
  me: User;
  peer: DirectoryEntry;
  messages: Message[];
  names: Map<string, string>;
  typing: boolean;
  readUpTo: string | null;
  inCall: boolean;
  onCall: (call: Call) => void;
  incoming: UploadProgressPayload[];
}) {
  const { client, me, peer, messages, names, typing, readUpTo, inCall, onCall, incoming } = props;
  // A direct conversation exists from its first message: files can go once it does.
  const conversationId =
    messages.find((m) => m.conversationId)?.conversationId ??
    [...client.conversations.values()].find((c) => c.kind === "direct" && c.user?.id === peer.id)?.id ??
    null;
  const [callError, setCallError] = useState<string | null>(null);
  const place = async (media: "audio" | "video") => {
    setCallError(null);
    try {
      onCall(await client.call(peer.id, { media }));
    } catch (err) {
      setCallError((err as Error).message);
    }
  };
  const lastMine = [...messages].reverse().find((m) => m.from === me.id);
  const read = lastMine && (lastMine.readAt || (readUpTo !== null && lastMine.id <= readUpTo));
  const receipt = lastMine ? (read ? "Read" : lastMine.deliveredAt ? "Delivered" : "Sent") : null;

  return (
    <section className="conversation" data-testid="conversation" data-peer-id={peer.id}>
      <div className="call-buttons">
        <button data-testid="audio-call" disabled={inCall} onClick={() => place("audio")}>Audio call</button>
        <button data-testid="video-call" disabled={inCall} onClick={() => place("video")}>Video call</button>
        {callError && <span className="error" data-testid="call-error">{callError}</span>}
      </div>
      <Thread
        client={client}
        me={me}
        messages={messages}
        names={names}
        placeholder={`Message ${peer.name}`}
        conversationId={conversationId}
        incoming={incoming}
        send={(content, replyToId, attachmentIds) => client.sendMessage(peer.id, content, { replyToId, attachmentIds })}
        onTyping={(active) => (active ? client.typing(peer.id) : client.stopTyping(peer.id))}
        footer={receipt && <div className="receipt" data-testid="receipt">{receipt}</div>}
        typing={typing ? `${peer.name} is typing…` : ""}
      />
    </section>
  );
}

/** The reactions offered on every message; any reaction already there can be clicked too. */
const QUICK_REACTIONS = ["👍", "🎉"];

/**
 * A conversation's messages and composer, the same for direct and group conversations: each
 * message with what it replies to, "(edited)", its reaction chips (click one to add or take back
 * yours) and its actions (reply, react, and for your own, edit and delete); the composer sends,
 * answers the message being replied to, or saves the message being edited.
 */
function Thread(props: {
  client: RealtimeClient;
  me: User;
  messages: Message[];
  names: Map<string, string>;
  placeholder: string;
  send: (content: string, replyToId: string | undefined, attachmentIds: string[] | undefined) => Promise<Message>;
  onTyping: (active: boolean) => void;
  footer?: ReactNode;
  typing: string;
  /** Null for a direct conversation without a message yet: no files until it exists. */
  conversationId: string | null;
  /** Uploads under way from others (all conversations; this one's are shown). */
  incoming: UploadProgressPayload[];
}) {
  const { client, me, messages, names, placeholder, send, onTyping, footer, typing, conversationId } = props;
  const incoming = props.incoming.filter((u) => u.conversationId === conversationId);
  const [draft, setDraft] = useState("");
  /** Files picked for the next message, and those of mine on their way (with their progress). */
  const [files, setFiles] = useState<File[]>([]);
  const [outgoing, setOutgoing] = useState<Array<{ key: string; name: string; sent: number; total: number }>>([]);
  const fileInput = useRef<HTMLInputElement>(null);
  const [error, setError] = useState<string | null>(null);
  const [replyTo, setReplyTo] = useState<Message | null>(null);
  const [editing, setEditing] = useState<Message | null>(null);
  const byId = useMemo(() => new Map(messages.map((m) => [m.id, m])), [messages]);
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => {
    // In braces: newer browsers' scrollIntoView returns a promise, which is no effect cleanup.
    end.current?.scrollIntoView?.();
  }, [messages.length]);

  const attempt = async (action: () => Promise<unknown>) => {
    setError(null);
    try {
      await action();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  /** Uploads the picked files side by side, each with its progress bar; resolves with their ids. */
  const uploadAll = async (picked: File[]): Promise<string[]> => {
    const batch = `${Date.now()}`;
    const keys = picked.map((_, i) => `${batch}-${i}`);
    setOutgoing((list) => [...list, ...picked.map((file, i) => ({ key: keys[i], name: file.name, sent: 0, total: file.size }))]);
    try {
      return await Promise.all(
        picked.map(async (file, i) => {
          const uploaded = await client.upload(file, conversationId!, {
            onProgress: (sent, total) =>
              setOutgoing((list) => list.map((u) => (u.key === keys[i] ? { ...u, sent, total } : u))),
          });
          return uploaded.id;
        }),
      );
    } finally {
      setOutgoing((list) => list.filter((u) => !keys.includes(u.key)));
    }
  };
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const content = draft.trim();
    const picked = editing ? [] : files;
    if (!content && picked.length === 0) return;
    if (picked.length > 10) {
      setError("At most 10 files per message");
      return;
    }
    const target = editing;
    const answering = replyTo;
    setDraft("");
    setEditing(null);
    setReplyTo(null);
    setFiles([]);
    if (fileInput.current) fileInput.current.value = "";
    setError(null);
    try {
      // Shown through messageSent / messageUpdated.
      if (target) await client.editMessage(target.id, content);
      else await send(content, answering?.id, picked.length > 0 ? await uploadAll(picked) : undefined);
    } catch (err) {
      setError((err as Error).message);
      setDraft(content);
      setEditing(target);
      setReplyTo(answering);
      setFiles(picked);
    }
  };
  const mine = (m: Message) => m.from === me.id;
  const react = (m: Message, emoji: string) => {
    const already = m.reactions.some((r) => r.emoji === emoji && r.userIds.includes(me.id));
    return attempt(() => client.react(m.id, emoji, !already)); // shown through reactionsChanged
  };
  const quote = (id: string) => {
    const original = byId.get(id);
    if (!original) return "an earlier message";
    if (original.deletedAt) return "a deleted message";
    return `${names.get(original.from) ?? (mine(original) ? me.name : "Someone")}: ${original.content}`;
  };

  return (
    <>
      <div className="messages">
        {messages.map((m) => {
          const kind = m.kind === "system" ? "system" : mine(m) ? "mine" : "";
          const live = m.kind === "text" && !m.deletedAt;
          return (
            <div key={m.id} className={`message-row ${kind}`} data-testid="message-row" data-message-id={m.id}>
              {m.replyToId && <div className="quote" data-testid="reply-quote">↩ {quote(m.replyToId)}</div>}
              <div
                className={`message ${kind} ${m.deletedAt ? "deleted" : ""}`}
                data-testid="message"
                data-kind={m.kind}
                data-from={mine(m) ? "me" : "them"}
              >
                {m.deletedAt ? "This message was deleted" : m.kind === "system" ? `· ${m.content}` : m.content}
                {!m.deletedAt && m.attachments.length > 0 && (
                  <div className="attachments">
                    {m.attachments.map((a) => (
                      <AttachmentView key={a.id} client={client} attachment={a} />
                    ))}
                  </div>
                )}
              </div>
              {m.editedAt && !m.deletedAt && <span className="edited" data-testid="edited">(edited)</span>}
              {m.reactions.length > 0 && (
                <div className="reactions">
                  {m.reactions.map((r) => (
                    <button
                      key={r.emoji}
                      type="button"
                      className={`chip ${r.userIds.includes(me.id) ? "mine" : ""}`}
                      data-testid="reaction"
                      data-emoji={r.emoji}
                      data-mine={r.userIds.includes(me.id) ? "true" : "false"}
                      title={r.userIds.map((id) => names.get(id) ?? (id === me.id ? me.name : "Someone")).join(", ")}
                      onClick={() => react(m, r.emoji)}
                    >
                      {r.emoji} {r.count}
                    </button>
                  ))}
                </div>
              )}
              {live && (
                <div className="actions">
                  <button type="button" data-testid="reply" onClick={() => (setEditing(null), setReplyTo(m))}>Reply</button>
                  {QUICK_REACTIONS.map((emoji) => (
                    <button key={emoji} type="button" data-testid="react" data-emoji={emoji} onClick={() => react(m, emoji)}>
                      {emoji}
                    </button>
                  ))}
                  {mine(m) && (
                    <>
                      <button type="button" data-testid="edit" onClick={() => (setReplyTo(null), setEditing(m), setDraft(m.content))}>
                        Edit
                      </button>
                      <button type="button" data-testid="delete" onClick={() => attempt(() => client.deleteMessage(m.id))}>
                        Delete
                      </button>
                    </>
                  )}
                </div>
              )}
            </div>
          );
        })}
        {incoming.map((u) => (
          <div key={u.uploadId} className="message-row" data-testid="incoming-upload" data-upload-id={u.uploadId} data-offset={u.offset} data-size={u.size}>
            <div className="message upload">
              {u.from === me.id ? "You are" : `${names.get(u.from) ?? "Someone"} is`} sending {u.filename} ({formatSize(u.size)})
              <progress value={u.offset} max={u.size} />
            </div>
          </div>
        ))}
        {footer}
        <div ref={end} />
      </div>
      <div className="typing" data-testid="typing-indicator">{typing}</div>
      {(replyTo || editing) && (
        <div className="composing" data-testid="composing">
          {editing ? "Editing your message" : `Replying to ${quote(replyTo!.id)}`}
          <button type="button" data-testid="cancel-composing" onClick={() => (setEditing(null), setReplyTo(null), setDraft(""))}>
            Cancel
          </button>
        </div>
      )}
      {outgoing.map((u) => (
        <div key={u.key} className="upload-progress" data-testid="upload-progress" data-filename={u.name} data-sent={u.sent} data-total={u.total}>
          Sending {u.name}: <progress value={u.sent} max={u.total || 1} /> {Math.floor((100 * u.sent) / (u.total || 1))}%
        </div>
      ))}
      {files.length > 0 && (
        <div className="picked" data-testid="picked-files">
          {files.map((f) => `${f.name} (${formatSize(f.size)})`).join(", ")}
          <button type="button" data-testid="clear-files" onClick={() => (setFiles([]), fileInput.current && (fileInput.current.value = ""))}>
            Remove
          </button>
        </div>
      )}
      <form className="composer" onSubmit={submit}>
        <label className="attach" title={conversationId ? "Attach files" : "Send a first message to attach files"}>
          Attach
          <input
            ref={fileInput}
            data-testid="attach"
            type="file"
            multiple
            disabled={!conversationId || editing !== null}
            onChange={(e) => setFiles([...(e.target.files ?? [])])}
          />
        </label>
        <input
          data-testid="composer"
          placeholder={placeholder}
          value={draft}
          onChange={(e) => {
            setDraft(e.target.value);
            if (!editing) onTyping(e.target.value !== "");
          }}
        />
        <button data-testid="send" type="submit">{editing ? "Save" : "Send"}</button>
      </form>
      {error && <p className="error" data-testid="send-error">{error}</p>}
    </>
  );
}

/** "1.2 MB", "340 kB", "12 B". */
function formatSize(bytes: number): string {
  if (bytes >= 1_000_000) return `${(bytes / 1_000_000).toFixed(1)} MB`;
  if (bytes >= 1_000) return `${Math.round(bytes / 1_000)} kB`;
  return `${bytes} B`;
}

/** Saves an attachment: fetched with the client's token, handed to the browser as a download. */
async function download(client: RealtimeClient, attachment: Attachment): Promise<void> {
  const blob = await client.fetchAttachment(attachment);
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = attachment.filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * One attachment: a picture as its thumbnail (click to save the original), anything else as a
 * link with its name and size. The server wants the token for both, which an `<img src>` cannot
 * send: the bytes are fetched with it and shown through an object URL.
 */
function AttachmentView({ client, attachment }: { client: RealtimeClient; attachment: Attachment }) {
  const [src, setSrc] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const picture = attachment.thumbnailUrl !== null;
  useEffect(() => {
    if (!picture) return;
    let live = true;
    let url: string | null = null;
    client
      .fetchAttachment(attachment, { thumbnail: true })
      .then((blob) => {
        if (!live) return;
        url = URL.createObjectURL(blob);
        setSrc(url);
      })
      .catch((err: Error) => live && setError(err.message));
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, attachment.id, picture]);
  const save = (e: { preventDefault: () => void }) => {
    e.preventDefault();
    download(client, attachment).catch((err: Error) => setError(err.message));
  };
  const label = `${attachment.filename} (${formatSize(attachment.size)})`;
  if (picture) {
    // The thumbnail is at most 320 px on its long side; shown at most 240 px wide.
    const scale = Math.min(1, 240 / Math.max(attachment.width ?? 240, attachment.height ?? 240));
    return (
      <a className="attachment picture" href={client.attachmentUrl(attachment) ?? "#"} onClick={save} title={label} data-testid="attachment" data-attachment-id={attachment.id}>
        {src ? (
          <img data-testid="attachment-image" src={src} alt={attachment.filename} width={Math.round((attachment.width ?? 240) * scale)} />
        ) : (
          <span className="loading">{error ?? `Loading ${attachment.filename}…`}</span>
        )}
      </a>
    );
  }
  return (
    <a
      className="attachment file"
      data-testid="attachment-file"
      data-attachment-id={attachment.id}
      href={client.attachmentUrl(attachment) ?? "#"}
      download={attachment.filename}
      onClick={save}
    >
      {attachment.filename} <span className="size">({formatSize(attachment.size)})</span>
      {error && <span className="error"> {error}</span>}
    </a>
  );
}

/** A call: who, where it stands, the two videos, and what can be done with it. */
function CallPanel({ call, name, onClose }: { call: Call; name: string; onClose: () => void }) {
  const [state, setState] = useState(call.state);
  const [ice, setIce] = useState<string>("new");
  const [error, setError] = useState<string | null>(null);
  const local = useRef<HTMLVideoElement>(null);
  const remote = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    setState(call.state);
    const show = () => {
      if (local.current && call.localStream) local.current.srcObject = call.localStream;
      if (remote.current && call.remoteStream) remote.current.srcObject = call.remoteStream;
    };
    show();
    const offs = [
      call.on("state", (s) => (setState(s), show())),
      call.on("remoteStream", show),
      call.on("connection", setIce),
    ];
    return () => offs.forEach((off) => off());
  }, [call]);
  const act = (action: () => Promise<void>) => () =>
    action().then(
      () => {
        if (local.current && call.localStream) local.current.srcObject = call.localStream;
      },
      (err: Error) => setError(err.message),
    );
  const ringing = state === "ringing";
  const what = call.media === "video" ? "video call" : "call";
  const status =
    state === "ended"
      ? `Call ended (${call.endReason})`
      : ringing
        ? call.direction === "incoming"
          ? `${name} is calling (${what})`
          : `Calling ${name}…`
        : `In a ${what} with ${name}`;
  return (
    <div className="call-panel" data-testid="call-panel" data-state={state} data-ice={ice} data-call-id={call.id ?? ""}>
      <span data-testid="call-status">{status}</span>
      {ringing && call.direction === "incoming" && (
        <>
          <button data-testid="accept-call" onClick={act(() => call.accept())}>Accept</button>
          <button data-testid="decline-call" onClick={act(() => call.decline())}>Decline</button>
        </>
      )}
      {state !== "ended" && !(ringing && call.direction === "incoming") && (
        <button data-testid="hang-up" onClick={act(() => call.hangUp())}>Hang up</button>
      )}
      {state === "ended" && <button data-testid="close-call" onClick={onClose}>Close</button>}
      {error && <span className="error" data-testid="call-panel-error">{error}</span>}
      <div className="videos" hidden={state === "ended"}>
        <video data-testid="remote-video" ref={remote} autoPlay playsInline />
        <video data-testid="local-video" ref={local} autoPlay playsInline muted />
      </div>
    </div>
  );
}

/**
 * "Notify me": registers the service worker (public/sw.js), asks for permission and subscribes
 * this browser to Web Push, so that messages reach it while no tab is open.
 */
function PushToggle({ client }: { client: RealtimeClient }) {
  const [state, setState] = useState<"off" | "on" | "working">("off");
  const [error, setError] = useState<string | null>(null);
  const enable = async () => {
    setState("working");
    setError(null);
    try {
      if (!("serviceWorker" in navigator) || !("PushManager" in window)) throw new Error("this browser has no Web Push");
      const registration = await navigator.serviceWorker.register("/sw.js");
      if ((await Notification.requestPermission()) !== "granted") throw new Error("notifications are not allowed");
      await client.enablePush(await navigator.serviceWorker.ready.then(() => registration));
      setState("on");
    } catch (err) {
      setState("off");
      setError((err as Error).message);
    }
  };
  if (state === "on") return <span data-testid="push-state">Notifications on</span>;
  return (
    <span>
      <button data-testid="enable-push" disabled={state === "working"} onClick={enable}>Notify me</button>
      {error && <span className="push-error" data-testid="push-error"> {error}</span>}
    </span>
  );
}

/** A form that makes a group of the checked people. */
function NewGroup(props: { client: RealtimeClient; people: DirectoryEntry[]; onCreated: (g: ConversationObject) => void }) {
  const { client, people, onCreated } = props;
  const [title, setTitle] = useState("");
  const [members, setMembers] = useState<Set<string>>(new Set());
  const [error, setError] = useState<string | null>(null);
  const create = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const group = await client.createGroup(title.trim(), [...members]);
      setTitle("");
      setMembers(new Set());
      onCreated(group);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <form className="new-group" data-testid="new-group" onSubmit={create}>
      <input data-testid="group-title" placeholder="New group" value={title} onChange={(e) => setTitle(e.target.value)} />
      {people.map((p) => (
        <label key={p.id}>
          <input
            type="checkbox"
            data-testid="group-member"
            data-user-id={p.id}
            checked={members.has(p.id)}
            onChange={(e) =>
              setMembers((set) => {
                const next = new Set(set);
                if (e.target.checked) next.add(p.id);
                else next.delete(p.id);
                return next;
              })
            }
          />
          {p.name}
        </label>
      ))}
      <button data-testid="create-group" type="submit" disabled={!title.trim() || members.size === 0}>Create</button>
      {error && <p className="error" data-testid="group-error">{error}</p>}
    </form>
  );
}

/** A group: its messages, who types, "read by N" under my last message, and adding a member. */
function Group(props: {
  client: RealtimeClient;
  me: User;
  group: ConversationObject;
  people: DirectoryEntry[];
  messages: Message[];
  names: Map<string, string>;
  typing: string[];
  readsVersion: number;
  token: { current: string };
  incoming: UploadProgressPayload[];
}) {
  const { client, me, group, people, messages, names, typing, readsVersion, token, incoming } = props;
  const [error, setError] = useState<string | null>(null);
  const [readBy, setReadBy] = useState(0);
  const [adding, setAdding] = useState("");

  // Reading: the newest message moves my pointer when the group is open.
  const newest = messages.at(-1);
  useEffect(() => {
    if (newest && newest.from !== me.id) client.markConversationRead(group.id, newest.id).catch(() => {});
  }, [client, group.id, newest?.id, me.id]);

  // Who has read my last message (everyone but me whose pointer is past it).
  const lastMine = [...messages].reverse().find((m) => m.from === me.id && m.kind === "text");
  useEffect(() => {
    if (!lastMine) return;
    api<{ readBy: Array<{ userId: string }> }>(token.current, "GET", `/api/conversations/${group.id}/messages/${lastMine.id}/reads`)
      .then((body) => setReadBy(body.readBy.filter((r) => r.userId !== me.id).length))
      .catch(() => {});
  }, [group.id, lastMine?.id, readsVersion, me.id, token]);

  const add = async () => {
    if (!adding) return;
    try {
      await client.addMembers(group.id, [adding]);
      setAdding("");
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section className="conversation" data-testid="group-conversation" data-group-id={group.id}>
      <h2 data-testid="group-name">
        {group.title} ({group.memberCount})
      </h2>
      <Thread
        client={client}
        me={me}
        messages={messages}
        names={names}
        placeholder={`Message ${group.title}`}
        conversationId={group.id}
        incoming={incoming}
        send={(content, replyToId, attachmentIds) => client.sendToConversation(group.id, content, { replyToId, attachmentIds })}
        onTyping={(active) => (active ? client.typingIn(group.id) : client.stopTypingIn(group.id))}
        footer={lastMine && <div className="receipt" data-testid="read-by">Read by {readBy}</div>}
        typing={typing.length > 0 ? `${typing.join(", ")} typing…` : ""}
      />
      <div className="add-member">
        <select data-testid="add-member" value={adding} onChange={(e) => setAdding(e.target.value)}>
          <option value="">Add someone…</option>
          {people.map((p) => (
            <option key={p.id} value={p.id}>{p.name}</option>
          ))}
        </select>
        <button data-testid="add-member-button" type="button" onClick={add}>Add</button>
      </div>
      {error && <p className="error" data-testid="group-action-error">{error}</p>}
    </section>
  );
}
