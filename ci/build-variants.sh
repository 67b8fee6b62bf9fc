#!/usr/bin/env bash
# Build the plugin for every server ABI it supports (cargo features of
# plugin/Cargo.toml: mariadb = MariaDB 10.11+, mysql57, mysql80 = MySQL and
# Percona Server 5.7 / 8.0) and check that each cdylib declares the plugin
# interface of its server family. Only MariaDB can be run on this machine;
# the MySQL builds are loaded by plugin/tests/c/mysql_load_host.c, which
# applies sql_plugin.cc's load checks with each release's numbers
# (plugin/tests/abi/) and reads every variable as that server would.
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
    # The unit tests of the variant: its layouts against the measured
    # numbers (plugin/tests/abi/), binlog formats, version checks.
    [ "$f" = mariadb ] || cargo test -p tokudb_backup --no-default-features --features "$f" --lib
    mkdir -p "$TARGET_DIR/variants"
    cp "$so" "$TARGET_DIR/variants/tokudb_backup-$f.so"
done

# host NAME CFLAGS...: the stand-in server, exporting one release's names.
HOSTS="$TARGET_DIR/variants"
host() {
    local name="$1"; shift
    cc -Wall -Wextra -Werror -O1 -rdynamic "$@" -o "$HOSTS/host-$name" plugin/tests/c/mysql_load_host.c -ldl
}
host c
host cxx -DMYSQL80
host bitmask -DMYSQL80 -DACCESS_BITMASK
host nocga -DNO_CHECK_GLOBAL_ACCESS
host noqtext -DNO_QUERY_TEXT

# loads HOST ABI VARIANT SERVER_VERSION: the release would load and read it.
loads() {
    local out
    out="$("$HOSTS/host-$1" "plugin/tests/abi/$2.txt" "$HOSTS/tokudb_backup-$3.so" "$4" 2>&1)" ||
        die "tokudb_backup-$3.so in a $4 server ($2 numbers, $1 names):"$'\n'"$out"
    log "ok: tokudb_backup-$3.so loads into $4 ($2 numbers, $1 names)"
}
# refused HOST ABI VARIANT SERVER_VERSION WHY: that server would refuse it, saying WHY.
refused() {
    local out
    if out="$("$HOSTS/host-$1" "plugin/tests/abi/$2.txt" "$HOSTS/tokudb_backup-$3.so" "$4" 2>&1)"; then
        die "tokudb_backup-$3.so should not load into $4 ($2 numbers, $1 names):"$'\n'"$out"
    fi
    grep -q -- "$5" <<<"$out" || die "refusal of tokudb_backup-$3.so by $4 does not say '$5':"$'\n'"$out"
    log "ok: $4 refuses tokudb_backup-$3.so: $5"
}
# Oracle and Percona, first and last point releases, 5.7's plain C names,
# 8.0's mangled ones and 8.0.39's renamed check_global_access.
loads c my5741 mysql57 5.7.9
loads c my5741 mysql57 5.7.41-log
loads c my5741 mysql57 5.7.44
loads c my5741 mysql57 5.7.42-0ubuntu0.18.04.1-log
loads c ps5722 mysql57 5.7.22-22-log
loads c ps5722 mysql57 5.7.44-48
loads cxx my8040 mysql80 8.0.11
loads cxx ps8027 mysql80 8.0.27-18
loads cxx my8040 mysql80 8.0.36
loads bitmask my8040 mysql80 8.0.40
loads bitmask ps8027 mysql80 8.0.44-35-log
# What a real server would refuse: another family's or series' build, and a
# server without a function the plugin needs (a clear error at INSTALL).
refused c my5741 mariadb 5.7.41 "no _mysql_plugin_interface_version_"
refused cxx my8040 mysql57 8.0.40 "sizeof(st_mysql_plugin)"
refused nocga my5741 mysql57 5.7.41 "does not export what the plugin needs: check_global_access"
refused cxx my8040 mysql80 8.4.3 "built for the 8.0 series"

# A whole backup inside the stand-in server (5.7 and 8.0 builds), with
# libHotBackup preloaded: the directories come from the server's variables
# (datadir, undo directory outside it), a 5.7 DATA DIRECTORY tablespace from
# its .isl file, another one (no .isl file, outside every known directory)
# from SQL that the plugin runs through the host's srv_session and command
# services, and the binlog position and GTID set from a MySQL binlog the
# host writes (transaction 7 cut after its rows).
cargo build -p hotbackup
backup_in_host() { # backup_in_host HOST ABI VARIANT SERVER_VERSION
    local fx="$HOSTS/fixture-$3" out
    rm -rf "$fx"
    mkdir -p "$fx/data/db1" "$fx/undo" "$fx/ext/db1" "$fx/ext2/db1" "$fx/binlog"
    printf 'ibdata' >"$fx/data/ibdata1"
    printf 'rows' >"$fx/data/db1/t.ibd"
    printf 'undo' >"$fx/undo/undo_001"
    printf 'remote' >"$fx/ext/db1/t1.ibd"
    printf '%s' "$fx/ext/db1/t1.ibd" >"$fx/data/db1/t1.isl"
    printf 'sql only' >"$fx/ext2/db1/t2.ibd"
    out="$(HOST_SQL_TABLESPACES="$fx/ext2/db1/t2.ibd:$fx/ext/db1/t1.ibd" HOST_DATADIR="$fx/data" HOST_UNDO_DIR="$fx/undo" HOST_BINLOG_DIR="$fx/binlog" \
        HOST_BACKUP_TO="$fx/backup" LD_PRELOAD="${HOST_LIB:-$TARGET_DIR/debug/libHotBackup.so}" timeout 300 \
        "$HOSTS/host-$1" "plugin/tests/abi/$2.txt" "$HOSTS/tokudb_backup-$3.so" "$4" 2>&1)" ||
        die "backup by tokudb_backup-$3.so in a $4 server:"$'\n'"$out"
    local b="$fx/backup" f
    for f in mysql_data_dir/ibdata1 mysql_data_dir/db1/t.ibd innodb_undo_dir/undo_001 \
        data_directory_1/t1.ibd data_directory_2/t2.ibd mysql_log_bin/binlog.000001 BACKUP-COMPLETE; do
        [ -f "$b/$f" ] || die "backup in a $4 server has no $f:"$'\n'"$(cd "$b" && find . | sort)"$'\n'"$out"
    done
    local safe want
    safe="$(sed -n 's/.*transaction 6 ends at \([0-9]*\).*/\1/p' <<<"$out")"
    want="$(printf 'binlog.000001\t%s\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-6' "$safe")"
    [ "$(cat "$b/tokubackup_binlog_info")" = "$want" ] ||
        die "binlog position in a $4 server: '$(cat "$b/tokubackup_binlog_info")', expected '$want'"
    grep -q "\"server_version\": \"$4\"" "$b/backup-manifest.json" || die "manifest of a $4 server lacks its version"
    log "ok: tokudb_backup-$3.so backs up in a $4 server (directories from its variables, .isl, SQL, MySQL binlog position)"
}
# sql_refused HOST ABI VARIANT SERVER_VERSION ENV WHY: the server refuses the
# plugin's SQL (ENV=1 in the host): the backup still completes, without the
# tablespace only SQL names, and the error log says why.
sql_refused() {
    local fx="$HOSTS/fixture-$3" out
    rm -rf "$fx/backup"
    out="$(env "$5=1" HOST_SQL_TABLESPACES="$fx/ext2/db1/t2.ibd" HOST_DATADIR="$fx/data" HOST_UNDO_DIR="$fx/undo" \
        HOST_BACKUP_TO="$fx/backup" LD_PRELOAD="$TARGET_DIR/debug/libHotBackup.so" timeout 300 \
        "$HOSTS/host-$1" "plugin/tests/abi/$2.txt" "$HOSTS/tokudb_backup-$3.so" "$4" 2>&1)" ||
        die "backup by tokudb_backup-$3.so in a $4 server that refuses its SQL:"$'\n'"$out"
    [ -f "$fx/backup/BACKUP-COMPLETE" ] && [ ! -e "$fx/backup/data_directory_2" ] ||
        die "backup without SQL in a $4 server:"$'\n'"$(cd "$fx/backup" && find . | sort)"
    grep -q "\[Warning\] tokudb_backup: cannot list the InnoDB tablespace files in SQL (.*$6" <<<"$out" ||
        die "no warning naming '$6' when a $4 server refuses the plugin's SQL:"$'\n'"$out"
    log "ok: tokudb_backup-$3.so backs up without SQL in a $4 server, warning: $6"
}
backup_in_host c my5741 mysql57 5.7.41-log
backup_in_host cxx my8040 mysql80 8.0.36
# exclude_in_host HOST ABI VARIANT SERVER_VERSION ENV COPIED: a backup
# with tokudb_backup_exclude='/db1/t\.ibd$' checked in the same SET
# (HOST_EXCLUDE) or in an earlier, failed one (HOST_STALE_EXCLUDE);
# COPIED says whether db1/t.ibd must be in the backup.
exclude_in_host() {
    local fx="$HOSTS/fixture-$3" out
    rm -rf "$fx/backup"
    out="$(env "$5=/db1/t\.ibd$" HOST_DATADIR="$fx/data" HOST_UNDO_DIR="$fx/undo" HOST_BACKUP_TO="$fx/backup" \
        LD_PRELOAD="$TARGET_DIR/debug/libHotBackup.so" timeout 300 \
        "$HOSTS/host-$1" "plugin/tests/abi/$2.txt" "$HOSTS/tokudb_backup-$3.so" "$4" 2>&1)" ||
        die "backup by tokudb_backup-$3.so in a $4 server ($5):"$'\n'"$out"
    [ -f "$fx/backup/mysql_data_dir/db1/t.ibd" ] && copied=yes || copied=no
    [ -f "$fx/backup/BACKUP-COMPLETE" ] && [ "$copied" = "$6" ] ||
        die "$5 in a $4 server ($1 names): db1/t.ibd copied: $copied, expected $6:"$'\n'"$out"
    log "ok: tokudb_backup-$3.so in a $4 server ($1 names), $5: db1/t.ibd copied: $6"
}
exclude_in_host c my5741 mysql57 5.7.41-log HOST_EXCLUDE no
exclude_in_host c my5741 mysql57 5.7.41-log HOST_STALE_EXCLUDE yes
exclude_in_host cxx my8040 mysql80 8.0.36 HOST_EXCLUDE no
exclude_in_host cxx my8040 mysql80 8.0.36 HOST_STALE_EXCLUDE yes
# Without thd_query_safe the statement cannot be told apart: the backup
# takes the session's values (the exclude checked in its SET is not used).
exclude_in_host noqtext my5741 mysql57 5.7.41-log HOST_EXCLUDE yes
sql_refused c my5741 mysql57 5.7.41-log HOST_SQL_ERROR "error 1227 (42000): Access denied"
sql_refused cxx my8040 mysql80 8.0.36 HOST_SQL_NO_SESSION "cannot open a server session: error 1040"
sql_refused cxx my8040 mysql80 8.0.36 HOST_NO_ACCOUNT 'cannot run as "backup_admin"@"localhost": no such account'

# The MySQL builds that the tarball and the -mysql57/-mysql80 RPMs ship are
# glibc 2.17 builds (README "Which systems"): the same load and backup
# checks on them, with the 2.17 library preloaded.
build_glibc_floor
for f in mysql57 mysql80; do
    zigbuild -p tokudb_backup --lib --no-default-features --features "$f"
    cp "$GLIBC_BUILD_DIR/libtokudb_backup.so" "$HOSTS/tokudb_backup-$f-glibc$GLIBC_FLOOR.so"
done
zigbuild -p tokudb_backup --lib # the MariaDB build back in its place
loads c my5741 "mysql57-glibc$GLIBC_FLOOR" 5.7.44
loads cxx my8040 "mysql80-glibc$GLIBC_FLOOR" 8.0.36
loads bitmask ps8027 "mysql80-glibc$GLIBC_FLOOR" 8.0.44-35-log
HOST_LIB="$GLIBC_BUILD_DIR/libHotBackup.so" backup_in_host c my5741 "mysql57-glibc$GLIBC_FLOOR" 5.7.41-log
HOST_LIB="$GLIBC_BUILD_DIR/libHotBackup.so" backup_in_host cxx my8040 "mysql80-glibc$GLIBC_FLOOR" 8.0.36
