#!/usr/bin/env bash
# Install the .debs with apt on this machine, start MariaDB through
# mysqld_safe reading the system option files (so the packaged snippet in
# /etc/mysql/mariadb.conf.d is what preloads the library), next to a user's
# own "malloc-lib = jemalloc"; check /proc/PID/maps of mariadbd, INSTALL
# PLUGIN under both names, take a backup and verify it on a restored server;
# then purge and check that nothing the packages installed is left.
# The server is a throwaway one (temporary datadir, own socket and port on
# 127.0.0.1), never the system service. Safe to run again after a failure.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
apt_install mariadb-server mariadb-client libjemalloc2 dpkg-dev

VERSION="$(workspace_version)"
MA="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
PKGS=(libhotbackup1 libhotbackup-dev tokudb-backup-plugin)
DEBS=("$PKG_DIR"/libhotbackup1_"$VERSION"-1_*.deb "$PKG_DIR"/libhotbackup-dev_"$VERSION"-1_*.deb
    "$PKG_DIR"/tokudb-backup-plugin_"$VERSION"-1_*.deb)
for d in "${DEBS[@]}"; do [ -f "$d" ] || die "$d missing: run ci/build-packages.sh first"; done

WORK="$(mktemp -d /tmp/tokudb-deb-test.XXXXXX)"
SAFE_PID=""
cleanup() {
    local rc=$?
    if [ -s "$WORK/mariadbd.pid" ]; then stop_pid "$(cat "$WORK/mariadbd.pid")"; fi
    [ -z "$SAFE_PID" ] || { kill "$SAFE_PID" 2>/dev/null || true; wait "$SAFE_PID" 2>/dev/null || true; }
    if [ "$rc" -ne 0 ]; then
        log "--- error log of the server:"
        tail -40 "$WORK/err.log" 2>/dev/null >&2 || true
    fi
    rm -rf "$WORK"
    # Leave the machine as it was, also after a failure.
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${PKGS[@]}" >/dev/null 2>&1 || true
}
trap cleanup EXIT

install_debs() {
    # A previous run that died may have left them installed.
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${PKGS[@]}" >/dev/null 2>&1 || true
    # The documented command (README "Installing"), with ./ paths.
    (cd "$PKG_DIR" && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "./$(basename "${DEBS[0]}")" "./$(basename "${DEBS[1]}")" "./$(basename "${DEBS[2]}")" >/dev/null)
    local p
    for p in "${PKGS[@]}"; do
        [ "$(dpkg-query -W -f='${Status} ${Version}' "$p")" = "install ok installed $VERSION-1" ] ||
            die "$p is not installed at $VERSION-1"
    done
    local f
    for f in "/usr/lib/$MA/libHotBackup.so.1" "/usr/lib/$MA/libHotBackup.so.$VERSION" \
        /usr/lib/mysql/plugin/tokudb_backup.so /usr/lib/mysql/plugin/tokubackup.so; do
        [ -f "$f" ] || die "$f is missing after install"
    done
    # The ldconfig trigger ran: the loader cache knows the library.
    grep -qE "libHotBackup.so.1 .*=> (/usr)?/lib/$MA/libHotBackup.so.1$" <<<"$(ldconfig -p)" ||
        die "ldconfig cache has no libHotBackup.so.1"
    dpkg -L "${PKGS[@]}" | sort -u >"$WORK/installed-paths"
}

check_dev_package() {
    # Compile and link a C program with the pkg-config flags; it prints the
    # library's tokubackup_version_string, which must be Cargo.toml's version.
    cat >"$WORK/api.c" <<'EOF'
#include <stdio.h>
#include <backup.h>
int main(void) { printf("%s\n", tokubackup_version_string); return 0; }
EOF
    # shellcheck disable=SC2046 # pkg-config prints separate flags
    cc -Wall -Werror -o "$WORK/api" "$WORK/api.c" $(pkg-config --cflags --libs hotbackup)
    [ "$("$WORK/api")" = "$VERSION" ] || die "tokubackup_version_string is '$("$WORK/api")', expected $VERSION"
}

start_mysqld_safe() {
    init_datadir "$WORK/data"
    PORT=$((20000 + RANDOM % 20000))
    # A user's own option file: jemalloc through malloc-lib, as documented by
    # MariaDB; read after /etc/mysql/my.cnf (which includes our snippet).
    cat >"$WORK/user.cnf" <<EOF
[mysqld_safe]
malloc-lib = jemalloc
log-error = $WORK/err.log
skip-syslog
[mysqld]
datadir = $WORK/data
socket = $WORK/sock
port = $PORT
bind-address = 127.0.0.1
pid-file = $WORK/mariadbd.pid
log-error = $WORK/err.log
user = root
log-bin = mysql-bin
server-id = 1
innodb-buffer-pool-size = 128M
EOF
    mysqld_safe --defaults-extra-file="$WORK/user.cnf" >"$WORK/safe.out" 2>&1 &
    SAFE_PID=$!
    wait_for_server "$WORK/sock" "$SAFE_PID" 120 || { cat "$WORK/safe.out" >&2; die "server did not start through mysqld_safe"; }
    MARIADBD_PID="$(pid_from_file "$WORK/mariadbd.pid")"
    [ "$(readlink "/proc/$MARIADBD_PID/exe")" = /usr/sbin/mariadbd ] || die "pid $MARIADBD_PID is not mariadbd"
    log "mariadbd pid $MARIADBD_PID (mysqld_safe pid $SAFE_PID), port $PORT"
}

check_preload() {
    local maps="/proc/$MARIADBD_PID/maps"
    grep -q "/usr/lib/$MA/libHotBackup.so.$VERSION" "$maps" || {
        tr '\0' '\n' <"/proc/$MARIADBD_PID/environ" | grep '^LD_PRELOAD' >&2 || true
        die "libHotBackup is not mapped in mariadbd ($maps)"
    }
    grep -q "/usr/lib/$MA/libjemalloc.so" "$maps" || die "the user's malloc-lib=jemalloc is no longer preloaded"
    log "ok: $maps has libHotBackup.so.$VERSION and libjemalloc (LD_PRELOAD=$(tr '\0' '\n' <"/proc/$MARIADBD_PID/environ" | sed -n 's/^LD_PRELOAD=//p'))"
}

install_plugin() {
    local sock="$WORK/sock" got
    # The 5.6-era name first, then the current one: both must load.
    mariadb_client "$sock" "INSTALL PLUGIN tokudb_backup SONAME 'tokubackup.so'"
    mariadb_client "$sock" "UNINSTALL PLUGIN tokudb_backup"
    mariadb_client "$sock" "INSTALL PLUGIN tokudb_backup SONAME 'tokudb_backup.so'"
    got="$(mariadb_client "$sock" "SELECT PLUGIN_STATUS, PLUGIN_LIBRARY FROM information_schema.PLUGINS WHERE PLUGIN_NAME='tokudb_backup'")"
    [ "$got" = "$(printf 'ACTIVE\ttokudb_backup.so')" ] || die "plugin status: '$got'"
    got="$(mariadb_client "$sock" "SELECT @@tokudb_backup_plugin_version")"
    [ "$got" = "$VERSION" ] || die "tokudb_backup_plugin_version is '$got', expected $VERSION"
    got="$(mariadb_client "$sock" "SELECT @@tokudb_backup_version")"
    [ "$got" = "$VERSION" ] || die "tokudb_backup_version is '$got', expected $VERSION"
    # The descriptor's version number is major<<8 | minor, shown as "major.minor".
    got="$(mariadb_client "$sock" "SELECT PLUGIN_VERSION FROM information_schema.PLUGINS WHERE PLUGIN_NAME='tokudb_backup'")"
    [ "$got" = "$(cut -d. -f1,2 <<<"$VERSION")" ] || die "plugin descriptor version is '$got', expected ${VERSION%.*}"
    log "ok: INSTALL PLUGIN (tokubackup.so and tokudb_backup.so), versions $VERSION"
}

backup() {
    load_sample_data "$WORK/sock"
    [ "$(tokubackup --version)" = "tokubackup $VERSION" ] || die "tokubackup --version is not $VERSION"
    man -w tokubackup-restore >/dev/null 2>&1 || [ -f /usr/share/man/man1/tokubackup-restore.1.gz ] ||
        die "no man page tokubackup-restore"
    TOKUBACKUP=/usr/bin/tokubackup backup_and_verify "$WORK/sock" "$WORK/backup" "$WORK" --log-bin=mysql-bin --server-id=1
    [ -f "$WORK/backup/tokubackup_binlog_info" ] || die "backup has no tokubackup_binlog_info (binary log is on)"
    log "ok: backup taken, restored and verified"
}

stop_server() {
    mariadb-admin --no-defaults --socket="$WORK/sock" -uroot shutdown
    wait "$SAFE_PID" 2>/dev/null || true
    SAFE_PID=""
    if [ -e "/proc/$MARIADBD_PID" ]; then die "mariadbd $MARIADBD_PID still runs after shutdown"; fi
}

purge_debs() {
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${PKGS[@]}" >/dev/null
    local p left=()
    for p in "${PKGS[@]}"; do
        local st
        st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
        case "$st" in "" | *not-installed) ;; *) die "$p is still known to dpkg after purge: $st" ;; esac
    done
    # Every file and link the packages had is gone (directories shared with
    # other packages, like /usr/lib/mysql/plugin, may stay).
    while read -r p; do
        if { [ -L "$p" ] || [ -f "$p" ]; } && [ ! -d "$p" ]; then left+=("$p"); fi
    done <"$WORK/installed-paths"
    [ "${#left[@]}" -eq 0 ] || die "left behind after purge: ${left[*]}"
    [ ! -e /etc/mysql/mariadb.conf.d/60-tokudb-backup.cnf ] || die "conffile left after purge"
    [ ! -e /lib/systemd/system/mariadb.service.d ] || die "empty drop-in directory left after purge"
    if grep -q libHotBackup <<<"$(ldconfig -p)"; then die "ldconfig cache still lists libHotBackup"; fi
    log "ok: purge removed $(wc -l <"$WORK/installed-paths") paths, no conffiles or dpkg state left"
}

step "apt-get install ./libhotbackup1_*.deb ./libhotbackup-dev_*.deb ./tokudb-backup-plugin_*.deb" install_debs
step "libhotbackup-dev: build a C program against the API" check_dev_package
step "start MariaDB through mysqld_safe" start_mysqld_safe
step "preload seen in /proc/PID/maps" check_preload
step "INSTALL PLUGIN" install_plugin
step "backup and verify" backup
step "stop the server" stop_server
step "apt-get purge" purge_debs
