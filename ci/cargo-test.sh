#!/usr/bin/env bash
# The full test suite of the workspace (library and plugin; the plugin's
# integration tests start their own throwaway MariaDB servers).
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
cargo test --workspace
