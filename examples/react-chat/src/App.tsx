// A minimal chat on @craftcode/realtime-client: sign in, the people list with live presence, a
// conversation with a typing indicator and read receipts, and a banner while the connection is
// down. The page talks to its own origin; Vite forwards /api (REST and the socket) to craftcode.

import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";

import {
  connect,
  login,
  type ConnectionStatus,
  type DirectoryEntry,
  type ForceLogoutPayload,
  type Message,
  type RealtimeClient,
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
  const [people, setPeople] = useState<DirectoryEntry[]>([]);
  const [conversations, setConversations] = useState<Conversations>({});
  const [typing, setTyping] = useState<Set<string>>(new Set());
  /** Per other user, the newest of my messages they have read (a watermark: ids are ordered). */
  const [readUpTo, setReadUpTo] = useState<Record<string, string>>({});
  const [selected, setSelected] = useState<string | null>(null);
  const tokenRef = useRef(session.token);

  const addMessages = (peer: string, messages: Message[]) =>
    setConversations((all) => ({ ...all, [peer]: merge(all[peer], messages) }));
  const patchMessages = (peer: string, patch: (m: Message) => Message | null) =>
    setConversations((all) => {
      const list = all[peer];
      if (!list) return all;
      return { ...all, [peer]: list.map((m) => patch(m) ?? m) };
    });

  useEffect(() => {
    const c = connect({ url: window.location.origin, token: session.token });
    const offs = [
      c.on("status", setStatus),
      c.on("presence", (map) => setOnline(new Set(map.keys()))),
      c.on("tokenUpdated", (p) => (tokenRef.current = p.token)),
      c.on("newMessage", (m) => addMessages(m.from, [m])),
      c.on("messageSent", (m) => addMessages(m.to, [m])),
      c.on("messageDelivered", (p) =>
        patchMessages(p.to, (m) => (m.id === p.messageId ? { ...m, deliveredAt: p.deliveredAt } : null)),
      ),
      c.on("messagesRead", (p) =>
        setReadUpTo((all) => (all[p.by] && all[p.by] >= p.upTo ? all : { ...all, [p.by]: p.upTo })),
      ),
      c.on("userTyping", (p) =>
        setTyping((set) => {
          const next = new Set(set);
          if (p.isTyping) next.add(p.userId);
          else next.delete(p.userId);
          return next;
        }),
      ),
      c.on("force_logout", (p: ForceLogoutPayload) => onSignedOut(p.reason)),
      c.on("authError", (p) => onSignedOut(p.code)),
    ];
    setClient(c);
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

  return (
    <>
      {status !== "connected" && (
        <div className={`banner ${status === "loggedOut" || status === "disconnected" ? "stopped" : ""}`} data-testid="connection-banner">
          {status === "connecting" ? "Connecting…" : status === "reconnecting" ? "Reconnecting…" : "Disconnected"}
        </div>
      )}
      <header>
        <span data-testid="me">{me.name}</span>
        <button data-testid="sign-out" onClick={signOut}>Sign out</button>
      </header>
      <main>
        <aside data-testid="people">
          {people.map((p) => {
            const unread = (conversations[p.id] ?? []).filter((m) => m.from === p.id && !m.readAt).length;
            return (
              <button
                key={p.id}
                data-testid="person"
                data-user-id={p.id}
                data-online={online.has(p.id) ? "true" : "false"}
                className={p.id === selected ? "selected" : ""}
                onClick={() => setSelected(p.id)}
              >
                <span className={`dot ${online.has(p.id) ? "online" : ""}`} />
                <span className="name">{p.name}</span>
                {unread > 0 && p.id !== selected && <span className="unread" data-testid="unread">{unread}</span>}
              </button>
            );
          })}
        </aside>
        {peer && client ? (
          <Conversation
            key={peer.id}
            client={client}
            me={me}
            peer={peer}
            messages={messages}
            typing={typing.has(peer.id)}
            readUpTo={readUpTo[peer.id] ?? null}
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
  typing: boolean;
  readUpTo: string | null;
}) {
  const { client, me, peer, messages, typing, readUpTo } = props;
  const [draft, setDraft] = useState("");
  const [error, setError] = useState<string | null>(null);
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => {
    // In braces: newer browsers' scrollIntoView returns a promise, which is no effect cleanup.
    end.current?.scrollIntoView?.();
  }, [messages.length]);

  const lastMine = [...messages].reverse().find((m) => m.from === me.id);
  const read = lastMine && (lastMine.readAt || (readUpTo !== null && lastMine.id <= readUpTo));
  const receipt = lastMine ? (read ? "Read" : lastMine.deliveredAt ? "Delivered" : "Sent") : null;

  const send = async (e: FormEvent) => {
    e.preventDefault();
    const content = draft.trim();
    if (!content) return;
    setDraft("");
    setError(null);
    try {
      await client.sendMessage(peer.id, content); // shown through messageSent
    } catch (err) {
      setError((err as Error).message);
      setDraft(content);
    }
  };

  return (
    <section className="conversation" data-testid="conversation" data-peer-id={peer.id}>
      <div className="messages">
        {messages.map((m) => (
          <div key={m.id} className={`message ${m.from === me.id ? "mine" : ""}`} data-testid="message" data-from={m.from === me.id ? "me" : "them"}>
            {m.content}
          </div>
        ))}
        {receipt && <div className="receipt" data-testid="receipt">{receipt}</div>}
        <div ref={end} />
      </div>
      <div className="typing" data-testid="typing-indicator">{typing ? `${peer.name} is typing…` : ""}</div>
      <form className="composer" onSubmit={send}>
        <input
          data-testid="composer"
          placeholder={`Message ${peer.name}`}
          value={draft}
          onChange={(e) => {
            setDraft(e.target.value);
            if (e.target.value) client.typing(peer.id);
            else client.stopTyping(peer.id);
          }}
        />
        <button data-testid="send" type="submit">Send</button>
      </form>
      {error && <p className="error" data-testid="send-error">{error}</p>}
    </section>
  );
}
