#!/usr/bin/env bash
# Build the plugin for every server ABI it supports (cargo features of
# plugin/Cargo.toml: mariadb = MariaDB 10.11+, mysql57, mysql80 = MySQL and
# Percona Server 5.7 / 8.0) and check that each cdylib declares the plugin
# interface of its server family. Only MariaDB can be loaded on this machine;
# the others are built, not run.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
apt_install binutils

# Feature names, from the [features] table of plugin/Cargo.toml.
mapfile -t FEATURES < <(sed -n '/^\[features\]/,/^\[/p' plugin/Cargo.toml | sed -n 's/^\([a-z0-9_]*\) *=.*/\1/p' | grep -vx default)
if [ "${#FEATURES[@]}" -eq 0 ]; then
    log "SKIP: plugin/Cargo.toml declares no server features yet; only the default build is checked"
    exit 0
fi
for want in mariadb mysql57 mysql80; do
    [[ " ${FEATURES[*]} " == *" $want "* ]] || die "plugin/Cargo.toml has no '$want' feature (has: ${FEATURES[*]})"
done

for f in "${FEATURES[@]}"; do
    cargo build -p tokudb_backup --no-default-features --features "$f"
    so="$TARGET_DIR/debug/libtokudb_backup.so"
    syms="$(nm -D --defined-only "$so")"
    case "$f" in
        mariadb) expect=_maria_plugin_interface_version_ ;;
        *) expect=_mysql_plugin_interface_version_ ;;
    esac
    grep -q " $expect$" <<<"$syms" || die "plugin built with --features $f does not export $expect"
    grep -q " _mysql_plugin_declarations_$\| _maria_plugin_declarations_$" <<<"$syms" ||
        die "plugin built with --features $f exports no plugin declarations"
    log "ok: --features $f builds and exports $expect"
done
