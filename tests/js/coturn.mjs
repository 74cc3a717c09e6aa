// coturn (Debian's `turnserver`) on loopback for the tests: `use-auth-secret` with a secret of
// the test's, a UDP port and a relay port range of its own, its database in a temporary folder.
// `Coturn.start()` resolves once it serves; `allocate(username, credential)` asks it for a relay
// allocation with `turnutils_uclient` (and relays a few packets through it).

import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { freePort } from "./server.mjs";

export class Coturn {
  static async start() {
    const turn = new Coturn();
    turn.secret = randomBytes(24).toString("hex");
    turn.port = await freePort();
    turn.dir = mkdtempSync(path.join(tmpdir(), "craftcode-coturn-"));
    // A relay range of its own, away from other runs.
    const low = 40000 + Math.floor(Math.random() * 200) * 100;
    turn.output = [];
    turn.child = spawn(
      "turnserver",
      [
        "-n",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        `--listening-port=${turn.port}`,
        "--use-auth-secret",
        `--static-auth-secret=${turn.secret}`,
        "--realm=craftcode.test",
        "--allow-loopback-peers",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--fingerprint",
        "--log-file=stdout",
        "--simple-log",
        `--pidfile=${path.join(turn.dir, "turnserver.pid")}`,
        `--db=${path.join(turn.dir, "turndb")}`,
        `--min-port=${low}`,
        `--max-port=${low + 99}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`coturn did not start:\n${turn.output.join("")}`)), 15_000);
      const seen = (chunk) => {
        turn.output.push(chunk.toString());
        if (turn.output.join("").includes("Total General servers")) {
          clearTimeout(timer);
          resolve();
        }
      };
      turn.child.stdout.on("data", seen);
      turn.child.stderr.on("data", seen);
      turn.child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`coturn exited (${code}):\n${turn.output.join("")}`));
      });
    });
    turn.url = `turn:127.0.0.1:${turn.port}?transport=udp`;
    return turn;
  }

  /** Whether coturn gives `username`/`credential` an allocation and relays through it. */
  allocate(username, credential) {
    return new Promise((resolve) => {
      execFile(
        "turnutils_uclient",
        ["-u", username, "-w", credential, "-p", String(this.port), "-e", "127.0.0.1", "-n", "3", "-m", "1", "-y", "-c", "127.0.0.1"],
        { timeout: 20_000 },
        (error, stdout, stderr) => resolve({ ok: !error, output: `${stdout}${stderr}` }),
      );
    });
  }

  async stop() {
    this.child.removeAllListeners("exit");
    this.child.kill("SIGTERM");
    await new Promise((resolve) => (this.child.exitCode !== null ? resolve() : this.child.once("exit", resolve)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
