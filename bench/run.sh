#!/usr/bin/env bash
# Runs the benchmark of issue 9: builds the server and the load generator, seeds throw-away
# users into a fresh SQLite file, then for each server (ours on SQLite, then the Node.js
# Socket.IO reference) starts it, runs every scenario with the same parameters, and stops it.
# Writes every result line to $BENCH_OUT/latest.json and the comparison table (ours, Node's,
# ratio) to $BENCH_OUT/latest.md; the previous latest.json is kept as previous.json and the
# table shows how far each of our figures moved since.
# `presence` (issue 16) runs on our server only: the Node reference has no conversations and no
# scoped presence, so there is nothing of its to compare with. Its users are seeded apart, with
# `craftcode seed --partners K`, so the other scenarios' users stay without conversations.
# `upload` (issue 19) runs on our server only too (the reference has no uploads): C concurrent tus
# uploads into a storage folder under the run's temporary folder, removed when the server stops.
#
# Usage: bench/run.sh [--quick]
#   --quick   a few hundred sockets for a few seconds (the smoke test's size)
#
# Parameters (environment; defaults sized for a 2-core machine with a 20,000 open-files cap):
#   BENCH_IDLE_N (19000)   sockets held open by `idle`
#   BENCH_DM_PAIRS (250), BENCH_DM_RATE (5000 msg/s in all), BENCH_DM_SECS (20)
#   BENCH_FANOUT_N (5000), BENCH_FANOUT_K (20 broadcasts)
#   BENCH_REST_M (20000 requests), BENCH_REST_C (64 connections)
#   BENCH_GROUP_GROUPS (100), BENCH_GROUP_MEMBERS (50), BENCH_GROUP_RATE (1000 msg/s in all),
#   BENCH_GROUP_SECS (20): `group`, every member of every group connected
#   BENCH_PRESENCE_N (19000)   users of `presence`, seeded in a ring where each has
#                              BENCH_PRESENCE_K (20) conversation partners (K/2 each side)
#   BENCH_PRESENCE_STEPS ("2000 10000 19000")   online counts measured, up to BENCH_PRESENCE_N
#   BENCH_PRESENCE_RATE (500 reconnects/s with all N online; a step with n online churns
#   rate × n / N, so each user reconnects as often at every step), BENCH_PRESENCE_SECS (20 s
#   measured per step), BENCH_PRESENCE_OFFLINE (2 s a reconnecting user stays away)
#   BENCH_DM_SWEEP ("")    extra `dm` rates to try on our server after the set, e.g. "10000 20000"
#                          (each with enough pairs that every user sends at most 10 msg/s)
#   BENCH_UPLOAD_C (20) uploads at once of BENCH_UPLOAD_MB (50 MiB) each (quick: 4 × 2 MiB),
#   BENCH_UPLOAD_CHUNK_MB (0: the whole file in one PATCH, like tus-js-client): `upload`, MB/s
#                          and the server's RSS before and throughout (C × MB MiB go to disk)
#   BENCH_SERVERS ("craftcode node"), BENCH_SCENARIOS ("idle dm fanout rest group presence upload")
#   BENCH_PROFILE (release | debug), BENCH_OUT (bench/results), BENCH_PAUSE (3 s between runs)
#   BENCH_CRAFTCODE_BIN    another craftcode binary to measure (and seed with) instead of this
#                          checkout's, e.g. a release build of an older commit for an A/B
# Only loopback traffic; every scenario is bounded in count and time and stops by itself.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help)
            sed -n '2,39p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

if ((QUICK)); then
    IDLE_N="${BENCH_IDLE_N:-300}"
    DM_PAIRS="${BENCH_DM_PAIRS:-20}"
    DM_RATE="${BENCH_DM_RATE:-200}"
    DM_SECS="${BENCH_DM_SECS:-3}"
    FANOUT_N="${BENCH_FANOUT_N:-200}"
    FANOUT_K="${BENCH_FANOUT_K:-5}"
    REST_M="${BENCH_REST_M:-500}"
    REST_C="${BENCH_REST_C:-8}"
    GROUP_GROUPS="${BENCH_GROUP_GROUPS:-4}"
    GROUP_MEMBERS="${BENCH_GROUP_MEMBERS:-10}"
    GROUP_RATE="${BENCH_GROUP_RATE:-40}"
    GROUP_SECS="${BENCH_GROUP_SECS:-3}"
    # Above PRESENCE_BROADCAST_MAX (100) online even while some are away: scope `watched`.
    PRESENCE_N="${BENCH_PRESENCE_N:-300}"
    PRESENCE_K="${BENCH_PRESENCE_K:-4}"
    PRESENCE_FIRST_STEPS="150"
    PRESENCE_RATE="${BENCH_PRESENCE_RATE:-20}"
    PRESENCE_SECS="${BENCH_PRESENCE_SECS:-4}"
    UPLOAD_C="${BENCH_UPLOAD_C:-4}"
    UPLOAD_MB="${BENCH_UPLOAD_MB:-2}"
    HOLD=2
else
    IDLE_N="${BENCH_IDLE_N:-19000}"
    DM_PAIRS="${BENCH_DM_PAIRS:-250}"
    DM_RATE="${BENCH_DM_RATE:-5000}"
    DM_SECS="${BENCH_DM_SECS:-20}"
    FANOUT_N="${BENCH_FANOUT_N:-5000}"
    FANOUT_K="${BENCH_FANOUT_K:-20}"
    REST_M="${BENCH_REST_M:-20000}"
    REST_C="${BENCH_REST_C:-64}"
    GROUP_GROUPS="${BENCH_GROUP_GROUPS:-100}"
    GROUP_MEMBERS="${BENCH_GROUP_MEMBERS:-50}"
    GROUP_RATE="${BENCH_GROUP_RATE:-1000}"
    GROUP_SECS="${BENCH_GROUP_SECS:-20}"
    PRESENCE_N="${BENCH_PRESENCE_N:-19000}"
    PRESENCE_K="${BENCH_PRESENCE_K:-20}"
    PRESENCE_FIRST_STEPS="2000 10000"
    PRESENCE_RATE="${BENCH_PRESENCE_RATE:-500}"
    PRESENCE_SECS="${BENCH_PRESENCE_SECS:-20}"
    UPLOAD_C="${BENCH_UPLOAD_C:-20}"
    UPLOAD_MB="${BENCH_UPLOAD_MB:-50}"
    HOLD=5
fi
# The steps below N, then N itself.
presence_steps() {
    local n
    for n in $PRESENCE_FIRST_STEPS; do
        if ((n < PRESENCE_N)); then printf '%s ' "$n"; fi
    done
    printf '%s' "$PRESENCE_N"
}
PRESENCE_STEPS="${BENCH_PRESENCE_STEPS:-$(presence_steps)}"
PRESENCE_OFFLINE="${BENCH_PRESENCE_OFFLINE:-2}"
DM_SWEEP="${BENCH_DM_SWEEP:-}"
UPLOAD_CHUNK_MB="${BENCH_UPLOAD_CHUNK_MB:-0}"
UPLOAD_BYTES=$((UPLOAD_MB * 1024 * 1024))
UPLOAD_CHUNK=$((UPLOAD_CHUNK_MB * 1024 * 1024))
# The server's cap on one upload: its default (100 MiB), or the upload's size when larger.
UPLOAD_MAX=$((UPLOAD_BYTES > 100 * 1024 * 1024 ? UPLOAD_BYTES : 100 * 1024 * 1024))
SERVERS="${BENCH_SERVERS:-craftcode node}"
SCENARIOS="${BENCH_SCENARIOS:-idle dm fanout rest group presence upload}"
PROFILE="${BENCH_PROFILE:-release}"
OUT="${BENCH_OUT:-$ROOT/bench/results}"
PAUSE="${BENCH_PAUSE:-3}"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() {
    printf '\033[31mbench: %s\033[0m\n' "$*" >&2
    exit 1
}

command -v node >/dev/null || die "node not found: the Node reference and the report need Node.js 20"

# Every socket is a file, in the load generator and in the server.
ulimit -n "$(ulimit -Hn)"
echo "open files limit: $(ulimit -n)" >&2

case "$PROFILE" in
    release)
        say "building craftcode and the load generator (release)"
        cargo build --release -p craftcode -p craftcode-loadgen
        BIN="$ROOT/target/release"
        ;;
    debug)
        say "building craftcode and the load generator (debug)"
        cargo build -p craftcode -p craftcode-loadgen
        BIN="$ROOT/target/debug"
        ;;
    *) die "BENCH_PROFILE must be release or debug" ;;
esac
LOADGEN="$BIN/craftcode-loadgen"
# Another build of the server, to compare two commits in one session (A/B).
CRAFTCODE="${BENCH_CRAFTCODE_BIN:-$BIN/craftcode}"

if [[ " $SERVERS " == *" node "* ]]; then
    say "installing the Node reference (npm ci)"
    (cd bench/node-reference && npm ci --no-audit --no-fund --loglevel=error)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/craftcode-bench.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

export JWT_SECRET
JWT_SECRET="bench-$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
DATABASE="sqlite://$WORK/bench.db"
TOKENS="$WORK/tokens.txt"
IDS="$WORK/ids.txt"
ADMIN_EMAIL="bench-admin@bench.invalid"
ADMIN_PASSWORD="bench-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"

USERS=$((IDLE_N > FANOUT_N ? IDLE_N : FANOUT_N))
USERS=$((USERS > 2 * DM_PAIRS ? USERS : 2 * DM_PAIRS))
USERS=$((USERS > GROUP_GROUPS * GROUP_MEMBERS ? USERS : GROUP_GROUPS * GROUP_MEMBERS))
USERS=$((USERS > 2 * UPLOAD_C ? USERS : 2 * UPLOAD_C))
USERS=$((USERS > 1000 ? USERS : 1000))
# A sweep rate of R msg/s runs with R/20 pairs (10 msg/s per user, half the per-user limit).
sweep_pairs() { echo $(($1 / 20 > DM_PAIRS ? $1 / 20 : DM_PAIRS)); }
for rate in $DM_SWEEP; do
    USERS=$((USERS > 2 * $(sweep_pairs "$rate") ? USERS : 2 * $(sweep_pairs "$rate")))
done
say "seeding $USERS users into a fresh SQLite file"
DATABASE_URL="$DATABASE" "$CRAFTCODE" seed --users "$USERS" --tokens-out "$TOKENS" --ids-out "$IDS"
printf '%s' "$ADMIN_PASSWORD" | DATABASE_URL="$DATABASE" "$CRAFTCODE" user create \
    --email "$ADMIN_EMAIL" --name "Bench admin" --admin --password-stdin >/dev/null

RESULTS="$WORK/results.jsonl"
STORAGE="$WORK/uploads"
: >"$RESULTS"

# `presence` has users of its own: user i of the ids file has direct conversations with the
# K/2 users before it and the K/2 after it (cyclically). A craftcode without `seed --partners`
# (an older BENCH_CRAFTCODE_BIN) cannot run it: the run goes on without, and says so.
PRESENCE_TOKENS="$WORK/presence-tokens.txt"
PRESENCE_IDS="$WORK/presence-ids.txt"
if [[ " $SCENARIOS " == *" presence "* && " $SERVERS " == *" craftcode "* ]]; then
    say "seeding $PRESENCE_N users with $PRESENCE_K conversation partners each (presence)"
    if ! DATABASE_URL="$DATABASE" "$CRAFTCODE" seed --users "$PRESENCE_N" --partners "$PRESENCE_K" \
        --tokens-out "$PRESENCE_TOKENS" --ids-out "$PRESENCE_IDS"; then
        printf '{"scenario":"presence","server":"craftcode","error":"craftcode seed --partners failed: not run"}\n' \
            >>"$RESULTS"
        without=""
        for name in $SCENARIOS; do [[ "$name" == presence ]] || without+="$name "; done
        SCENARIOS="$without"
    fi
fi

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_for_port() {
    local port="$1" i
    for ((i = 0; i < 300; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

# The admin's access token on our server (the Node reference takes any bearer).
admin_token() {
    local url="$1"
    ADMIN_EMAIL="$ADMIN_EMAIL" ADMIN_PASSWORD="$ADMIN_PASSWORD" URL="$url" node -e '
        fetch(process.env.URL + "/api/auth/login", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD }),
        }).then(async (r) => {
            const body = await r.json();
            if (!body.token) throw new Error("login answered " + r.status + " " + JSON.stringify(body));
            console.log(body.token);
        }).catch((e) => { console.error(e.message); process.exit(1); });'
}

# Runs one scenario; its JSON line goes to the results, or an error line if it failed.
scenario() {
    local label="$1" name="$2"
    shift 2
    say "$label: $name"
    local line status=0
    line="$("$LOADGEN" "$name" --label "$label" "$@")" || status=$?
    if ((status == 0)) && [[ -n "$line" ]]; then
        printf '%s\n' "$line" >>"$RESULTS"
        printf '%s\n' "$line" >&2
    else
        printf '{"scenario":"%s","server":"%s","error":"the load generator exited with %s"}\n' \
            "$name" "$label" "$status" >>"$RESULTS"
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        printf '{"scenario":"%s","server":"%s","error":"the server died during this scenario"}\n' \
            "$name" "$label" >>"$RESULTS"
        die "$label died during $name"
    fi
    sleep "$PAUSE"
}

run_scenarios() {
    local label="$1" url="$2" admin="$3"
    local common=(--url "$url" --server-pid "$SERVER_PID")
    for name in $SCENARIOS; do
        case "$name" in
            idle) scenario "$label" idle "${common[@]}" --tokens "$TOKENS" -n "$IDLE_N" --hold "$HOLD" ;;
            dm) scenario "$label" dm "${common[@]}" --tokens "$TOKENS" --ids "$IDS" \
                --pairs "$DM_PAIRS" --rate "$DM_RATE" --duration "$DM_SECS" ;;
            fanout) scenario "$label" fanout "${common[@]}" --tokens "$TOKENS" -n "$FANOUT_N" \
                --broadcasts "$FANOUT_K" --admin-token "$admin" ;;
            rest) scenario "$label" rest "${common[@]}" --tokens "$TOKENS" --ids "$IDS" \
                --requests "$REST_M" --concurrency "$REST_C" ;;
            group) scenario "$label" group "${common[@]}" --tokens "$TOKENS" --ids "$IDS" \
                --groups "$GROUP_GROUPS" --members "$GROUP_MEMBERS" --rate "$GROUP_RATE" \
                --duration "$GROUP_SECS" ;;
            presence)
                if [[ "$label" == node ]]; then
                    say "node: presence skipped (the reference has no conversations or scoped presence)"
                    continue
                fi
                scenario "$label" presence "${common[@]}" --tokens "$PRESENCE_TOKENS" \
                    --ids "$PRESENCE_IDS" --partners "$PRESENCE_K" --steps "${PRESENCE_STEPS// /,}" \
                    --rate "$PRESENCE_RATE" --window "$PRESENCE_SECS" --offline "$PRESENCE_OFFLINE"
                ;;
            upload)
                if [[ "$label" == node ]]; then
                    say "node: upload skipped (the reference has no uploads)"
                    continue
                fi
                scenario "$label" upload "${common[@]}" --tokens "$TOKENS" --ids "$IDS" \
                    --uploads "$UPLOAD_C" --size "$UPLOAD_BYTES" --chunk "$UPLOAD_CHUNK"
                ;;
            *) die "unknown scenario $name" ;;
        esac
    done
}

for server in $SERVERS; do
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    case "$server" in
        craftcode)
            say "starting craftcode (SQLite) on $url"
            # Uploads go to a folder of this run (removed when the server stops, see below).
            HOST=127.0.0.1 PORT="$port" DATABASE_URL="$DATABASE" LOG_FORMAT=json \
                STORAGE_URL="file://$STORAGE" UPLOAD_MAX_SIZE="$UPLOAD_MAX" \
                "$CRAFTCODE" serve >"$WORK/craftcode.log" 2>&1 &
            SERVER_PID=$!
            wait_for_port "$port" || { tail -n 20 "$WORK/craftcode.log" >&2; die "craftcode did not start"; }
            admin="$(admin_token "$url")"
            run_scenarios craftcode "$url" "$admin"
            for rate in $DM_SWEEP; do
                scenario craftcode-sweep dm --url "$url" --server-pid "$SERVER_PID" --tokens "$TOKENS" \
                    --ids "$IDS" --pairs "$(sweep_pairs "$rate")" --rate "$rate" --duration "$DM_SECS"
            done
            ;;
        node)
            say "starting the Node reference on $url"
            HOST=127.0.0.1 PORT="$port" node bench/node-reference/server.js >"$WORK/node.log" 2>&1 &
            SERVER_PID=$!
            wait_for_port "$port" || { tail -n 20 "$WORK/node.log" >&2; die "the Node reference did not start"; }
            # Any bearer may broadcast on the reference; a seeded user's token will do.
            run_scenarios node "$url" "$(head -n 1 "$TOKENS")"
            ;;
        *) die "unknown server $server (craftcode or node)" ;;
    esac
    stop_server
    # What `upload` wrote (C × MB MiB): gone before the next server, not only at the end.
    rm -rf "$STORAGE"
done

mkdir -p "$OUT"
[[ -f "$OUT/latest.json" ]] && cp "$OUT/latest.json" "$OUT/previous.json"
{
    RUSTC="$(rustc --version)" NODE_VERSION="$(node --version)" \
        COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        DIRTY="$(git status --porcelain -- src migrations build.rs Cargo.toml Cargo.lock bench ':!bench/results' 2>/dev/null | head -c 1)" \
        PROFILE="$PROFILE" QUICK="$QUICK" USERS="$USERS" \
        PARAMS="idle n=$IDLE_N; dm pairs=$DM_PAIRS rate=$DM_RATE secs=$DM_SECS; fanout n=$FANOUT_N k=$FANOUT_K; rest m=$REST_M c=$REST_C; group g=$GROUP_GROUPS m=$GROUP_MEMBERS rate=$GROUP_RATE secs=$GROUP_SECS; presence n=$PRESENCE_N k=$PRESENCE_K steps=$PRESENCE_STEPS rate=$PRESENCE_RATE secs=$PRESENCE_SECS offline=$PRESENCE_OFFLINE; upload c=$UPLOAD_C mib=$UPLOAD_MB chunk_mib=$UPLOAD_CHUNK_MB" \
        node -e '
        const os = require("os");
        let socketio = null;
        try { socketio = require("./bench/node-reference/node_modules/socket.io/package.json").version; } catch {}
        const e = process.env;
        console.log(JSON.stringify({
            scenario: "meta", date: new Date().toISOString(), commit: e.COMMIT + (e.DIRTY ? "+dirty" : ""),
            rustc: e.RUSTC, node: e.NODE_VERSION, socketio, cpus: os.cpus().length,
            memory_gib: Math.round(os.totalmem() / 2 ** 30), profile: e.PROFILE, quick: e.QUICK === "1",
            users_seeded: Number(e.USERS), params: e.PARAMS,
        }));'
    cat "$RESULTS"
} >"$OUT/latest.json"
node bench/report.mjs "$OUT/latest.json" "$OUT/previous.json" >"$OUT/latest.md"
say "results: $OUT/latest.json and $OUT/latest.md"
cat "$OUT/latest.md"
