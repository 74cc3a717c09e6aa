#!/usr/bin/env bash
# The benchmark's smoke test: every scenario of bench/run.sh in quick mode (a few hundred
# sockets, a few seconds) against our server only, debug build, then checks the counts: every
# socket connected, no message lost, every send acknowledged, every broadcast delivered, every
# REST send answered 2xx, every group message at every other member; for presence, every
# reconnect made, every socket in scope `watched`, presence told to watchers and only about
# their partners, and every socket's view of its partners matching who is online after each
# step; for upload, every tus upload created, every PATCH answered 204 with the right
# Upload-Offset, every upload's HEAD at its full length. Never a timing threshold. Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="$(mktemp -d "${TMPDIR:-/tmp}/craftcode-smoke.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

BENCH_PROFILE=debug BENCH_SERVERS=craftcode BENCH_OUT="$OUT" BENCH_PAUSE=1 bench/run.sh --quick >&2

node - "$OUT/latest.json" <<'EOF'
const fs = require("fs");
const lines = fs.readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
let passed = 0;
let failed = 0;
function check(what, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok      ${what}`);
  } else {
    failed++;
    console.log(`FAILED  ${what}: ${JSON.stringify(detail)}`);
  }
}
const get = (scenario) => lines.find((r) => r.scenario === scenario && r.server === "craftcode");
for (const r of lines.filter((r) => r.error)) check(`${r.server} ${r.scenario} ran`, false, r.error);

const idle = get("idle");
check("idle: a result line", !!idle, null);
if (idle) {
  check("idle: every socket connected", idle.connected === idle.sockets && idle.failed === 0, idle);
  check("idle: no socket dropped while held", idle.dropped === 0, idle.dropped);
  check("idle: the server's memory was read", idle.server_rss_per_socket_bytes !== null, idle);
}
const dm = get("dm");
check("dm: a result line", !!dm, null);
if (dm) {
  check("dm: every socket connected", dm.connected === dm.sockets && dm.failed === 0, dm.failures);
  check("dm: messages were sent", dm.sent > 0, dm.sent);
  check("dm: every send acknowledged ok", dm.acked === dm.sent && dm.errors === 0 && dm.unacked === 0, dm);
  check("dm: every acknowledged message delivered once", dm.delivered === dm.acked && dm.duplicates === 0, dm);
  check("dm: zero lost", dm.lost === 0, dm.lost);
}
const fanout = get("fanout");
check("fanout: a result line", !!fanout, null);
if (fanout) {
  check("fanout: every socket connected", fanout.connected === fanout.sockets && fanout.failed === 0, fanout.failures);
  check("fanout: every broadcast answered", fanout.http_errors === 0, fanout.http_errors);
  check(
    "fanout: every broadcast reached every socket",
    fanout.missing === 0 && fanout.delivered === fanout.sockets * fanout.broadcasts,
    fanout,
  );
  check("fanout: the server counted the same recipients", fanout.recipients_reported === fanout.expected, fanout);
}
const rest = get("rest");
check("rest: a result line", !!rest, null);
if (rest) {
  check("rest: every request answered", rest.completed === rest.requests, rest);
  check("rest: every send answered 201", (rest.statuses ?? {})["201"] === rest.requests, rest.statuses);
}
const group = get("group");
check("group: a result line", !!group, null);
if (group) {
  check("group: every socket connected", group.connected === group.sockets && group.failed === 0, group.failures);
  check("group: messages were sent", group.sent > 0, group.sent);
  check("group: every send acknowledged ok", group.acked === group.sent && group.errors === 0 && group.unacked === 0, group);
  check("group: every message reached every other member", group.lost === 0 && group.deliveries === group.deliveries_expected, group);
  check("group: nobody else got one", group.misdelivered === 0, group.misdelivered);
}
const presence = get("presence");
check("presence: a result line", !!presence, null);
if (presence) {
  const steps = presence.steps ?? [];
  check("presence: every socket connected", presence.connected === presence.sockets && presence.failed === 0, presence.failures);
  check("presence: every step measured", steps.length > 0 && steps.every((s) => s.changes > 0), steps);
  check("presence: users reconnected", presence.reconnects > 0, presence.reconnects);
  check("presence: every reconnect succeeded", presence.reconnect_failed === 0, presence.reconnect_failures);
  check("presence: no socket dropped", presence.dropped === 0, presence.dropped);
  check(
    "presence: every socket in scope watched",
    presence.scope_watched === presence.sockets,
    { watched: presence.scope_watched, all: presence.scope_all, unsaid: presence.scope_unsaid, none: presence.scope_none },
  );
  check("presence: watchers were told of changes", presence.presence_frames > 0 && presence.presence_entries > 0, presence);
  check("presence: nobody told about a user it does not watch", presence.outside_partners === 0, presence.outside_partners);
  check("presence: nobody told about their own user", presence.about_self === 0, presence.about_self);
  check(
    "presence: every socket's view of its partners matches who is online",
    presence.stale_views === 0,
    steps.map((s) => s.stale_views),
  );
}
const upload = get("upload");
check("upload: a result line", !!upload, null);
if (upload) {
  const statuses = upload.statuses ?? {};
  check("upload: every upload completed", upload.completed === upload.uploads && upload.failed === 0, upload.failures);
  check("upload: no failed request", upload.non_2xx === 0 && Object.keys(upload.failures ?? {}).length === 0, {
    statuses,
    first_error: upload.first_error,
  });
  check("upload: every upload created (201)", statuses["201"] === upload.uploads, statuses);
  check("upload: every PATCH answered 204", statuses["204"] === upload.uploads * upload.patches_per_upload, statuses);
  check(
    "upload: every final Upload-Offset (PATCH and HEAD) is the upload's length",
    upload.offsets_ok === upload.uploads && upload.bytes === upload.uploads * upload.size_bytes,
    { offsets_ok: upload.offsets_ok, bytes: upload.bytes },
  );
  check("upload: the server's memory was read", upload.server_rss_before_kib !== null && upload.server_rss_peak_kib !== null, upload);
}
console.log(`\nsmoke: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
EOF
