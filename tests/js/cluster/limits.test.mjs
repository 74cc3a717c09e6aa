// MAX_CONNECTIONS_PER_USER across the cluster (SPEC §5, §7): exact on every node at once, and a
// node killed without a clean shutdown gives its places back within PRESENCE_TTL.

import assert from "node:assert/strict";
import { test } from "node:test";

import { WAIT_MS, registerUser } from "../helpers.mjs";
import { useCluster } from "./cluster.mjs";

const PRESENCE_TTL_MS = 3000;
const LIMIT = 3;
const fx = useCluster({ PRESENCE_TTL: `${PRESENCE_TTL_MS}ms`, MAX_CONNECTIONS_PER_USER: String(LIMIT) });
const node = (i) => fx.nodes[i - 1];

/** Tries one handshake; answers "connected" or the connect_error message. */
async function attempt(target, token, label) {
  const probe = fx.socket(target, { label, token, transports: ["websocket"] });
  try {
    await probe.connected();
    return "connected";
  } catch (err) {
    probe.close();
    return err.message;
  }
}

test("the per-user limit holds on every node at once, and a killed node's places come back within PRESENCE_TTL", async () => {
  const ada = await registerUser(node(1), "Ada");
  for (const n of [1, 2, 3]) {
    await fx.connect(node(n), { label: `ada on node ${n}`, token: ada.token, transports: ["websocket"] });
  }

  // One more on each node, all at the same moment: every one is refused.
  const tries = await Promise.all([1, 2, 3].map((n) => attempt(node(n), ada.token, `extra on node ${n}`)));
  assert.deepEqual(tries, Array(3).fill("too_many_connections"));

  // Node 3 dies with Ada's socket: its place stops counting once its heartbeat is too old.
  await node(3).kill();
  const killedAt = Date.now();
  let outcome;
  while (Date.now() - killedAt < PRESENCE_TTL_MS + WAIT_MS) {
    outcome = await attempt(node(1), ada.token, "after the kill");
    if (outcome === "connected") break;
    assert.equal(outcome, "too_many_connections");
    await new Promise((r) => setTimeout(r, 100));
  }
  const freedAfter = Date.now() - killedAt;
  assert.equal(outcome, "connected", `the dead node's place was not given back after ${freedAfter} ms`);
  assert.ok(freedAfter <= PRESENCE_TTL_MS + WAIT_MS, `freed after ${freedAfter} ms`);

  // Exactly one place came back.
  assert.equal(await attempt(node(2), ada.token, "one too many"), "too_many_connections");
});
