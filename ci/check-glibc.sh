#!/usr/bin/env bash
# check-glibc.sh MAX FILE... : fail unless every ELF FILE (shared object or
# program) loads on glibc MAX: no dynamic symbol may need a GLIBC_ version
# above MAX, and no undefined symbol may be unversioned unless it is weak (a
# strong unversioned reference is a libc function the link did not find in
# the old glibc, which fails at load time where it is missing; weak ones are
# std's run-time probes, null where absent). Prints each file's highest
# version.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
[ "$#" -ge 2 ] || die "usage: check-glibc.sh MAX FILE..."
MAX="$1"
shift
apt_install binutils

bad=0
for f in "$@"; do
    [ -f "$f" ] || die "$f: no such file"
    # objdump -T: "ADDR FLAGS D SECTION SIZE VERSION NAME"; the version is
    # GLIBC_x.y or (GLIBC_x.y) for a hidden one.
    syms="$(objdump -T "$f")" || die "$f: objdump -T failed (not an ELF file?)"
    versions="$({ grep -o 'GLIBC_[0-9][0-9.]*' <<<"$syms" || true; } | sed 's/^GLIBC_//' | sort -uV)"
    highest="$(tail -n 1 <<<"$versions")"
    [ -n "$highest" ] || die "$f: no GLIBC_ symbol versions (not linked against glibc?)"
    above="$(printf '%s\n%s\n' "$versions" "$MAX" | sort -uV | sed -n "/^${MAX//./\\.}\$/,\$p" | tail -n +2)"
    if [ -n "$above" ]; then
        log "FAIL: $f needs GLIBC_$highest (max allowed $MAX); symbols above $MAX:"
        for v in $above; do
            awk -v v="GLIBC_$v" 'NF < 3 { next } { gsub(/[()]/, "", $(NF - 1)) } $(NF - 1) == v { print "    " $NF "@" v }' <<<"$syms" >&2
        done
        bad=1
    fi
    # Undefined (*UND*), not weak (no "w" flag), and no version (nothing or
    # "Base" between the size and the name).
    strong_unversioned="$(awk '{ for (i = 2; i <= NF; i++) if ($i == "*UND*") break }
        i <= NF && $2 != "w" && (NF == i + 2 || $(i + 2) == "Base") { print "    " $NF }' <<<"$syms")"
    if [ -n "$strong_unversioned" ]; then
        log "FAIL: $f has strong undefined symbols without a version (missing from glibc $MAX?):"
        log "$strong_unversioned"
        bad=1
    fi
    log "$(basename "$f"): highest GLIBC_$highest"
done
[ "$bad" -eq 0 ] || die "some files need a glibc newer than $MAX"
log "ok: every file loads on glibc $MAX"
