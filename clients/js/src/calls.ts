// Calls (SPEC §14) around the browser's RTCPeerConnection: the server rings, relays the offer,
// the answer and trickled ICE candidates between the two devices, and keeps the call's state;
// media flows peer to peer (or through the TURN servers of `GET /api/calls/ice-servers`).

import type { Id, Timestamp } from "./types.js";

/** The call object of the contract. */
export interface CallObject {
  id: Id;
  from: Id;
  to: Id;
  media: "audio" | "video";
  state: "ringing" | "active" | "ended";
  createdAt: Timestamp;
  answeredAt: Timestamp | null;
  endedAt: Timestamp | null;
  endReason: string | null;
}

/** Why a call ended, as `callEnded` says. */
export type CallEndReason =
  | "declined"
  | "cancelled"
  | "ended"
  | "missed"
  | "disconnected"
  | "answered_elsewhere"
  | "superseded"
  | (string & {});

/** What a `Call` tells its listeners. */
export interface CallEvents {
  /** `ringing` → `active` → `ended`. */
  state: (state: CallObject["state"]) => void;
  /** The peer connection's ICE state (`checking`, `connected`, `disconnected`, …). */
  connection: (state: RTCIceConnectionState) => void;
  /** The other side's media, once it arrives. */
  remoteStream: (stream: MediaStream) => void;
  /** The call is over; its peer connection is closed and the local tracks stopped. */
  ended: (reason: CallEndReason) => void;
}

/** What a call needs of the client: its socket's acked requests, and media with ICE servers. */
export interface CallTransport {
  ask(event: string, payload: unknown): Promise<any>;
  /** The local media for `media` (`stream` when given) and the RTCPeerConnection settings. */
  prepare(media: "audio" | "video", stream?: MediaStream): Promise<{ stream: MediaStream; config: RTCConfiguration }>;
}

/**
 * One call of this device: outgoing (made by `client.call`) or incoming (given to the
 * `incomingCall` listeners, to `accept` or `decline`).
 */
export class Call {
  readonly direction: "outgoing" | "incoming";
  /** The other user. */
  readonly peer: Id;
  readonly media: "audio" | "video";
  /** Set once the server has the call (at once for an incoming one). */
  id: Id | null;
  state: CallObject["state"] = "ringing";
  pc: RTCPeerConnection | null = null;
  localStream: MediaStream | null = null;
  remoteStream: MediaStream | null = null;
  endReason: CallEndReason | null = null;

  #transport: CallTransport;
  #offer: RTCSessionDescriptionInit | null;
  #listeners: { [K in keyof CallEvents]?: Set<CallEvents[K]> } = {};
  /** Local candidates waiting for the server to take them (before the call id or the accept). */
  #outbox: RTCIceCandidateInit[] = [];
  #canSend = false;
  /** Remote candidates that came before the remote description. */
  #inbox: RTCIceCandidateInit[] = [];

  constructor(init: {
    transport: CallTransport;
    direction: "outgoing" | "incoming";
    peer: Id;
    media: "audio" | "video";
    id?: Id;
    offer?: RTCSessionDescriptionInit;
  }) {
    this.#transport = init.transport;
    this.direction = init.direction;
    this.peer = init.peer;
    this.media = init.media;
    this.id = init.id ?? null;
    this.#offer = init.offer ?? null;
  }

  on<K extends keyof CallEvents>(event: K, listener: CallEvents[K]): () => void {
    let set = this.#listeners[event] as Set<CallEvents[K]> | undefined;
    if (!set) {
      set = new Set();
      (this.#listeners as Record<string, Set<unknown>>)[event] = set;
    }
    set.add(listener);
    return () => set!.delete(listener);
  }

  #emit<K extends keyof CallEvents>(event: K, ...args: Parameters<CallEvents[K]>): void {
    for (const listener of [...((this.#listeners[event] as Set<(...a: unknown[]) => void>) ?? [])]) {
      try {
        listener(...args);
      } catch (err) {
        console.error(err);
      }
    }
  }

  /** Places the call: the offer goes to the server, which rings the callee. */
  async start(given?: MediaStream): Promise<void> {
    const { stream, config } = await this.#transport.prepare(this.media, given);
    const pc = this.#connect(stream, config);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const reply = await this.#transport.ask("startCall", {
      to: this.peer,
      media: this.media,
      offer: { type: offer.type, sdp: offer.sdp },
    });
    this.id = reply.call.id;
    if (reply.call.state === "ended") {
      // Glare: the other side's call to this user rings instead.
      this.#end(reply.call.endReason ?? "superseded");
      return;
    }
    // The caller's candidates are taken before the answer (the server keeps them).
    this.#canSend = true;
    void this.#flush();
  }

  /** Answers an incoming call, with `stream` or the camera and microphone the call needs. */
  async accept(given?: MediaStream): Promise<void> {
    if (this.direction !== "incoming" || !this.#offer || !this.id) throw new Error("not an incoming call");
    const { stream, config } = await this.#transport.prepare(this.media, given);
    const pc = this.#connect(stream, config);
    await pc.setRemoteDescription(this.#offer);
    await this.#drainInbox();
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await this.#transport.ask("acceptCall", { callId: this.id, answer: { type: answer.type, sdp: answer.sdp } });
    this.#setState("active");
    this.#canSend = true;
    void this.#flush();
  }

  /** Declines an incoming call that rings. */
  async decline(): Promise<void> {
    if (this.id) await this.#transport.ask("declineCall", { callId: this.id });
    this.#end("declined");
  }

  /** Ends the call (before an answer: cancels it). */
  async hangUp(): Promise<void> {
    if (this.state === "ended") return;
    if (this.id) await this.#transport.ask("endCall", { callId: this.id }).catch(() => {});
    this.#end(this.state === "ringing" ? "cancelled" : "ended");
  }

  /** From the client: what the server said of this call. */
  handle(event: "callAccepted" | "iceCandidate" | "callEnded", payload: any): void {
    if (event === "callAccepted") {
      void this.pc?.setRemoteDescription(payload.answer).then(() => this.#drainInbox());
      this.#setState("active");
    } else if (event === "iceCandidate") {
      for (const candidate of payload.candidates ?? []) {
        if (this.pc?.remoteDescription) void this.pc.addIceCandidate(candidate).catch(() => {});
        else this.#inbox.push(candidate);
      }
    } else {
      this.#end(payload.reason);
    }
  }

  #connect(stream: MediaStream, config: RTCConfiguration): RTCPeerConnection {
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    this.localStream = stream;
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    pc.onicecandidate = (e) => {
      if (!e.candidate) return;
      this.#outbox.push(e.candidate.toJSON());
      void this.#flush();
    };
    pc.oniceconnectionstatechange = () => this.#emit("connection", pc.iceConnectionState);
    pc.ontrack = (e) => {
      const remote = e.streams[0] ?? new MediaStream([e.track]);
      if (this.remoteStream !== remote) {
        this.remoteStream = remote;
        this.#emit("remoteStream", remote);
      }
    };
    return pc;
  }

  async #flush(): Promise<void> {
    if (!this.#canSend || !this.id || this.#outbox.length === 0 || this.state === "ended") return;
    const candidates = this.#outbox.splice(0, 50);
    await this.#transport.ask("iceCandidate", { callId: this.id, candidates }).catch(() => {});
    if (this.#outbox.length > 0) void this.#flush();
  }

  async #drainInbox(): Promise<void> {
    for (const candidate of this.#inbox.splice(0)) await this.pc?.addIceCandidate(candidate).catch(() => {});
  }

  #setState(state: CallObject["state"]): void {
    if (this.state === state) return;
    this.state = state;
    this.#emit("state", state);
  }

  #end(reason: CallEndReason): void {
    if (this.state === "ended") return;
    this.endReason = reason;
    this.pc?.close();
    for (const track of this.localStream?.getTracks() ?? []) track.stop();
    this.#setState("ended");
    this.#emit("ended", reason);
  }
}
