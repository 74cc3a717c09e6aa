#!/usr/bin/env bash
# The Socket Monitor's browser test: a real headless Chromium against a real craftcode server.
# Installs Chromium from the system packages when it is missing, installs the npm packages, and
# runs the test against CRAFTCODE_BIN (default: target/debug/craftcode; build it first with
# `cargo build`). Any failure stops the script with a non-zero exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/test-env.sh
source "$here/../../scripts/test-env.sh"
# A relative CRAFTCODE_BIN is relative to where the script was called from.
export_craftcode_bin "${CRAFTCODE_BIN:-$here/../../target/debug/craftcode}"
ensure_chromium
cd "$here"

# playwright-core never downloads a browser; this only makes sure nothing else tries.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund
npm test
