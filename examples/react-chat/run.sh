#!/usr/bin/env bash
# The React example's browser test: builds @craftcode/realtime-client (clients/js) and the example,
# then drives it in a real headless Chromium against a real craftcode server (CRAFTCODE_BIN,
# default target/debug/craftcode; build it first with `cargo build`). Installs Chromium from the
# system packages when it is missing. Any failure stops the script with a non-zero exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/test-env.sh
source "$here/../../scripts/test-env.sh"
# A relative CRAFTCODE_BIN is relative to where the script was called from.
export_craftcode_bin "${CRAFTCODE_BIN:-$here/../../target/debug/craftcode}"
ensure_chromium
ensure_coturn

# The example depends on the package by path (file:../../clients/js): it must be built first.
(cd "$here/../../clients/js" && npm ci --no-audit --no-fund && npm run build)

cd "$here"
# playwright-core never downloads a browser; this only makes sure nothing else tries.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund
npm run build
npm test
