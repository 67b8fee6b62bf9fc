#!/usr/bin/env bash
# Formatting, clippy with warnings as errors, and shellcheck of the scripts.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
apt_install shellcheck

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Only warnings and errors fail (style notes are shown by shellcheck itself
# when run by hand).
shellcheck -x -S warning ci/*.sh .ci/run debian/tokudb-backup-plugin/postinst debian/tokudb-backup-plugin/postrm
for s in rpm/*.sh.in; do sh -n "$s"; done
log "ok: rustfmt, clippy -D warnings, shellcheck"
