#!/usr/bin/env bash
# Engine benchmarks (BENCHMARKS.md, "Engine (libHotBackup)"): ratios against
# a baseline measured in the same run, interleaved rounds, medians.
#   (a) 4 KiB pwrite loop, library preloaded but idle / not preloaded
#       (also callgrind instruction counts of the loop alone)
#   (b) the same loop while a backup captures the file / not preloaded
#       (copier paused: nothing mirrored; and, as (b'), everything copied:
#       every write mirrored)
#   (c) backup of a tree of large files / `cp -a` (and / `cp -a && sync`)
#   (d) memory added by opening tracked files during a backup
# Knobs: ROUNDS (5), LOOP_N (200000 pwrites), TREE_GIB (2), OPEN_FILES (10000),
# BENCH_DIR (a directory on the file system to measure; default under the
# target dir), HOTBACKUP_COPY_THREADS (copier threads, default 2).
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

ROUNDS="${ROUNDS:-5}"
LOOP_N="${LOOP_N:-200000}"
TREE_GIB="${TREE_GIB:-2}"
OPEN_FILES="${OPEN_FILES:-10000}"
BENCH_DIR="${BENCH_DIR:-$TARGET_DIR/bench-engine}"

cargo build --release -p hotbackup >&2
LIB="$TARGET_DIR/release/libHotBackup.so"
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
trap 'rm -rf "$BENCH_DIR"' EXIT
PROG="$BENCH_DIR/pwrite_loop"
cc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$PROG" benches/pwrite_loop.c -lpthread -ldl

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
value() { awk -v k="$1" '$1==k {print $2}'; }

# One measurement in a fresh directory; prints the wall time per pwrite,
# and appends the process's CPU time per pwrite to the file CPU_OUT.
loop_run() { # MODE PRELOAD(0/1) CPU_OUT
    local d="$BENCH_DIR/loop" out
    rm -rf "$d" "$d.bak"
    mkdir -p "$d"
    if [ "$2" = 1 ]; then
        out="$(LD_PRELOAD="$LIB" "$PROG" "$1" "$d" "$LOOP_N")"
    else
        out="$("$PROG" "$1" "$d" "$LOOP_N")"
    fi
    echo "$out" | value cpu_ns_per_pwrite >>"$3"
    echo "$out" | value ns_per_pwrite
}

log "== (a)/(b) pwrite loop, $ROUNDS interleaved rounds of $LOOP_N pwrites"
: >"$BENCH_DIR/base" && : >"$BENCH_DIR/idle" && : >"$BENCH_DIR/capt" && : >"$BENCH_DIR/mirr"
: >"$BENCH_DIR/base.cpu" && : >"$BENCH_DIR/mirr.cpu"
for r in $(seq "$ROUNDS"); do
    b="$(loop_run idle 0 "$BENCH_DIR/base.cpu")"; i="$(loop_run idle 1 /dev/null)"
    c="$(loop_run capture 1 /dev/null)"; m="$(loop_run mirror 1 "$BENCH_DIR/mirr.cpu")"
    echo "$b" >>"$BENCH_DIR/base"; echo "$i" >>"$BENCH_DIR/idle"; echo "$c" >>"$BENCH_DIR/capt"
    echo "$m" >>"$BENCH_DIR/mirr"
    log "round $r: ns/pwrite no library $b, idle $i, capturing $c, capturing and mirroring $m"
done
base="$(median <"$BENCH_DIR/base")"; idle="$(median <"$BENCH_DIR/idle")"; capt="$(median <"$BENCH_DIR/capt")"
mirr="$(median <"$BENCH_DIR/mirr")"
echo "pwrite ns median: no library $base, idle $idle, capturing $capt, capturing and mirroring $mirr"
echo "(a) idle / no library: $(ratio "$idle" "$base") (target <= 1.03)"
echo "(b) capturing (file not copied yet) / no library: $(ratio "$capt" "$base") (target <= 2.2)"
echo "(b') capturing, every write mirrored / no library: $(ratio "$mirr" "$base") (target <= 3.0)"
# The destination's writes are made on a backup thread: the process's CPU
# per write shows what the mirror costs in all.
echo "(b') CPU of the whole process per write, mirrored / no library: $(ratio "$(median <"$BENCH_DIR/mirr.cpu")" "$(median <"$BENCH_DIR/base.cpu")")"

if command -v valgrind >/dev/null; then
    # Instruction counts of timed_loop alone: immune to machine noise.
    ir() {
        local d="$BENCH_DIR/cg" out="$BENCH_DIR/cg.out"
        rm -rf "$d" "$d.bak"; mkdir -p "$d"
        env "$@" valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect=timed_loop \
            "$PROG" idle "$d" 20000 >/dev/null 2>&1
        awk '/^summary:/ {print $2}' "$out"
    }
    ir_base="$(ir X=1)"
    ir_idle="$(ir LD_PRELOAD="$LIB")"
    echo "(a) callgrind Ir of 22000 pwrites (with warm-up): no library $ir_base, idle $ir_idle, ratio $(ratio "$ir_idle" "$ir_base")"
fi

log "== (c) backup of a ${TREE_GIB} GiB tree vs cp -a, $ROUNDS rounds"
TREE="$BENCH_DIR/tree"
mkdir -p "$TREE/a" "$TREE/b"
files=$((TREE_GIB * 4))
for n in $(seq "$files"); do
    head -c $((256 << 20)) /dev/urandom >"$TREE/$([ $((n % 2)) = 0 ] && echo a || echo b)/file$n"
done
sync
: >"$BENCH_DIR/bk" && : >"$BENCH_DIR/cp" && : >"$BENCH_DIR/cps"
now() { date +%s.%N; }
for r in $(seq "$ROUNDS"); do
    rm -rf "$BENCH_DIR/copy"; sync
    bk="$(LD_PRELOAD="$LIB" "$PROG" backup "$TREE" "$BENCH_DIR/copy" | value backup_s)"
    rm -rf "$BENCH_DIR/copy"; sync
    t0="$(now)"; cp -a "$TREE" "$BENCH_DIR/copy"; t1="$(now)"; sync; t2="$(now)"
    cp_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}')"
    cps_s="$(awk -v a="$t0" -v b="$t2" 'BEGIN {printf "%.3f", b-a}')"
    echo "$bk" >>"$BENCH_DIR/bk"; echo "$cp_s" >>"$BENCH_DIR/cp"; echo "$cps_s" >>"$BENCH_DIR/cps"
    log "round $r: backup ${bk} s (synced), cp -a ${cp_s} s, cp -a && sync ${cps_s} s"
done
rm -rf "$BENCH_DIR/copy" "$TREE"
bk="$(median <"$BENCH_DIR/bk")"; cp_s="$(median <"$BENCH_DIR/cp")"; cps_s="$(median <"$BENCH_DIR/cps")"
echo "backup medians: backup $bk s, cp -a $cp_s s, cp -a && sync $cps_s s (copier threads ${HOTBACKUP_COPY_THREADS:-2})"
echo "(c) backup / cp -a: $(ratio "$bk" "$cp_s"); backup / (cp -a && sync): $(ratio "$bk" "$cps_s") (target <= 1.0)"

log "== (d) memory of $OPEN_FILES open tracked files"
d="$BENCH_DIR/many"; rm -rf "$d" "$d.bak"; mkdir -p "$d"
with="$(LD_PRELOAD="$LIB" "$PROG" rss "$d" "$OPEN_FILES")"
rm -rf "$d" "$d.bak"; mkdir -p "$d"
without="$("$PROG" rss "$d" "$OPEN_FILES")"
echo "(d) $OPEN_FILES open files: during a backup VmRSS +$(echo "$with" | value rss_added_kib) KiB, VmHWM +$(echo "$with" | value hwm_added_kib) KiB; without the library VmRSS +$(echo "$without" | value rss_added_kib) KiB"
