#!/usr/bin/env bash
# valgrind memcheck over the library's test programs (tests/c/*.c, each built
# with plain and large-file symbols), run with libHotBackup preloaded as a
# server would have it: leak check on, any error fails the run.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
apt_install valgrind gcc libc6-dev liburing-dev

# The release build is what ships; debug=1 in the profile keeps line numbers.
cargo build --release -p hotbackup
OUT="$TARGET_DIR/valgrind"
rm -rf "$OUT"
build_c_tests "$OUT" "$TARGET_DIR/release/libHotBackup.so"
# Under valgrind the writer threads run serialized and slowly: fewer rounds.
# fork_exec forks while the library's threads run: the child has only the
# forking thread, so what the others hold shows as lost in the child's leak
# check. It runs in cargo test and under ASan.
# uring: valgrind keeps its scheduler lock while a thread waits in
# io_uring_enter, so the program's reaper thread, waiting for a completion,
# stops every other thread (measured: all others blocked on the lock). It runs
# in cargo test and under ASan.
# missing_libc: with close_range(2) denied, glibc's closefrom rescans
# /proc/self/fd while valgrind refuses to close its own descriptors: it spins.
C_TEST_SKIP="fork_exec uring missing_libc" \
    C_TEST_SKIP_WHY="fork_exec: forked children inherit one thread, so the others' memory shows as leaked; uring: valgrind holds its lock while a thread waits in io_uring_enter; missing_libc: glibc's closefrom fallback spins on valgrind's own descriptors" \
RUN_LABEL=valgrind STRESS_ITERATIONS="${STRESS_ITERATIONS:-8}" run_c_tests "$OUT" \
    valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes \
    --suppressions="$REPO_ROOT/ci/valgrind.supp"
rm -rf "$OUT"
log "ok: valgrind memcheck, no errors, no leaks"
