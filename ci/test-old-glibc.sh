#!/usr/bin/env bash
# Run the engine's API and hook scenarios (tests/c/api.c, scenarios.c, and
# missing_libc.c: close_range/closefrom, which glibc 2.31 lacks) on an
# older glibc than this machine's: Debian 11's libc6 (glibc 2.31, older than
# the 2.34 a native build needs) is unpacked into a temporary directory and
# its ld.so runs the programs, built with zig cc for glibc $GLIBC_FLOOR, with
# the glibc $GLIBC_FLOOR build of libHotBackup.so preloaded. Debian 11 is the
# oldest release the package registry still serves; nothing older than 2.31
# can be run here, so below that only ci/check-glibc.sh speaks.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
LIB="$GLIBC_BUILD_DIR/libHotBackup.so"
[ -f "$LIB" ] || die "$LIB missing: run ci/test-glibc-floor.sh (cargo zigbuild) first"
zigbuild_install

WORK="$(mktemp -d /tmp/old-glibc.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

fetch_libc() {
    # apt's own client with private lists: the machine's sources stay as they are.
    local apt=(-qq -o Dir::Etc::SourceList="$WORK/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$WORK/lists" -o Dir::Cache="$WORK/cache" -o Dir::State::status=/dev/null
        -o APT::Architectures=amd64 -o APT::Sandbox::User=root)
    mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/root"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main" >"$WORK/sources.list"
    apt-get "${apt[@]}" update
    (cd "$WORK" && apt-get "${apt[@]}" download libc6)
    dpkg-deb -x "$WORK"/libc6_*.deb "$WORK/root"
    OLD="$WORK/root/lib/x86_64-linux-gnu"
    [ -x "$OLD/ld-linux-x86-64.so.2" ] || die "no ld.so in Debian 11's libc6"
    log "glibc: $(basename "$(readlink -f "$OLD/libc.so.6")")"
}

run_programs() {
    local p
    for p in api scenarios missing_libc; do
        python3 -m ziglang cc -target "x86_64-linux-gnu.$GLIBC_FLOOR" -std=gnu11 -O1 -Wall -Werror -pthread \
            -Iinclude -o "$WORK/$p" "tests/c/$p.c" -L"$GLIBC_BUILD_DIR" -l:libHotBackup.so -lpthread -ldl
        mkdir -p "$WORK/w-$p"
        # All of the program's scenarios, with only the old glibc on the path.
        "$OLD/ld-linux-x86-64.so.2" --library-path "$OLD:$GLIBC_BUILD_DIR" --preload "$LIB" \
            "$WORK/$p" "$WORK/w-$p" >"$WORK/$p.out" 2>&1 || { cat "$WORK/$p.out" >&2; die "$p failed on glibc 2.31"; }
        grep -q "^ok " "$WORK/$p.out" || { cat "$WORK/$p.out" >&2; die "$p ran no scenario"; }
        log "ok: $p, $(grep -c '^ok ' "$WORK/$p.out") scenarios on glibc 2.31"
    done
    # glibc 2.31 has neither close_range nor closefrom: the hooks' own
    # fallbacks ran, not libc's functions.
    grep -c 'libc lacks it' "$WORK/missing_libc.out" | grep -qx 5 ||
        { cat "$WORK/missing_libc.out" >&2; die "missing_libc: expected 5 scenarios without libc's function"; }
}

step "Debian 11's libc6 (glibc 2.31)" fetch_libc
step "tests/c/api.c, scenarios.c, missing_libc.c on glibc 2.31" run_programs
