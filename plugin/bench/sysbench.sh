#!/usr/bin/env bash
# sysbench oltp_write_only on a ~1 GiB dataset, four runs on the same data:
#   1. server without libHotBackup            (baseline)
#   2. library preloaded, idle                (cost of the hooks)
#   3. library preloaded, SET tokudb_backup_dir during the run
#   4. no library, mariabackup --backup during the run, then --prepare
#   5. as 3 with HOTBACKUP_IO_URING=off: the library turns io_uring off and
#      InnoDB falls back to pwrite (what older kernels get)
# Runs 1-3 check that InnoDB used io_uring. Repeats the five runs ROUNDS times, interleaved, and prints medians of TPS for each run, TPS inside the backup window, backup wall times and
# ratios against the baseline measured in the same run.
#
#   plugin/bench/sysbench.sh            (TABLES, TABLE_SIZE, THREADS, DURATION override)
set -euo pipefail
# shellcheck source=plugin/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

THREADS="${THREADS:-4}"
DURATION="${DURATION:-60}"
BACKUP_AT="${BACKUP_AT:-10}"
# tokudb_backup_throttle for run 3, bytes/s (default: no limit).
THROTTLE="${THROTTLE:-18446744073709551615}"
ROUNDS="${ROUNDS:-3}"

bench_setup tokudb-bench hotbackup tokudb_backup

# start DATADIR PRELOAD(0|1|uring_off) [EXTRA OPTION]
start() {
    start_server "$1" "$1/err.log" "$2" --max-connections=100 ${3:+"$3"}
}

log "== preparing $TABLES x $TABLE_SIZE rows (once)"
T="$WORK/template"
init_datadir "$T"
start "$T" 0
sysbench_prepare "$T"
stop_server
rm -f "$T/err.log"
log "dataset: $(du -sh "$T" | cut -f1)"

# run NAME PRELOAD BACKUP(none|plugin|mariabackup) [SERVER OPTION]: prints
# "name tps window_tps backup_s prepare_s"
run() {
    local name="$1" preload="$2" kind="$3" d="$WORK/$1" out="$WORK/$1.sysbench"
    rm -rf "$d" "$WORK/$1.bk"
    cp -a "$T" "$d"
    start "$d" "$preload" "${4:-}"
    if [ "$preload" != uring_off ] && ! grep -q "Using io_uring" "$d/err.log"; then
        tail -n 20 "$d/err.log" >&2
        die "$name: InnoDB does not use io_uring"
    fi
    local t0 bstart="" bend="" prep=""
    t0="$(now)"
    sb "$d" oltp_write_only --threads="$THREADS" --time="$DURATION" --report-interval=1 run >"$out" 2>&1 &
    local sbpid=$!
    if [ "$kind" != none ]; then
        sleep "$BACKUP_AT"
        bstart="$(now)"
        if [ "$kind" = plugin ]; then
            mariadb_client "$d/sock" "SET tokudb_backup_throttle=$THROTTLE; SET tokudb_backup_dir='$WORK/$1.bk'" >/dev/null
            [ -f "$WORK/$1.bk/BACKUP-COMPLETE" ] || die "plugin backup incomplete"
        else
            mariabackup --backup --target-dir="$WORK/$1.bk" --socket="$d/sock" --user=root \
                >"$WORK/$1.mariabackup.log" 2>&1 || die "mariabackup --backup failed"
        fi
        bend="$(now)"
    fi
    wait "$sbpid"
    if [ "$kind" = mariabackup ]; then
        local p0
        p0="$(now)"
        mariabackup --prepare --target-dir="$WORK/$1.bk" >>"$WORK/$1.mariabackup.log" 2>&1 ||
            die "mariabackup --prepare failed"
        prep="$(calc "$(now) - $p0")"
    fi
    stop_server
    local tps window="" bsecs=""
    tps="$(grep -oP 'transactions:\s+\d+\s+\(\K[0-9.]+' "$out")"
    if [ -n "$bstart" ]; then
        bsecs="$(calc "$bend - $bstart")"
        # Average of the 1-second reports that overlap the backup window.
        window="$(awk -v s="$(calc "$bstart - $t0")" -v e="$(calc "$bend - $t0")" '
            /^\[ *[0-9]+s \]/ { t = $2 + 0; if (t > s && t - 1 < e) { n++; sum += $7 } }
            END { if (n) printf "%.1f", sum / n; else print "" }' "$out")"
    fi
    printf '%s %s %s %s %s\n' "$name" "$tps" "${window:--}" "${bsecs:--}" "${prep:--}"
    rm -rf "$d" "$WORK/$1.bk"
}

log "== $ROUNDS rounds of 5 runs (interleaved, medians reported): $THREADS threads, ${DURATION}s each, backups start at ${BACKUP_AT}s, tokudb_backup_throttle=$THROTTLE"
: >"$WORK/results"
for ((round = 1; round <= ROUNDS; round++)); do
    for spec in "no_library 0 none" "library_idle 1 none" "tokudb_backup 1 plugin" "mariabackup 0 mariabackup" \
        "uring_off_backup uring_off plugin"; do
        # shellcheck disable=SC2086
        line="$(run $spec)"
        log "round $round: $line"
        echo "$line" >>"$WORK/results"
    done
done

# run_median NAME COLUMN (2=tps 3=tps in backup window 4=backup s 5=prepare s)
run_median() {
    awk -v n="$1" -v c="$2" '$1 == n && $c != "-" { print $c }' "$WORK/results" | median_of
}
base="$(run_median no_library 2)"
idle="$(run_median library_idle 2)"
# Per-round ratio (runs of one round are minutes apart, rounds far more).
paired() {
    awk -v a="$1" -v b="$2" '$1 == a { x[++i] = $2 } $1 == b { y[++j] = $2 }
        END { for (k = 1; k <= i && k <= j; k++) printf "%.3f\n", x[k] / y[k] }' "$WORK/results" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
off_all="$(run_median uring_off_backup 2)"
off_win="$(run_median uring_off_backup 3)"
off_secs="$(run_median uring_off_backup 4)"
tb_all="$(run_median tokudb_backup 2)"
tb_win="$(run_median tokudb_backup 3)"
tb_secs="$(run_median tokudb_backup 4)"
mb_all="$(run_median mariabackup 2)"
mb_win="$(run_median mariabackup 3)"
mb_secs="$(run_median mariabackup 4)"
mb_prep="$(run_median mariabackup 5)"
mb_total="$(awk '$1 == "mariabackup" { print $4 + $5 }' "$WORK/results" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
ratio() { awk "BEGIN { if ($2 > 0) printf \"%.3f\", $1 / $2; else print \"n/a\" }"; }
echo
echo "all runs (name tps tps_in_backup backup_s prepare_s):"
sed 's/^/    /' "$WORK/results"
cat <<EOF

dataset: $(du -sh "$T" | cut -f1) datadir ($TABLES tables x $TABLE_SIZE rows), $THREADS threads, ${DURATION}s runs, medians of $ROUNDS rounds

| run | TPS (whole run) | TPS during backup | backup wall time | prepare | time to restorable backup |
|---|---|---|---|---|---|
| no library | $base | | | | |
| library preloaded, idle | $idle ($(ratio "$idle" "$base") x) | | | | |
| tokudb_backup (throttle $THROTTLE B/s) | $tb_all | $tb_win ($(ratio "$tb_win" "$base") x) | ${tb_secs} s | none | ${tb_secs} s |
| tokudb_backup, HOTBACKUP_IO_URING=off (pwrite fallback) | $off_all | $off_win ($(ratio "$off_win" "$base") x) | ${off_secs} s | none | ${off_secs} s |
| mariabackup --backup, --prepare | $mb_all | $mb_win ($(ratio "$mb_win" "$base") x) | ${mb_secs} s | ${mb_prep} s | ${mb_total} s |

idle / no library: $(ratio "$idle" "$base") (target >= 0.98); median of per-round ratios $(paired library_idle no_library)
TPS during backup, tokudb_backup / mariabackup: $(ratio "$tb_win" "$mb_win") (target >= 1); median of per-round ratios $(paired tokudb_backup mariabackup) (whole runs)
TPS during backup, io_uring followed / io_uring off: $(ratio "$tb_win" "$off_win")
time to restorable backup, tokudb_backup / mariabackup: $(ratio "$tb_secs" "$mb_total") (target < 1)
EOF
