#!/usr/bin/env bash
# Everything CI runs (.ci/run execs this), in order. Each step is a script of
# its own and can be run alone. A failing step fails the run; the steps after
# it still run (those that need its output are skipped), so one run shows
# every problem. Ends with a summary, the duration of each step, and the line
# "ci: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

START=$SECONDS
declare -a NAMES=() RESULTS=() TIMES=()
FAILED=0

run_step() { # run_step NAME [needs=STEP] SCRIPT ARGS...
    local name="$1" need="" rc t0
    shift
    if [[ "$1" == needs=* ]]; then need="${1#needs=}"; shift; fi
    printf '\n######## %s (%s) ########\n' "$name" "$*" >&2
    t0=$SECONDS
    if [ -n "$need" ] && ! step_passed "$need"; then
        printf '######## %s: SKIPPED, %s failed ########\n' "$name" "$need" >&2
        NAMES+=("$name"); RESULTS+=("skipped"); TIMES+=(0); FAILED=$((FAILED + 1))
        return 0
    fi
    set +e
    bash "$@" </dev/null
    rc=$?
    set -e
    NAMES+=("$name"); TIMES+=($((SECONDS - t0)))
    if [ "$rc" -eq 0 ]; then
        RESULTS+=("passed")
    else
        RESULTS+=("FAILED (exit $rc)"); FAILED=$((FAILED + 1))
    fi
    printf '######## %s: %s in %ss ########\n' "$name" "${RESULTS[-1]}" "${TIMES[-1]}" >&2
}
step_passed() {
    local i
    for i in "${!NAMES[@]}"; do
        [ "${NAMES[$i]}" = "$1" ] && [ "${RESULTS[$i]}" = passed ] && return 0
    done
    return 1
}

# Without the tools nothing else can run: stop here if setup fails.
run_step setup ci/setup.sh
step_passed setup || { echo "ci: 0 passed, 1 failed" ; exit 1; }
run_step lint ci/lint.sh
run_step "cargo test --workspace" ci/cargo-test.sh
run_step "glibc 2.17 build" ci/test-glibc-floor.sh
run_step "server ABI variants" ci/build-variants.sh
run_step valgrind ci/valgrind.sh
run_step asan ci/asan.sh
run_step "build packages" ci/build-packages.sh
run_step "check packages" needs="build packages" ci/check-packages.sh
run_step "tarball install test" needs="build packages" ci/test-tarball.sh
run_step "deb install test" needs="build packages" ci/test-deb-install.sh

printf '\n======== summary ========\n'
for i in "${!NAMES[@]}"; do
    printf '%-24s %-18s %5ss\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${TIMES[$i]}"
done
printf '%-24s %-18s %5ss\n' total "" "$((SECONDS - START))"
PASSED=$((${#NAMES[@]} - FAILED))
echo "ci: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
