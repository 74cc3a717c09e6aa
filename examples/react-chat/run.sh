#!/usr/bin/env bash
# The React example's browser test: builds @craftcode/realtime-client (clients/js) and the example,
# then drives it in a real headless Chromium against a real craftcode server (CRAFTCODE_BIN,
# default target/debug/craftcode; build it first with `cargo build`). Installs Chromium from the
# system packages when it is missing. Any failure stops the script with a non-zero exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# A relative CRAFTCODE_BIN is relative to where the script was called from.
bin=${CRAFTCODE_BIN:-$here/../../target/debug/craftcode}
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac

CHROMIUM_PATH=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM_PATH" ]; then
  echo "examples/react-chat: $CHROMIUM_PATH is missing; installing Chromium from the system packages" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  if [ ! -x "$CHROMIUM_PATH" ]; then
    echo "error: Chromium was installed but $CHROMIUM_PATH is still missing" >&2
    exit 1
  fi
fi
export CHROMIUM_PATH

if [ ! -x "$bin" ]; then
  echo "error: the craftcode binary $bin does not exist: run \`cargo build\` first (or set CRAFTCODE_BIN)" >&2
  exit 1
fi
CRAFTCODE_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
export CRAFTCODE_BIN

# The example depends on the package by path (file:../../clients/js): it must be built first.
(cd "$here/../../clients/js" && npm ci --no-audit --no-fund && npm run build)

cd "$here"
# playwright-core never downloads a browser; this only makes sure nothing else tries.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund
npm run build
npm test
