# shellcheck shell=bash
# Helpers sourced by the benchmark scripts (plugin/bench/*.sh,
# repo/bench/sysbench-repo.sh): the build, a throwaway server with the plugin,
# the sysbench dataset, medians. Not executable on its own. Brings ci/lib.sh.

# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../ci/lib.sh"

TABLES="${TABLES:-8}"
TABLE_SIZE="${TABLE_SIZE:-500000}"
LIB="$TARGET_DIR/release/libHotBackup.so"
PLUGIN="$TARGET_DIR/release/libtokudb_backup.so"
# shellcheck disable=SC2034 # used by the scripts that source this file
TB="$TARGET_DIR/release/tokubackup"

# bench_setup NAME PACKAGE...: the benchmark tools, a release build of the
# packages, and WORK (default: a fresh /var/tmp/NAME.XXXXXX) with the plugin
# in WORK/plugins. On exit the server is killed and WORK removed (unless KEEP).
bench_setup() {
    local name="$1"
    shift
    "$REPO_ROOT/ci/install-deps.sh" --bench
    local p packages=()
    for p in "$@"; do packages+=(-p "$p"); done
    (cd "$REPO_ROOT" && cargo build --release "${packages[@]}" 2>&1 | tail -n 1) >&2
    WORK="${WORK:-$(mktemp -d "/var/tmp/$name.XXXXXX")}"
    mkdir -p "$WORK/plugins"
    ln -sf "$PLUGIN" "$WORK/plugins/tokudb_backup.so"
    SERVER_PID=""
    trap bench_cleanup EXIT
}
bench_cleanup() {
    [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}

# start_server DATADIR ERROR_LOG PRELOAD(0|1|uring_off) [SERVER OPTION...]:
# mariadbd with the plugin loaded, libHotBackup preloaded (1), preloaded with
# io_uring turned off (uring_off) or not (0); SERVER_PID is its pid.
start_server() {
    local d="$1" err="$2" preload="$3" env=()
    shift 3
    [ "$preload" = 1 ] && env=(env "LD_PRELOAD=$LIB")
    [ "$preload" = uring_off ] && env=(env "LD_PRELOAD=$LIB" HOTBACKUP_IO_URING=off)
    "${env[@]}" mariadbd --no-defaults --datadir="$d" --socket="$d/sock" --skip-networking \
        --user=root --pid-file="$d/pid" --log-error="$err" --plugin-dir="$WORK/plugins" \
        --plugin-load-add=tokudb_backup.so --log-bin=mysql-bin --server-id=1 \
        --innodb-buffer-pool-size=512M "$@" 2>/dev/null &
    SERVER_PID=$!
    disown
    wait_for_server "$d/sock" "" 300 || { tail -n 30 "$err" >&2; die "server did not start"; }
}
stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

# sb DATADIR TEST [OPTION...] COMMAND: sysbench TEST on the TABLES x
# TABLE_SIZE tables of database sbtest of the server of DATADIR.
sb() {
    local d="$1" test="$2"
    shift 2
    sysbench "$test" --db-driver=mysql --mysql-socket="$d/sock" --mysql-user=root \
        --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE" "$@"
}

# sysbench_prepare DATADIR: the dataset of BENCHMARKS.md in its running server.
sysbench_prepare() {
    mariadb_client "$1/sock" "CREATE DATABASE sbtest"
    sb "$1" oltp_write_only --threads=2 prepare >/dev/null
    # The binary log of the load itself is not part of the dataset
    # (mariabackup does not copy binlogs either).
    mariadb_client "$1/sock" "RESET MASTER"
}

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }

# median_of: the median of the numbers on stdin, "-" when there are none.
median_of() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# median KEY: the median of KEY=value over the lines of $WORK/results.
median() {
    tr ' ' '\n' <"$WORK/results" | sed -n "s/^$1=//p" | median_of
}
