#!/usr/bin/env bash
# AddressSanitizer (with its leak checker) over the library's test programs:
# libHotBackup built with -Zsanitizer=address into its own target dir, the C
# programs built with gcc -fsanitize=address, the ASan runtime and the
# library preloaded in that order.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
apt_install gcc libc6-dev liburing-dev

# -Zsanitizer is a nightly flag. The machine image has a nightly toolchain;
# none can be downloaded here, so without it use the stable compiler in
# bootstrap mode, which accepts the same flag (its target libs ship the
# sanitizer runtimes), and say so.
if grep -q '^nightly' <<<"$(rustup toolchain list 2>/dev/null)"; then
    TOOLCHAIN=(+nightly)
else
    log "NOTE: no nightly toolchain (rustup toolchain list); building with stable and RUSTC_BOOTSTRAP=1"
    TOOLCHAIN=()
    export RUSTC_BOOTSTRAP=1
fi
HOST="$(rustc -vV | sed -n 's/^host: //p')"
ASAN_TARGET_DIR="$TARGET_DIR/asan"
# --target keeps build scripts and proc-macros uninstrumented; the C shim is
# instrumented too (the cc crate reads CFLAGS).
RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes" CFLAGS="-fsanitize=address" \
    CARGO_TARGET_DIR="$ASAN_TARGET_DIR" cargo "${TOOLCHAIN[@]}" build -p hotbackup --target "$HOST"
LIB="$ASAN_TARGET_DIR/$HOST/debug/libHotBackup.so"
grep -q '__asan_report' <<<"$(nm -D "$LIB")" || die "$LIB is not instrumented"

OUT="$TARGET_DIR/asan-tests"
rm -rf "$OUT"
build_c_tests "$OUT" "$LIB" -fsanitize=address -fno-omit-frame-pointer
# The executables bring GCC's libasan; it must come first in the preload list.
PRELOAD_FIRST="$(cc -print-file-name=libasan.so)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99:halt_on_error=1:detect_stack_use_after_return=1"
# fork_exec runs /bin/sh, tr and sort, which inherit the preloaded ASan
# runtime and trip LeakSanitizer with their own unfreed memory at exit; it
# runs in cargo test.
C_TEST_SKIP="fork_exec" C_TEST_SKIP_WHY="its child programs (sh, tr, sort) inherit the ASan preload and leak by design" \
    RUN_LABEL=AddressSanitizer STRESS_ITERATIONS="${STRESS_ITERATIONS:-20}" PRELOAD_FIRST="$PRELOAD_FIRST" run_c_tests "$OUT"
rm -rf "$OUT"
log "ok: AddressSanitizer and LeakSanitizer, no errors"
