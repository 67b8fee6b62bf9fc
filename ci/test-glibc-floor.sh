#!/usr/bin/env bash
# The build the RPMs and the tarball ship: libHotBackup.so, the plugin and
# tokubackup linked against glibc $GLIBC_FLOOR with cargo zigbuild (README
# "Which systems"). Builds it, checks the highest GLIBC_ version each file
# needs (ci/check-glibc.sh), then runs the engine's C test programs, the plugin's
# load and SQL tests and the tokubackup tests against exactly these files
# (HOTBACKUP_TEST_BUILD), and the C API and hook scenarios on Debian 11's
# glibc 2.31 (ci/test-old-glibc.sh); ci/build-packages.sh packages the same
# files.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

step "cargo zigbuild --release --target $GLIBC_TARGET" build_glibc_floor
step "glibc symbol versions <= $GLIBC_FLOOR" \
    bash ci/check-glibc.sh "$GLIBC_FLOOR" "$GLIBC_BUILD_DIR/libHotBackup.so" "$GLIBC_BUILD_DIR/libtokudb_backup.so" \
    "$GLIBC_BUILD_DIR/tokubackup"

# The test programs come from the debug test build ci/cargo-test.sh made;
# only the library, plugin and tokubackup they run are the glibc
# $GLIBC_FLOOR ones.
export HOTBACKUP_TEST_BUILD="$GLIBC_BUILD_DIR"
step "engine tests against the $GLIBC_FLOOR build" cargo test -p hotbackup --test engine
step "plugin load and SQL tests against the $GLIBC_FLOOR build" \
    cargo test -p tokudb_backup --test plugin_load --test plugin_sql
step "tokubackup tests against the $GLIBC_FLOOR build" cargo test -p tokubackup --test tokubackup
# The same library on an older glibc than this machine's (Debian 11's 2.31).
step "engine scenarios on Debian 11's glibc" bash ci/test-old-glibc.sh
