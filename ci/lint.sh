#!/usr/bin/env bash
# Formatting, clippy with warnings as errors, and shellcheck of the scripts.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
apt_install shellcheck

# All three run even when one fails, so one run lists every finding.
failed=()
cargo fmt --all --check || failed+=("cargo fmt --check")
cargo clippy --workspace --all-targets -- -D warnings || failed+=("clippy -D warnings")
# The MySQL/Percona variants compile other code paths of the plugin.
for v in mysql57 mysql80; do
    cargo clippy -p tokudb_backup --no-default-features --features "$v" --all-targets -- -D warnings ||
        failed+=("clippy $v")
done
# Only warnings and errors fail (style notes show when run by hand).
shellcheck -x -S warning ci/*.sh .ci/run debian/tokudb-backup-plugin/postinst debian/tokudb-backup-plugin/postrm ||
    failed+=(shellcheck)
for s in rpm/*.sh.in; do sh -n "$s" || failed+=("sh -n $s"); done
[ "${#failed[@]}" -eq 0 ] || die "lint failed: ${failed[*]}"
log "ok: rustfmt, clippy -D warnings, shellcheck"
