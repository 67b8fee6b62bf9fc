#!/usr/bin/env bash
# Follow the release tarball's README into a temporary prefix: unpack, preload
# the library through mysqld_safe's malloc-lib, point plugin_dir at the
# prefix, INSTALL PLUGIN, take a backup and verify it on a restored server.
# Uses only its own option file (--defaults-file), so an installed .deb
# cannot help it pass.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

VERSION="$(workspace_version)"
NAME="tokudb-backup-plugin-$VERSION-x86_64-linux"
TARBALL="$PKG_DIR/$NAME.tar.gz"
[ -f "$TARBALL" ] || die "$TARBALL missing: run ci/build-packages.sh first"

WORK="$(mktemp -d /tmp/tokudb-tarball-test.XXXXXX)"
SAFE_PID=""
cleanup() {
    local rc=$?
    if [ -s "$WORK/mariadbd.pid" ]; then stop_pid "$(cat "$WORK/mariadbd.pid")"; fi
    [ -z "$SAFE_PID" ] || { kill "$SAFE_PID" 2>/dev/null || true; wait "$SAFE_PID" 2>/dev/null || true; }
    [ "$rc" -eq 0 ] || tail -40 "$WORK/err.log" 2>/dev/null >&2 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

unpack() {
    # README step 1, with the temporary directory as /opt.
    tar xzf "$TARBALL" -C "$WORK"
    PREFIX="$WORK/$NAME"
    local f
    for f in lib/libHotBackup.so.1 lib/mysql/plugin/tokudb_backup.so lib/mysql/plugin/tokubackup.so README; do
        [ -e "$PREFIX/$f" ] || die "$f missing in the unpacked tarball"
    done
    # The README's steps name the same option lines this test uses.
    grep -q '^       malloc-lib = .*/lib/libHotBackup.so.1$' "$PREFIX/README" || die "README lacks the malloc-lib step"
    grep -q '^       plugin_dir = .*/lib/mysql/plugin$' "$PREFIX/README" || die "README lacks the plugin_dir step"
}

start_server() {
    init_datadir "$WORK/data"
    local port=$((20000 + RANDOM % 20000))
    # README steps 2 (mysqld_safe malloc-lib) and 3 (plugin_dir).
    cat >"$WORK/my.cnf" <<EOF
[mysqld_safe]
malloc-lib = $PREFIX/lib/libHotBackup.so.1
log-error = $WORK/err.log
skip-syslog
[mysqld]
plugin_dir = $PREFIX/lib/mysql/plugin
datadir = $WORK/data
socket = $WORK/sock
port = $port
bind-address = 127.0.0.1
pid-file = $WORK/mariadbd.pid
log-error = $WORK/err.log
user = root
EOF
    mysqld_safe --defaults-file="$WORK/my.cnf" >"$WORK/safe.out" 2>&1 &
    SAFE_PID=$!
    wait_for_server "$WORK/sock" "$SAFE_PID" 120 || { cat "$WORK/safe.out" >&2; die "server did not start"; }
    MARIADBD_PID="$(pid_from_file "$WORK/mariadbd.pid")"
    grep -q "$PREFIX/lib/libHotBackup.so.$VERSION" "/proc/$MARIADBD_PID/maps" ||
        die "libHotBackup from $PREFIX is not mapped in mariadbd"
    log "ok: mariadbd $MARIADBD_PID maps $PREFIX/lib/libHotBackup.so.$VERSION"
}

plugin_and_backup() {
    # README steps 4 and 5.
    mariadb_client "$WORK/sock" "INSTALL PLUGIN tokudb_backup SONAME 'tokudb_backup.so'"
    [ "$(mariadb_client "$WORK/sock" "SELECT @@tokudb_backup_version")" = "$VERSION" ] ||
        die "tokudb_backup_version is not $VERSION"
    load_sample_data "$WORK/sock"
    [ "$("$PREFIX/bin/tokubackup" --version)" = "tokubackup $VERSION" ] || die "tokubackup --version is not $VERSION"
    TOKUBACKUP="$PREFIX/bin/tokubackup" backup_and_verify "$WORK/sock" "$WORK/backup" "$WORK"
    mariadb-admin --no-defaults --socket="$WORK/sock" -uroot shutdown
    wait "$SAFE_PID" 2>/dev/null || true
    SAFE_PID=""
    log "ok: backup from the tarball install restored and verified"
}

step "unpack $NAME.tar.gz" unpack
step "start MariaDB with the tarball's library preloaded" start_server
step "INSTALL PLUGIN, backup, verify" plugin_and_backup
