// Calls in a cluster (SPEC §14): caller and callee on different nodes ring, accept, trickle
// candidates and hang up exactly as on one node, and a node's death ends its calls.

import assert from "node:assert/strict";
import { test } from "node:test";

import { login, registerUser } from "../helpers.mjs";
import { useCluster } from "./cluster.mjs";

const fx = useCluster({ CALL_RING_TIMEOUT: "30s" });
const node = (i) => fx.nodes[i - 1];
const offer = { type: "offer", sdp: "v=0\r\ns=-\r\n" };
const answer = { type: "answer", sdp: "v=0\r\ns=-\r\n" };
const candidate = (n) => ({ candidate: `candidate:${n} 1 udp 2122260223 127.0.0.1 ${50000 + n} typ host`, sdpMid: "0", sdpMLineIndex: 0 });

test("a call between nodes: every device rings, one answers, candidates go between the two only", async () => {
  const ann = await registerUser(node(1), "Ann");
  const ben = await registerUser(node(2), "Ben");
  const benPhone = await login(node(3), ben);
  const caller = await fx.connect(node(1), { label: "ann@1", token: ann.token });
  const laptop = await fx.connect(node(2), { label: "ben@2", token: ben.token });
  const phone = await fx.connect(node(3), { label: "ben@3", token: benPhone.token });

  const started = await caller.ack("startCall", { to: ben.id, media: "audio", offer });
  assert.equal(started.ok, true, JSON.stringify(started));
  const callId = started.call.id;
  for (const device of [laptop, phone]) {
    const ring = await device.next("incomingCall", { where: (p) => p.call.id === callId });
    assert.deepEqual(ring.offer, offer);
  }
  const accepted = await phone.ack("acceptCall", { callId, answer });
  assert.equal(accepted.ok, true, JSON.stringify(accepted));
  assert.deepEqual(await caller.next("callAccepted"), { callId, answer });
  assert.equal((await laptop.next("callEnded")).reason, "answered_elsewhere");
  const late = await laptop.ack("acceptCall", { callId, answer });
  assert.equal(late.ok, false);

  assert.equal((await caller.ack("iceCandidate", { callId, candidates: [candidate(1)] })).ok, true);
  assert.deepEqual((await phone.next("iceCandidate")).candidates, [candidate(1)]);
  assert.equal((await phone.ack("iceCandidate", { callId, candidates: [candidate(2)] })).ok, true);
  assert.deepEqual((await caller.next("iceCandidate")).candidates, [candidate(2)]);
  await laptop.barrier();
  assert.equal(laptop.all("iceCandidate").length, 0, "the other device hears nothing of it");

  assert.equal((await caller.ack("endCall", { callId })).ok, true);
  for (const device of [caller, phone]) assert.deepEqual(await device.next("callEnded"), { callId, reason: "ended" });
  const record = await laptop.next("newMessage", { where: (p) => p.message.kind === "system" });
  assert.equal(record.message.system.type, "call");
});

test("a node killed during a call: after the grace the other device hears it ended", async () => {
  const cat = await registerUser(node(1), "Cat");
  const dan = await registerUser(node(1), "Dan");
  const caller = await fx.connect(node(2), { label: "cat@2", token: cat.token });
  const callee = await fx.connect(node(3), { label: "dan@3", token: dan.token });
  const started = await caller.ack("startCall", { to: dan.id, media: "video", offer });
  const callId = started.call.id;
  await callee.next("incomingCall");
  assert.equal((await callee.ack("acceptCall", { callId, answer })).ok, true);
  await caller.next("callAccepted");

  await node(2).kill();
  const ended = await callee.next("callEnded", { ms: 30_000 });
  assert.deepEqual(ended, { callId, reason: "disconnected" });
  await node(2).restart();
});
