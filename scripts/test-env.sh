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
