// Turns the result lines of bench/run.sh into the markdown comparison: for every scenario, our
// figure, the Node reference's, their ratio, and how far ours moved since the previous run; then
// the targets of issue 9, met or not, with the measured gap. `presence` is ours alone (the Node
// reference has no scoped presence): one column per online count it stepped through, and the
// targets of issue 16. `upload` is ours alone too (the reference has no uploads): one column, with
// the server's memory growth set against the bytes written (issue 19).
//
// Usage: node bench/report.mjs latest.json [previous.json] > latest.md
import { existsSync, readFileSync } from "node:fs";

const [latestPath, previousPath] = process.argv.slice(2);
if (!latestPath) {
  console.error("usage: node bench/report.mjs latest.json [previous.json]");
  process.exit(2);
}

function readLines(path) {
  if (!path || !existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

const latest = readLines(latestPath);
const previous = readLines(previousPath);
const meta = latest.find((r) => r.scenario === "meta") ?? {};
const find = (rows, scenario, server) =>
  rows.find((r) => r.scenario === scenario && r.server === server && !r.error);

const kib = (bytes) => (bytes == null ? null : bytes / 1024);
const mib = (k) => (k == null ? null : k / 1024);
const non2xx = (r) =>
  Object.entries(r.statuses ?? {})
    .filter(([s]) => !s.startsWith("2"))
    .reduce((n, [, c]) => n + c, 0);

// [label, better: "higher" | "lower" | "", value of a result line]
const METRICS = {
  idle: [
    ["sockets connected", "higher", (r) => r.connected],
    ["sockets failed", "lower", (r) => r.failed],
    ["sockets dropped while held", "lower", (r) => r.dropped],
    ["connect rate (sockets/s)", "higher", (r) => r.connect_rate],
    ["handshake p50 (ms)", "lower", (r) => r.handshake_p50_ms],
    ["handshake p99 (ms)", "lower", (r) => r.handshake_p99_ms],
    ["server RSS per socket (KiB)", "lower", (r) => kib(r.server_rss_per_socket_bytes)],
    ["server RSS holding them all (MiB)", "lower", (r) => mib(r.server_rss_after_kib)],
    ["server CPU while connecting (% of a core)", "lower", (r) => r.server_cpu_percent_connect],
    ["bytes each socket received while connecting", "lower", (r) => r.rx_bytes_per_socket],
    ["load generator RSS per socket (KiB)", "", (r) => kib(r.loadgen_rss_per_socket_bytes)],
    ["load generator CPU while connecting (% of a core)", "", (r) => r.loadgen_cpu_percent_connect],
  ],
  dm: [
    ["messages sent", "", (r) => r.sent],
    ["send rate achieved (msg/s)", "higher", (r) => r.send_rate],
    ["acked ok", "", (r) => r.acked],
    ["acked per second, first send to last ack", "higher", (r) => r.stored_rate],
    ["delivered (newMessage received)", "", (r) => r.delivered],
    ["lost (acked, never delivered)", "lower", (r) => r.lost],
    ["errors (ok:false acks)", "lower", (r) => r.errors],
    ["unacked", "lower", (r) => r.unacked],
    ["send → newMessage p50 (ms)", "lower", (r) => r.delivery_p50_ms],
    ["send → newMessage p95 (ms)", "lower", (r) => r.delivery_p95_ms],
    ["send → newMessage p99 (ms)", "lower", (r) => r.delivery_p99_ms],
    ["send → newMessage max (ms)", "lower", (r) => r.delivery_max_ms],
    ["ack p50 (ms)", "lower", (r) => r.ack_p50_ms],
    ["ack p99 (ms)", "lower", (r) => r.ack_p99_ms],
    ["server CPU while sending (% of a core)", "lower", (r) => r.server_cpu_percent],
    ["load generator CPU while sending (% of a core)", "", (r) => r.loadgen_cpu_percent],
    ["seconds draining after the last send", "lower", (r) => r.drain_secs],
  ],
  fanout: [
    ["sockets connected", "higher", (r) => r.connected],
    ["deliveries", "", (r) => r.delivered],
    ["missing deliveries", "lower", (r) => r.missing],
    ["deliveries per second", "higher", (r) => r.deliveries_per_sec],
    ["POST → last delivery p50 (ms)", "lower", (r) => r.to_last_p50_ms],
    ["POST → last delivery max (ms)", "lower", (r) => r.to_last_max_ms],
    ["POST answered p50 (ms)", "lower", (r) => r.post_p50_ms],
    ["server CPU while broadcasting (% of a core)", "lower", (r) => r.server_cpu_percent],
    ["load generator CPU (% of a core)", "", (r) => r.loadgen_cpu_percent],
  ],
  group: [
    ["sockets connected", "higher", (r) => r.connected],
    ["messages sent", "", (r) => r.sent],
    ["send rate achieved (msg/s)", "higher", (r) => r.send_rate],
    ["acked ok", "", (r) => r.acked],
    ["deliveries (newMessage at members)", "", (r) => r.deliveries],
    ["deliveries per second", "higher", (r) => r.delivery_rate],
    ["lost (acked, not at every member)", "lower", (r) => r.lost],
    ["delivered to a non-member", "lower", (r) => r.misdelivered],
    ["errors (ok:false acks)", "lower", (r) => r.errors],
    ["send → newMessage at the last member p50 (ms)", "lower", (r) => r.last_member_p50_ms],
    ["send → newMessage at the last member p99 (ms)", "lower", (r) => r.last_member_p99_ms],
    ["send → newMessage at the last member max (ms)", "lower", (r) => r.last_member_max_ms],
    ["ack p50 (ms)", "lower", (r) => r.ack_p50_ms],
    ["ack p99 (ms)", "lower", (r) => r.ack_p99_ms],
    ["server CPU while sending (% of a core)", "lower", (r) => r.server_cpu_percent],
    ["load generator CPU while sending (% of a core)", "", (r) => r.loadgen_cpu_percent],
  ],
  rest: [
    ["requests answered 2xx", "higher", (r) => r.ok],
    ["other answers", "lower", (r) => non2xx(r)],
    ["throughput (requests/s)", "higher", (r) => r.throughput],
    ["latency p50 (ms)", "lower", (r) => r.latency_p50_ms],
    ["latency p95 (ms)", "lower", (r) => r.latency_p95_ms],
    ["latency p99 (ms)", "lower", (r) => r.latency_p99_ms],
    ["latency max (ms)", "lower", (r) => r.latency_max_ms],
    ["server CPU (% of a core)", "lower", (r) => r.server_cpu_percent],
    ["load generator CPU (% of a core)", "", (r) => r.loadgen_cpu_percent],
  ],
};

const TITLES = {
  idle: "idle: authenticated sockets held open",
  dm: "dm: direct messages between pairs of users",
  fanout: "fanout: broadcasts through POST /api/socket-test",
  rest: "rest: POST /api/messages/send/{id}",
  group: "group: group messages, every member connected (ours stored before the ack; Node's not)",
};

function fmt(v) {
  if (v == null || Number.isNaN(v)) return "—";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v) && Math.abs(v) >= 1000) return v.toLocaleString("en-US");
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return Number(v.toFixed(2)).toString();
}

function ratio(ours, theirs) {
  if (ours == null || theirs == null || theirs === 0) return "—";
  return `${(ours / theirs).toFixed(2)}×`;
}

function change(now, before, better) {
  if (now == null || before == null) return "—";
  if (before === 0) return now === 0 ? "0%" : "new";
  const pct = ((now - before) / Math.abs(before)) * 100;
  const worse = (better === "higher" && pct < -10) || (better === "lower" && pct > 10);
  return `${pct >= 0 ? "+" : ""}${pct.toFixed(0)}%${worse ? " ⚠" : ""}`;
}

const out = [];
out.push("# Benchmark results");
out.push("");
out.push(
  `${meta.date ?? "?"} · commit ${meta.commit ?? "?"} · ${meta.cpus ?? "?"} cores, ` +
    `${meta.memory_gib ?? "?"} GiB · ${meta.rustc ?? "?"} · Node ${meta.node ?? "?"} · ` +
    `socket.io ${meta.socketio ?? "?"} · ${meta.profile ?? "?"} build${meta.quick ? " · QUICK run" : ""}`,
);
out.push("");
out.push(`Parameters: ${meta.params ?? "?"}.`);
out.push("");
out.push(
  "Ratio = ours ÷ Node's (below 1× is better where lower is better). " +
    "“since previous” = our figure against the previous run's; ⚠ marks a move of more than 10% the wrong way.",
);

for (const [scenario, metrics] of Object.entries(METRICS)) {
  const ours = find(latest, scenario, "craftcode");
  const node = find(latest, scenario, "node");
  const before = find(previous, scenario, "craftcode");
  if (!ours && !node) continue;
  out.push("");
  out.push(`## ${TITLES[scenario]}`);
  out.push("");
  out.push("| metric | better | craftcode | Node | ratio | since previous |");
  out.push("| --- | --- | ---: | ---: | ---: | ---: |");
  for (const [label, better, get] of metrics) {
    const a = ours ? get(ours) : null;
    const b = node ? get(node) : null;
    const p = before ? get(before) : null;
    const arrow = better === "higher" ? "↑" : better === "lower" ? "↓" : "";
    out.push(`| ${label} | ${arrow} | ${fmt(a)} | ${fmt(b)} | ${ratio(a, b)} | ${change(a, p, better)} |`);
  }
  for (const r of [ours, node].filter(Boolean)) {
    const failures = Object.entries(r.failures ?? {});
    if (failures.length) {
      out.push("");
      out.push(`${r.server} connect failures: ${failures.map(([k, v]) => `${k} × ${v}`).join(", ")}`);
    }
    if (r.memory_guard_tripped) {
      out.push("");
      out.push(`${r.server}: stopped opening sockets when the server's RSS passed ${r.memory_guard_tripped} MiB`);
    }
    const codes = Object.entries(r.error_codes ?? {});
    if (codes.length) {
      out.push("");
      out.push(`${r.server} error codes: ${codes.map(([k, v]) => `${k} × ${v}`).join(", ")}`);
    }
  }
}

// [label, better, value of one step of a presence result line]
const PRESENCE_STEP_METRICS = [
  ["online sockets (mean over the window)", "", (s) => s.online_avg],
  ["reconnects per second", "", (s) => s.churn_rate],
  ["presence changes measured", "", (s) => s.changes],
  ["presenceChanged frames per socket per second", "lower", (s) => s.presence_frames_per_socket_per_sec],
  ["presenceChanged bytes per socket per second", "lower", (s) => s.presence_bytes_per_socket_per_sec],
  ["all bytes received per socket per second", "lower", (s) => s.rx_bytes_per_socket_per_sec],
  ["users told per change", "lower", (s) => s.told_per_change],
  ["presenceChanged bytes per change, all watchers", "lower", (s) => s.presence_bytes_per_change],
  ["welcome list bytes per reconnect", "lower", (s) => s.welcome_bytes_per_reconnect],
  ["server CPU per change (µs, handshakes included)", "lower", (s) => s.server_cpu_us_per_change],
  ["server CPU (% of a core)", "lower", (s) => s.server_cpu_percent],
  ["server RSS (MiB)", "lower", (s) => mib(s.server_rss_kib)],
  ["server RSS per socket (KiB)", "lower", (s) => kib(s.server_rss_per_socket_bytes)],
  ["views not matching who is online after the step", "lower", (s) => s.stale_views],
];

const presence = find(latest, "presence", "craftcode");
const presenceBefore = find(previous, "presence", "craftcode");
if (presence) {
  const steps = presence.steps ?? [];
  const last = steps.at(-1);
  const lastBefore = (presenceBefore?.steps ?? []).find((s) => s.online_target === last?.online_target);
  out.push("");
  out.push("## presence: scoped presence under churn (craftcode only: the Node reference has no scoped presence)");
  out.push("");
  out.push(
    `${fmt(presence.users)} users, each with ${fmt(presence.partners)} conversation partners; ` +
      `${fmt(presence.rate_target)} reconnects/s with all of them online, in proportion at each step ` +
      `(every user reconnects as often); ${fmt(presence.offline_secs)} s away each time; ` +
      `${fmt(presence.window_secs)} s measured per step. “since previous” compares the last column.`,
  );
  out.push("");
  out.push(`| metric | better | ${steps.map((s) => `${fmt(s.online_target)} online`).join(" | ")} | since previous |`);
  out.push(`| --- | --- | ${steps.map(() => "---:").join(" | ")} | ---: |`);
  for (const [label, better, get] of PRESENCE_STEP_METRICS) {
    const arrow = better === "higher" ? "↑" : better === "lower" ? "↓" : "";
    const cells = steps.map((s) => fmt(get(s)));
    const moved = last && lastBefore ? change(get(last), get(lastBefore), better) : "—";
    out.push(`| ${label} | ${arrow} | ${cells.join(" | ")} | ${moved} |`);
  }
  out.push("");
  out.push(
    `Sockets: ${fmt(presence.connected)} connected, ${fmt(presence.failed)} failed, ${fmt(presence.dropped)} dropped; ` +
      `${fmt(presence.reconnects)} reconnects, ${fmt(presence.reconnect_failed)} failed ` +
      `(${fmt(presence.rescoped)} of them to leave scope all); scopes at the end: ` +
      `${fmt(presence.scope_watched)} watched, ${fmt(presence.scope_all)} all. ` +
      `Told about a user they do not watch: ${fmt(presence.outside_partners)}; about their own user: ${fmt(presence.about_self)}.`,
  );
  const failures = Object.entries({ ...(presence.failures ?? {}), ...(presence.reconnect_failures ?? {}) });
  if (failures.length) {
    out.push("");
    out.push(`craftcode connect failures: ${failures.map(([k, v]) => `${k} × ${v}`).join(", ")}`);
  }
}

// [label, better, value of an upload result line]
const UPLOAD_METRICS = [
  ["uploads completed", "higher", (r) => r.completed],
  ["uploads failed", "lower", (r) => r.failed],
  ["answers not 2xx", "lower", (r) => r.non_2xx],
  ["final Upload-Offset right (PATCH and HEAD)", "higher", (r) => r.offsets_ok],
  ["MiB written in all", "", (r) => mib(kib(r.bytes))],
  ["throughput, first POST to the last answer (MB/s)", "higher", (r) => r.mb_per_sec],
  ["seconds per upload p50", "lower", (r) => r.upload_secs_p50],
  ["seconds per upload max", "lower", (r) => r.upload_secs_max],
  ["server RSS before (MiB)", "lower", (r) => mib(r.server_rss_before_kib)],
  ["server RSS peak while uploading (MiB)", "lower", (r) => mib(r.server_rss_peak_kib)],
  ["server RSS peak − before (MiB)", "lower", (r) => mib(r.server_rss_growth_kib)],
  [
    "server RSS peak − before, % of the bytes written",
    "lower",
    (r) => (r.server_rss_growth_kib == null || !r.bytes ? null : (r.server_rss_growth_kib * 1024 * 100) / r.bytes),
  ],
  ["server RSS after (MiB)", "lower", (r) => mib(r.server_rss_after_kib)],
  ["server CPU (% of a core)", "lower", (r) => r.server_cpu_percent],
  ["load generator CPU (% of a core)", "", (r) => r.loadgen_cpu_percent],
];

// Whole numbers as they are (fmt writes 20 as "20.0"), others as fmt does.
const whole = (v) => (typeof v === "number" && Number.isInteger(v) ? v.toLocaleString("en-US") : fmt(v));

const upload = find(latest, "upload", "craftcode");
const uploadBefore = find(previous, "upload", "craftcode");
if (upload) {
  out.push("");
  out.push("## upload: concurrent tus uploads (craftcode only: the Node reference has no uploads)");
  out.push("");
  out.push(
    `${whole(upload.uploads)} uploads at once of ${whole(mib(kib(upload.size_bytes)))} MiB each, ` +
      `${whole(upload.patches_per_upload)} PATCH(es) of up to ${whole(mib(kib(upload.chunk_bytes)))} MiB per upload, ` +
      `each by its own user over its own connection into a local storage folder; the server's RSS read ` +
      `${whole(upload.server_rss_samples)} times while the bytes streamed.`,
  );
  out.push("");
  out.push("| metric | better | craftcode | since previous |");
  out.push("| --- | --- | ---: | ---: |");
  for (const [label, better, get] of UPLOAD_METRICS) {
    const arrow = better === "higher" ? "↑" : better === "lower" ? "↓" : "";
    const before = uploadBefore ? get(uploadBefore) : null;
    out.push(`| ${label} | ${arrow} | ${whole(get(upload))} | ${change(get(upload), before, better)} |`);
  }
  const failures = Object.entries(upload.failures ?? {});
  if (failures.length) {
    out.push("");
    out.push(`craftcode upload failures: ${failures.map(([k, v]) => `${k} × ${v}`).join(", ")}; first: ${upload.first_error}`);
  }
}

const sweep = latest.filter((r) => r.server === "craftcode-sweep" && r.scenario === "dm" && !r.error);
const sustained = (r) =>
  r &&
  r.lost === 0 &&
  r.errors === 0 &&
  r.unacked === 0 &&
  r.send_rate >= 0.95 * r.rate_target &&
  r.stored_rate >= 0.95 * r.rate_target;
if (sweep.length) {
  out.push("");
  out.push("## dm rate sweep (craftcode on SQLite, every message stored before its ack)");
  out.push("");
  out.push("| target msg/s | sent/s | acked/s | lost | errors | unacked | p50 (ms) | p99 (ms) | max (ms) | server CPU | sustained |");
  out.push("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
  for (const r of sweep) {
    out.push(
      `| ${fmt(r.rate_target)} | ${fmt(r.send_rate)} | ${fmt(r.stored_rate)} | ${fmt(r.lost)} | ${fmt(r.errors)} | ${fmt(r.unacked)} | ` +
        `${fmt(r.delivery_p50_ms)} | ${fmt(r.delivery_p99_ms)} | ${fmt(r.delivery_max_ms)} | ` +
        `${fmt(r.server_cpu_percent)}% | ${sustained(r) ? "yes" : "no"} |`,
    );
  }
}

// The targets of issue 9.
const t = (s, srv = "craftcode") => find(latest, s, srv);
const rows = [];
const verdict = (ok) => (ok == null ? "not measured" : ok ? "**met**" : "**not met**");
{
  const o = t("idle");
  const n = t("idle", "node");
  const a = kib(o?.server_rss_per_socket_bytes);
  const b = kib(n?.server_rss_per_socket_bytes);
  rows.push([
    "memory per idle socket ≤ Node's",
    `${fmt(a)} KiB`,
    `${fmt(b)} KiB`,
    verdict(a == null || b == null ? null : a <= b),
    ratio(a, b),
  ]);
  const all = o ? o.connected >= 19000 && o.failed === 0 && o.dropped === 0 : null;
  rows.push([
    "19,000 concurrent authenticated sockets",
    o ? `${fmt(o.connected)} connected, ${fmt(o.failed)} failed` : "—",
    n ? `${fmt(n.connected)} connected` : "—",
    verdict(all),
    o ? `${fmt(o.connected)} of 19,000` : "—",
  ]);
  const rate = o?.connect_rate;
  const nrate = n?.connect_rate;
  rows.push([
    "connect rate ≥ 3× Node's",
    `${fmt(rate)}/s`,
    `${fmt(nrate)}/s`,
    verdict(rate == null || nrate == null ? null : rate >= 3 * nrate),
    ratio(rate, nrate),
  ]);
}
{
  const o = t("dm");
  const n = t("dm", "node");
  const p99 = o?.delivery_p99_ms;
  const np99 = n?.delivery_p99_ms;
  rows.push([
    "DM zero lost, every message stored before its ack",
    o ? `${fmt(o.lost)} lost, ${fmt(o.errors)} errors, ${fmt(o.unacked)} unacked` : "—",
    n ? `${fmt(n.lost)} lost (stores nothing)` : "—",
    verdict(o ? o.lost === 0 && o.errors === 0 && o.unacked === 0 : null),
    o ? `${fmt(o.send_rate)} of ${fmt(o.rate_target)} msg/s sent` : "—",
  ]);
  rows.push([
    "DM p99 send→delivery ≤ 3 ms",
    `${fmt(p99)} ms`,
    `${fmt(np99)} ms`,
    verdict(p99 == null ? null : p99 <= 3),
    p99 == null ? "—" : `${fmt(p99 / 3)}× the target`,
  ]);
  rows.push([
    "DM p99 ≥ 10× lower than Node's",
    `${fmt(p99)} ms`,
    `${fmt(np99)} ms`,
    verdict(p99 == null || np99 == null ? null : p99 * 10 <= np99),
    np99 && p99
      ? np99 >= p99
        ? `${fmt(np99 / p99)}× lower (need 10×)`
        : `${fmt(p99 / np99)}× higher (need 10× lower)`
      : "—",
  ]);
  const best = sweep.concat(o ? [o] : []).filter(sustained).map((r) => r.rate_target);
  rows.push([
    "highest sustained stored-DM rate (aim 20,000/s)",
    best.length ? `${fmt(Math.max(...best))} msg/s` : "none sustained",
    "—",
    verdict(best.length ? Math.max(...best) >= 20000 : sweep.length || o ? false : null),
    sweep.length ? `rates tried: ${sweep.map((r) => fmt(r.rate_target)).join(", ")}` : "no sweep in this run",
  ]);
}
{
  const o = t("fanout");
  const n = t("fanout", "node");
  const a = o?.deliveries_per_sec;
  const b = n?.deliveries_per_sec;
  rows.push([
    "fan-out deliveries/s ≥ 1.5× Node's",
    `${fmt(a)}/s`,
    `${fmt(b)}/s`,
    verdict(a == null || b == null ? null : a >= 1.5 * b && o.missing === 0),
    ratio(a, b),
  ]);
}
out.push("");
out.push(`## Targets of issue 9${meta.quick ? " (a quick run: sizes too small to judge them)" : ""}`);
out.push("");
out.push("| target | craftcode | Node | verdict | gap |");
out.push("| --- | --- | --- | --- | --- |");
for (const r of rows) out.push(`| ${r.join(" | ")} |`);

// The targets of issue 16.
if (presence) {
  const steps = presence.steps ?? [];
  const first = steps[0];
  const last = steps.at(-1);
  const k = presence.partners;
  const targets = [];
  const a = first?.presence_bytes_per_socket_per_sec;
  const b = last?.presence_bytes_per_socket_per_sec;
  targets.push([
    `presence bytes per socket flat from ${fmt(first?.online_target)} to ${fmt(last?.online_target)} online (within 25%)`,
    `${fmt(a)} → ${fmt(b)} B/s`,
    verdict(steps.length < 2 || a == null || b == null ? null : b <= 1.25 * a),
    a && b != null ? `${fmt(b / a)}× the first step` : "—",
  ]);
  const told = steps.map((s) => s.told_per_change).filter((t) => t != null);
  targets.push([
    `a change is told to its watchers only: users told per change ≤ K = ${fmt(k)} (+10% for the window's edges)`,
    told.map(fmt).join(" / "),
    verdict(told.length ? Math.max(...told) <= 1.1 * k : null),
    told.length ? `at most ${fmt(Math.max(...told) / k)}× K` : "—",
  ]);
  targets.push([
    "no socket told about a user it does not watch, or about its own",
    `${fmt(presence.outside_partners)} + ${fmt(presence.about_self)}`,
    verdict(presence.outside_partners === 0 && presence.about_self === 0),
    "—",
  ]);
  targets.push([
    "every socket's view of its partners matches who is online after each step",
    `${fmt(presence.stale_views)} stale`,
    verdict(presence.stale_views === 0),
    "—",
  ]);
  out.push("");
  out.push(`## Targets of issue 16${meta.quick ? " (a quick run: sizes too small to judge them)" : ""}`);
  out.push("");
  out.push("| target | craftcode | verdict | gap |");
  out.push("| --- | --- | --- | --- |");
  for (const r of targets) out.push(`| ${r.join(" | ")} |`);
}

const errors = latest.filter((r) => r.error);
if (errors.length) {
  out.push("");
  out.push("## Runs that failed");
  out.push("");
  for (const r of errors) out.push(`- ${r.server} ${r.scenario}: ${r.error}`);
}
console.log(out.join("\n"));
