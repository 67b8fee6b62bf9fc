#!/usr/bin/env bash
# Descriptors of a MariaDB server during a backup (BENCHMARKS.md, "Engine:
# descriptors during a backup"): more InnoDB tables than the server may keep
# open, a throttled backup through the plugin, and passes of one UPDATE per
# table while it runs. Prints the server's descriptors before the backup,
# the most sampled during it (every 0.1 s), the statements that failed and
# the backup's result.
# Knobs: TABLES (1500), NOFILE (2048, the server's ulimit -n), INNODB_OPEN
# (300, --innodb-open-files), PASSES (2), THROTTLE (20000000 bytes/s),
# LIB (a libHotBackup.so to preload instead of this tree's release build).
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

TABLES="${TABLES:-1500}"
NOFILE="${NOFILE:-2048}"
INNODB_OPEN="${INNODB_OPEN:-300}"
PASSES="${PASSES:-2}"
THROTTLE="${THROTTLE:-20000000}"
command -v mariadbd >/dev/null || PATH="$PATH:/usr/sbin"
command -v mariadbd >/dev/null || die "no mariadbd: run ci/setup.sh"

cargo build --release -p hotbackup -p tokudb_backup >&2
LIB="${LIB:-$TARGET_DIR/release/libHotBackup.so}"
B="$(mktemp -d "$TARGET_DIR/bench-descriptors.XXXXXX")"
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$B"
}
trap cleanup EXIT
mkdir -p "$B/tmp" "$B/plugins"
ln -s "$TARGET_DIR/release/libtokudb_backup.so" "$B/plugins/tokudb_backup.so"
mariadb-install-db --no-defaults --user=root --skip-test-db --auth-root-authentication-method=normal \
    --datadir="$B/data" --tmpdir="$B/tmp" >/dev/null
(
    ulimit -n "$NOFILE"
    # Small redo log, dirty pages flushed at once: the UPDATEs reach the
    # .ibd files (and so the mirrors) while the backup runs.
    exec env LD_PRELOAD="$LIB" mariadbd --no-defaults --datadir="$B/data" --socket="$B/sock" \
        --skip-networking --user=root --log-error="$B/err.log" --plugin-dir="$B/plugins" \
        --tmpdir="$B/tmp" --plugin-load-add=tokudb_backup.so --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=8M --max-connections=20 --innodb-open-files="$INNODB_OPEN" \
        --table-open-cache=200 --table-definition-cache=400 --innodb-flush-log-at-trx-commit=0 \
        --innodb-max-dirty-pages-pct=0 --innodb-io-capacity=20000
) >/dev/null 2>&1 &
PID=$!
sql() { mariadb --no-defaults -S "$B/sock" -uroot -N -B "$@"; }
for _ in $(seq 240); do sql -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
sql -e "SELECT 1" >/dev/null || die "mariadbd did not start: $(tail -5 "$B/err.log")"
fds() { find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

{
    for d in 0 1 2 3; do echo "CREATE DATABASE db0$d;"; done
    for i in $(seq 0 $((TABLES - 1))); do
        printf "CREATE TABLE db0%d.t%05d (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO db0%d.t%05d VALUES (1, 0);\n" \
            $((i % 4)) "$i" $((i % 4)) "$i"
    done
} | sql
before="$(fds)"
log "server: open_files_limit $(sql -e 'SELECT @@open_files_limit'), $TABLES tables, $before descriptors open"

(
    max=0
    while [ ! -e "$B/stop" ]; do
        n="$(fds)"
        if [ "$n" -gt "$max" ]; then max="$n"; echo "$max" >"$B/max"; fi
        sleep 0.1
    done
) &
SAMPLER=$!
sql -e "SET tokudb_backup_throttle=$THROTTLE; SET tokudb_backup_dir='$B/backup'" >"$B/backup.out" 2>&1 &
BACKUP=$!
sleep 1
: >"$B/updates.out"
for _ in $(seq "$PASSES"); do
    for i in $(seq 0 $((TABLES - 1))); do printf "UPDATE db0%d.t%05d SET v = v + 1;\n" $((i % 4)) "$i"; done |
        sql --force >>"$B/updates.out" 2>&1 || true
done
running_at_end="$(kill -0 "$BACKUP" 2>/dev/null && echo yes || echo no)"
backup_rc=0
wait "$BACKUP" || backup_rc=$?
touch "$B/stop"
wait "$SAMPLER"
failed="$(grep -c '^ERROR' "$B/updates.out" || true)"
echo "descriptors: before the backup $before, most during it $(cat "$B/max") (ulimit -n $NOFILE)"
echo "statements: $((PASSES * TABLES)) UPDATEs, $failed failed; backup still running after them: $running_at_end"
if [ "$backup_rc" -eq 0 ]; then
    echo "backup: ok ($(grep -o 'complete:.*' "$B/err.log" | tail -1))"
else
    echo "backup: FAILED: $(grep 'tokudb_backup: backup failed' "$B/err.log" | tail -1 | sed 's/.*backup failed: //')"
fi
grep -m3 '^ERROR' "$B/updates.out" || true
