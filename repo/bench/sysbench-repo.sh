#!/usr/bin/env bash
# tokubackup with a repository on a three-node Garage cluster (the harness of
# repo/tests), on the sysbench dataset of BENCHMARKS.md (8 x 500000 rows,
# 1.2 GiB datadir), each step against its baseline in the same run:
#   - tokubackup push of a backup vs `aws s3 cp --recursive` of the same files
#     to the same cluster
#   - bytes uploaded by the pushes of two later backups, taken after sysbench
#     oltp_update_non_index changed SMALL, then LARGE more random rows
#     (uniform), against the datadir size and the 16 KiB pages that differ
#   - tokubackup restore REPO:latest vs tokubackup restore of the local backup
#   - peak RSS of push and restore (/usr/bin/time)
# ROUNDS rounds, each into a fresh repository prefix; medians and every round.
#
#   repo/bench/sysbench-repo.sh       (TABLES, TABLE_SIZE, SMALL, LARGE, ROUNDS override)
set -euo pipefail
# shellcheck source=plugin/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../plugin/bench/lib.sh"

SMALL="${SMALL:-400}"
LARGE="${LARGE:-40000}"
ROUNDS="${ROUNDS:-2}"
# timed NAME CMD...: runs CMD (output in $WORK/NAME.log), records
# NAME=seconds and NAME_rss=MiB for this round.
timed() {
    local name="$1"
    shift
    sync
    /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/$name.log" 2>&1 ||
        { tail -n 20 "$WORK/$name.log" >&2; die "failed: $*"; }
    read -r secs kib <"$WORK/time"
    LINE="$LINE $name=$secs ${name}_rss=$((kib / 1024))"
}
json_field() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" "$2" | head -n 1; }

# The part run under the Garage cluster (bench.rs `with_garage` sets AWS_*).
compare() {
    local key="$WORK/key"
    echo "benchmark key" >"$key"
    : >"$WORK/results"
    for ((round = 1; round <= ROUNDS; round++)); do
        local repo="s3://$GARAGE_BUCKET/r$round"
        rm -rf "$WORK"/r-*
        LINE="round=$round"
        timed push "$TB" push "$WORK/bk1" "$repo" --key-file "$key"
        LINE="$LINE push_upload=$(sed -n 's/.* in \([0-9.]*\) s: .*/\1/p' "$WORK/push.log")"
        timed aws aws s3 cp --recursive --quiet "$WORK/bk1" "s3://$GARAGE_BUCKET/plain$round/"
        timed push2 "$TB" push "$WORK/bk2" "$repo" --key-file "$key" --json
        timed push3 "$TB" push "$WORK/bk3" "$repo" --key-file "$key" --json
        LINE="$LINE first_bytes=$(sed -n 's/.*uploaded (\(.*\))$/\1/p' "$WORK/push.log" | tr -d ' ')"
        LINE="$LINE second_bytes=$(json_field bytes_uploaded "$WORK/push2.log") third_bytes=$(json_field bytes_uploaded "$WORK/push3.log")"
        timed restore_repo "$TB" restore "$repo:latest" --datadir="$WORK/r-repo" --user=root --key-file "$key"
        timed restore_local "$TB" restore "$WORK/bk3" --datadir="$WORK/r-local" --user=root
        log "$LINE"
        echo "$LINE" >>"$WORK/results"
    done
    rm -rf "$WORK"/r-*
}
if [ "${1:-}" = --compare ]; then
    compare
    exit
fi

bench_setup tokubackup-repo-bench hotbackup tokudb_backup tokubackup
export WORK TB ROUNDS
command -v aws >/dev/null || pip install awscli
cd "$REPO_ROOT"
BENCH_BIN="$(cargo test --release -p tokubackup-repo --test bench --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[ -x "$BENCH_BIN" ] || die "no bench test binary"

D="$WORK/data"
init_datadir "$D"
start_server "$D" "$WORK/err.log" 1
# flushed: the changed pages in the data files, not only in the redo log.
flushed() {
    mariadb_client "$D/sock" "SET GLOBAL innodb_max_dirty_pages_pct=0"
    for _ in $(seq 120); do
        dirty="$(mariadb_client "$D/sock" "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | awk '{ print $2 }')"
        [ "${dirty:-1}" -eq 0 ] && return
        sleep 1
    done
}
log "== preparing $TABLES x $TABLE_SIZE rows"
sysbench_prepare "$D"
flushed
"$TB" backup "$WORK/bk1" --no-defaults --socket="$D/sock" --user=root >/dev/null
for n in 2 3; do
    events=$SMALL
    [ "$n" = 3 ] && events=$LARGE
    log "== $events uniform random row updates, then backup $n"
    sb "$D" oltp_update_non_index --rand-type=uniform --events="$events" --time=0 --threads=2 run >/dev/null
    flushed
    "$TB" backup "$WORK/bk$n" --no-defaults --socket="$D/sock" --user=root >/dev/null
done
stop_server
DATADIR_BYTES="$(du -sb "$WORK/bk1/mysql_data_dir" | cut -f1)"
# 16 KiB pages and 1 MiB chunks that differ between two backups' data files.
differ() {
    python3 - "$1" "$2" <<'EOF'
import os, sys
a, b = sys.argv[1] + "/mysql_data_dir", sys.argv[2] + "/mysql_data_dir"
pages = chunks = 0
for root, _, files in os.walk(b):
    for f in files:
        pb = os.path.join(root, f)
        pa = os.path.join(a, os.path.relpath(pb, b))
        with open(pb, "rb") as fb, open(pa, "rb") if os.path.exists(pa) else open(os.devnull, "rb") as fa:
            while True:
                cb, ca = fb.read(1 << 20), fa.read(1 << 20)
                if not cb:
                    break
                if cb != ca:
                    chunks += 1
                    pages += sum(cb[i:i + 16384] != ca[i:i + 16384] for i in range(0, len(cb), 16384))
print(pages, chunks)
EOF
}
read -r PAGES2 CHUNKS2 < <(differ "$WORK/bk1" "$WORK/bk2")
read -r PAGES3 CHUNKS3 < <(differ "$WORK/bk2" "$WORK/bk3")

log "== $ROUNDS rounds on the Garage cluster"
GARAGE_RUN="$(realpath "$0") --compare" "$BENCH_BIN" --ignored --exact with_garage --nocapture >&2

mib() { calc "$1 / 1048576"; }
rows=$((TABLES * TABLE_SIZE))
echo
echo "datadir $(mib "$DATADIR_BYTES") MiB ($TABLES x $TABLE_SIZE rows); medians of $ROUNDS rounds:"
for k in push push_upload aws push2 push3 restore_repo restore_local; do
    printf '  %-14s %s s\n' "$k" "$(median "$k")"
done
printf '  push / aws s3 cp                 %s\n' "$(calc "$(median push) / $(median aws)")"
printf '  push (upload phase) / aws s3 cp  %s\n' "$(calc "$(median push_upload) / $(median aws)")"
printf '  restore REPO:latest / local      %s\n' "$(calc "$(median restore_repo) / $(median restore_local)")"
printf '  peak RSS push / restore          %s / %s MiB (aws: %s MiB)\n' "$(median push_rss)" "$(median restore_repo_rss)" "$(median aws_rss)"
for n in 2 3; do
    events=$SMALL pages=$PAGES2 chunks=$CHUNKS2 key=second_bytes
    [ "$n" = 3 ] && events=$LARGE pages=$PAGES3 chunks=$CHUNKS3 key=third_bytes
    up="$(median "$key")"
    printf '  backup %s after %s row updates (%s%% of the rows): %s pages of 16 KiB differ (%s MiB, %s%% of the datadir) in %s 1 MiB chunks; push uploaded %s MiB = %s%% of the datadir\n' \
        "$n" "$events" "$(calc "100 * $events / $rows")" "$pages" "$(mib $((pages * 16384)))" \
        "$(calc "100 * $pages * 16384 / $DATADIR_BYTES")" "$chunks" "$(mib "$up")" "$(calc "100 * $up / $DATADIR_BYTES")"
done
echo "every round:"
cat "$WORK/results"
