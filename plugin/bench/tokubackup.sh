#!/usr/bin/env bash
# tokubackup on the sysbench dataset of BENCHMARKS.md (8 x 500000 rows,
# 1.2 GiB datadir), each step against its baseline in the same run:
#   - checksums: the plugin's checksum phase (manifest checksum_seconds) as a
#     share of the backup's wall time, and tokubackup verify alone
#   - restore: tokubackup restore (--no-verify, and with verify) vs
#     mariabackup --copy-back of a mariabackup backup of the same data vs cp -a
#     (both followed by sync: restore ends with syncfs)
#   - proof of restorability: tokubackup verify --recover vs mariabackup --prepare
# ROUNDS rounds, interleaved; medians and every run are printed. The files
# read are in the page cache for every contender alike (no cache dropping on
# a shared machine).
#
#   plugin/bench/tokubackup.sh          (TABLES, TABLE_SIZE, ROUNDS override)
set -euo pipefail
# shellcheck source=plugin/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"

bench_setup tokubackup-bench hotbackup tokudb_backup tokubackup

D="$WORK/data"
# timed CMD...: flushes what earlier steps left dirty (so that no step pays
# for another's writeback), runs CMD quietly, prints its wall time.
timed() {
    local t0
    sync
    t0="$(now)"
    "$@" >"$WORK/cmd.log" 2>&1 || { tail -n 20 "$WORK/cmd.log" >&2; die "failed: $*"; }
    calc "$(now) - $t0"
}
# A copy is restored when it is on disk: tokubackup restore ends with
# syncfs, so the others are timed with a sync too.
durable() { "$@" && sync; }

# rotate N A B C D: the words, starting at the (N-1 mod count)th.
rotate() {
    local n="$1"
    shift
    local -a w=("$@")
    local i
    for ((i = 0; i < ${#w[@]}; i++)); do echo "${w[$(((n - 1 + i) % ${#w[@]}))]}"; done
}

log "== preparing $TABLES x $TABLE_SIZE rows"
init_datadir "$D"
start_server "$D" "$WORK/err.log" 1
sysbench_prepare "$D"
log "datadir: $(du -sh "$D" | cut -f1)"

: >"$WORK/results"
for ((round = 1; round <= ROUNDS; round++)); do
    rm -rf "$WORK"/bk "$WORK"/mb "$WORK"/r-*
    backup_s="$(timed "$TB" backup "$WORK/bk" --no-defaults --socket="$D/sock" --user=root)"
    cks="$(sed -n 's/.*"checksum_seconds": \([0-9.]*\).*/\1/p' "$WORK/bk/backup-manifest.json")"
    verify_s="$(timed "$TB" verify "$WORK/bk")"
    mb_s="$(timed mariabackup --backup --target-dir="$WORK/mb" --socket="$D/sock" --user=root)"
    prepare_s="$(timed mariabackup --prepare --target-dir="$WORK/mb")"
    recover_s="$(timed "$TB" verify "$WORK/bk" --recover --scratch="$WORK")"
    startup_s="$(sed -n 's/.*crash recovery and start \([0-9.]*\) s.*/\1/p' "$WORK/cmd.log")"
    # The four restores start from the same state: each one's copy is
    # removed (and the removal synced) before the next, and their order
    # rotates each round. Otherwise a later contender pays for the dirty
    # pages and writeback of the earlier ones' gigabytes (measured: a 4th
    # copy in a row took 4x the 1st).
    for k in $(rotate "$round" cp_a restore restore_verified copy_back); do
        case "$k" in
        cp_a) cp_s="$(timed durable cp -a "$WORK/bk/mysql_data_dir" "$WORK/r-cp")" ;;
        restore) tb_s="$(timed "$TB" restore "$WORK/bk" --datadir="$WORK/r-tb" --user=root --no-verify)" ;;
        restore_verified) tbv_s="$(timed "$TB" restore "$WORK/bk" --datadir="$WORK/r-tbv" --user=root)" ;;
        copy_back) cb_s="$(timed durable mariabackup --copy-back --target-dir="$WORK/mb" --datadir="$WORK/r-mb")" ;;
        esac
        rm -rf "$WORK"/r-*
        sync
    done
    line="backup=$backup_s checksum=$cks verify=$verify_s mariabackup_prepare=$prepare_s verify_recover=$recover_s recover_startup=$startup_s cp_a=$cp_s restore=$tb_s restore_verified=$tbv_s copy_back=$cb_s mariabackup_backup=$mb_s"
    log "round $round: $line"
    echo "$line" >>"$WORK/results"
done

echo
echo "medians of $ROUNDS rounds, datadir $(du -sh "$D" | cut -f1):"
for k in backup checksum verify mariabackup_backup mariabackup_prepare verify_recover recover_startup cp_a restore restore_verified copy_back; do
    printf '  %-20s %s s\n' "$k" "$(median "$k")"
done
printf '  checksum / backup             %s\n' "$(calc "$(median checksum) / $(median backup)")"
printf '  restore / cp -a               %s\n' "$(calc "$(median restore) / $(median cp_a)")"
printf '  restore / copy-back           %s\n' "$(calc "$(median restore) / $(median copy_back)")"
printf '  restore+verify / cp -a        %s\n' "$(calc "$(median restore_verified) / $(median cp_a)")"
printf '  verify --recover / --prepare  %s\n' "$(calc "$(median verify_recover) / $(median mariabackup_prepare)")"
echo "every round:"
cat "$WORK/results"
