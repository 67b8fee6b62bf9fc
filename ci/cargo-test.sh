#!/usr/bin/env bash
# The full test suite of the workspace (library and plugin; the plugin's
# integration tests start their own throwaway MariaDB servers).
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
# CI runs the randomized capture test for hundreds of iterations per symbol
# set (a developer's plain `cargo test` runs fewer); a failure prints its seed.
export HOTBACKUP_STRESS_ITERATIONS="${HOTBACKUP_STRESS_ITERATIONS:-300}"
cargo test --workspace
