# shellcheck shell=bash
# Helpers sourced by the ci/*.sh scripts. Not executable on its own.

# Repository root, whatever directory the script was started from.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
# cargo-deb and cargo-generate-rpm honour CARGO_TARGET_DIR as cargo does.
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
PKG_DIR="$TARGET_DIR/packages"
# Staged install trees the package metadata in Cargo.toml globs from. It is a
# fixed path relative to the repository because cargo-deb/cargo-generate-rpm
# asset paths are relative to the crate, not to the target dir.
STAGE_DIR="$REPO_ROOT/packaging/stage"
export TARGET_DIR PKG_DIR STAGE_DIR

log() { printf '%s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# step NAME CMD... : run one step with a header and its duration.
step() {
    local name="$1"; shift
    local start=$SECONDS
    printf '\n==== %s ====\n' "$name" >&2
    "$@"
    printf '==== %s: ok (%ds) ====\n' "$name" "$((SECONDS - start))" >&2
}

# Version of the workspace, from Cargo.toml ([workspace.package] version).
workspace_version() {
    (cd "$REPO_ROOT" && cargo pkgid -p hotbackup) | sed -E 's/.*[#@]//'
}

# apt_install PKG... : install Debian packages that are missing.
apt_install() {
    local absent=()
    local p
    for p in "$@"; do
        grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || absent+=("$p")
    done
    [ "${#absent[@]}" -eq 0 ] && return 0
    log "apt-get install ${absent[*]}"
    if [ -z "${APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${absent[@]}" >/dev/null
}

# cargo_tool_install CRATE BINARY : cargo install --locked unless present.
cargo_tool_install() {
    command -v "$2" >/dev/null 2>&1 || cargo install --locked --quiet "$1"
}

# The glibc the RPM and tarball .so files are linked against (README
# "Which systems"): cargo zigbuild's target suffix picks zig's stubs of it.
GLIBC_FLOOR=2.17
GLIBC_TARGET="x86_64-unknown-linux-gnu.$GLIBC_FLOOR"
# ... and where cargo puts that build (the suffix is not part of the path).
GLIBC_BUILD_DIR="$TARGET_DIR/x86_64-unknown-linux-gnu/release"
export GLIBC_FLOOR GLIBC_TARGET GLIBC_BUILD_DIR

# zigbuild_install : cargo-zigbuild and zig (PyPI's ziglang), pinned; a no-op
# when these versions are installed.
zigbuild_install() {
    local pins=(cargo-zigbuild==0.24.0 ziglang==0.17.0) have
    have="$(python3 -c 'import importlib.metadata as m; print(*(n + "==" + m.version(n) for n in ("cargo-zigbuild", "ziglang")))' 2>/dev/null || true)"
    [ "$have" = "${pins[*]}" ] && command -v cargo-zigbuild >/dev/null && return 0
    command -v python3 >/dev/null || apt_install python3 python3-pip
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    # Debian's own python3 refuses installs outside a venv (PEP 668).
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${pins[@]}" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages "${pins[@]}"
    # pip's scripts directory may be off PATH (a python3 without shims).
    command -v cargo-zigbuild >/dev/null || PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    command -v cargo-zigbuild >/dev/null || die "cargo-zigbuild is not on PATH after pip install"
}

# zigbuild ARGS... : cargo zigbuild --release ARGS against glibc $GLIBC_FLOOR,
# into $GLIBC_BUILD_DIR.
zigbuild() {
    zigbuild_install
    # zig's linker searches only the directories it is given, and /usr/lib
    # holds this machine's newer glibc: programs that link libmariadb find
    # its link name alone in a directory of its own. (Always the same flags:
    # other ones would rebuild every crate.)
    local link="$TARGET_DIR/glibc-floor-link" multiarch
    multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
    mkdir -p "$link"
    [ ! -e "/usr/lib/$multiarch/libmariadb.so.3" ] || ln -sfn "/usr/lib/$multiarch/libmariadb.so.3" "$link/libmariadb.so"
    (cd "$REPO_ROOT" && CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-L native=$link" \
        cargo zigbuild --release --target "$GLIBC_TARGET" "$@")
}

# build_glibc_floor : the workspace's shared objects and programs.
build_glibc_floor() { zigbuild --workspace --lib --bins; }

# ---- throwaway MariaDB servers (own datadir, socket, port; never the system service)

# mariadb_client SOCK SQL : run SQL, fail on any error, print tab-separated rows.
mariadb_client() {
    mariadb --no-defaults --protocol=socket --socket="$1" -uroot -N -B -e "$2"
}

# wait_for_server SOCK PID_OR_EMPTY SECONDS : until the server answers; gives
# up early when PID (the server or its mysqld_safe) has exited.
wait_for_server() {
    local sock="$1" pid="$2" secs="$3" i
    for ((i = 0; i < secs * 5; i++)); do
        if mariadb --no-defaults --protocol=socket --socket="$sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
            return 0
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.2
    done
    return 1
}

# init_datadir DIR : a fresh datadir for a throwaway server.
init_datadir() {
    mkdir -p "$1"
    mariadb-install-db --no-defaults --datadir="$1" --user=root --auth-root-authentication-method=normal \
        --skip-test-db >"$1.install.log" 2>&1 || { cat "$1.install.log" >&2; return 1; }
}

# pid_of_mariadbd PIDFILE : pid of the server, once its pid file exists.
pid_from_file() {
    local f="$1" i
    for ((i = 0; i < 150; i++)); do
        [ -s "$f" ] && { cat "$f"; return 0; }
        sleep 0.2
    done
    return 1
}

# stop_pid PID : SIGTERM and wait up to 60 s.
stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# load_sample_data SOCK : a small InnoDB + Aria + MyISAM data set.
load_sample_data() {
    mariadb_client "$1" "
        CREATE DATABASE IF NOT EXISTS cidb;
        USE cidb;
        CREATE TABLE cidb.t_innodb (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(200)) ENGINE=InnoDB;
        CREATE TABLE cidb.t_aria (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=Aria;
        CREATE TABLE cidb.t_myisam (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=MyISAM;
        INSERT INTO cidb.t_innodb (v) SELECT CONCAT('row-', seq, '-', REPEAT('x', 100)) FROM seq_1_to_20000;
        INSERT INTO cidb.t_aria SELECT seq, CONCAT('aria-', seq) FROM seq_1_to_5000;
        INSERT INTO cidb.t_myisam SELECT seq, CONCAT('myisam-', seq) FROM seq_1_to_5000;"
}

# checksums SOCK : one line per table: name, row count, CHECKSUM TABLE.
checksums() {
    local t
    for t in t_innodb t_aria t_myisam; do
        printf '%s %s %s\n' "$t" \
            "$(mariadb_client "$1" "SELECT COUNT(*) FROM cidb.$t")" \
            "$(mariadb_client "$1" "CHECKSUM TABLE cidb.$t EXTENDED" | cut -f2)"
    done
}

# backup_and_verify SOCK DEST WORKDIR [SERVER-OPTION...] : SET
# tokudb_backup_dir (or, with TOKUBACKUP=PATH, tokubackup backup, verify and
# restore), then start a second server on the copy (crash recovery)
# and compare table checksums. The options are the source server's that
# recovery depends on: with the binary log on, InnoDB's prepared
# transactions are resolved from the copied binlog only if it is on again.
backup_and_verify() {
    local sock="$1" dest="$2" work="$3"
    shift 3
    local before after err
    before="$(checksums "$sock")"
    local rdir="$work/restore" rsock="$work/restore.sock" rpid
    if [ -n "${TOKUBACKUP:-}" ]; then
        # The packaged command: backup, verify (checksums), restore.
        "$TOKUBACKUP" backup "$dest" --no-defaults --socket="$sock" --user=root ||
            die "$TOKUBACKUP backup $dest failed"
        "$TOKUBACKUP" verify "$dest" || die "$TOKUBACKUP verify $dest failed"
        "$TOKUBACKUP" restore "$dest" --datadir="$rdir" --user=root ||
            die "$TOKUBACKUP restore $dest failed"
    else
        mariadb_client "$sock" "SET SESSION tokudb_backup_dir='$dest'" ||
            die "SET tokudb_backup_dir='$dest' failed"
        err="$(mariadb_client "$sock" "SELECT @@tokudb_backup_last_error")"
        [ "$err" = "0" ] || die "tokudb_backup_last_error=$err after the backup"
        # Restore = start a server on the copied datadir (no preload needed).
        cp -a "$dest/mysql_data_dir" "$rdir"
    fi
    [ -d "$dest/mysql_data_dir/cidb" ] || die "backup has no mysql_data_dir/cidb: $(find "$dest" -maxdepth 2 | head -20)"
    [ -f "$dest/mysql_data_dir/ibdata1" ] || die "backup has no ibdata1"
    rm -f "$rdir"/*.pid
    mariadbd --no-defaults --datadir="$rdir" --socket="$rsock" --skip-networking "$@" \
        --user=root --pid-file="$work/restore.pid" --log-error="$work/restore.err" >>"$work/restore.err" 2>&1 &
    rpid=$!
    wait_for_server "$rsock" "$rpid" 120 || { cat "$work/restore.err" >&2; die "server on the restored backup did not start"; }
    after="$(checksums "$rsock")"
    stop_pid "$rpid"
    wait "$rpid" 2>/dev/null || true
    log "source:   $(echo "$before" | tr '\n' ' ')"
    log "restored: $(echo "$after" | tr '\n' ' ')"
    [ "$before" = "$after" ] || die "restored backup differs from the source"
}

# ---- the library's C test programs (tests/c/*.c), for valgrind and ASan

# build_c_tests OUT LIB CC-FLAGS... : compile each tests/c/*.c twice (plain
# and -D_FILE_OFFSET_BITS=64: both symbol sets, open/open64 ...) against
# include/backup.h, linked with LIB (a libHotBackup.so) through OUT/lib.
build_c_tests() {
    local out="$1" lib="$2" src name
    shift 2
    mkdir -p "$out/lib"
    ln -sf "$lib" "$out/lib/libHotBackup.so.1"
    ln -sf "$lib" "$out/lib/libHotBackup.so"
    for src in "$REPO_ROOT"/tests/c/*.c; do
        [ -e "$src" ] || die "no C test programs in tests/c"
        name="$(basename "$src" .c)"
        cc -std=gnu11 -g -O1 -Wall -Wextra -Werror -pthread "$@" -I"$REPO_ROOT/include" \
            -o "$out/$name" "$src" -L"$out/lib" -lHotBackup -ldl -luring
        cc -std=gnu11 -g -O1 -Wall -Wextra -Werror -pthread "$@" -D_FILE_OFFSET_BITS=64 -I"$REPO_ROOT/include" \
            -o "$out/$name-lfs" "$src" -L"$out/lib" -lHotBackup -ldl -luring
    done
}

# c_test_args NAME WORKDIR : the arguments each test program runs with.
# A program this list does not know gets its work directory only.
c_test_args() {
    case "${1%-lfs}" in
        stress) echo "${STRESS_ITERATIONS:-4} ${STRESS_SEED:-1} $2" ;;
        *) echo "$2" ;;
    esac
}

# run_c_tests OUT WRAPPER... : run every program built by build_c_tests, with
# the library preloaded (LD_PRELOAD, as in a server), under WRAPPER (e.g.
# valgrind). PRELOAD_FIRST is put before the library in LD_PRELOAD;
# C_TEST_SKIP names programs not to run (C_TEST_SKIP_WHY says why).
run_c_tests() {
    local out="$1" prog name work args
    shift
    for prog in "$out"/*; do
        [ -f "$prog" ] && [ -x "$prog" ] || continue
        name="$(basename "$prog")"
        if [[ " ${C_TEST_SKIP:-} " == *" ${name%-lfs} "* ]]; then
            log "-- SKIP $name under ${RUN_LABEL:-this run}: ${C_TEST_SKIP_WHY:-listed in C_TEST_SKIP}"
            continue
        fi
        work="$(mktemp -d "$out/work.$name.XXXXXX")"
        read -r -a args <<<"$(c_test_args "$name" "$work")"
        log "-- $name ${args[*]}"
        # A hang fails the step (timeout exits 124) instead of eating the CI budget.
        LD_LIBRARY_PATH="$out/lib" LD_PRELOAD="${PRELOAD_FIRST:+$PRELOAD_FIRST }$out/lib/libHotBackup.so.1" \
            timeout --kill-after=10 "${C_TEST_TIMEOUT:-900}" "$@" "$prog" "${args[@]}" || {
            local rc=$?
            # 99 = the checker (valgrind --error-exitcode, ASAN_OPTIONS exitcode) found errors.
            [ "$rc" -eq 99 ] && die "$name: ${RUN_LABEL:-checker} reported memory errors or leaks (exit 99)"
            # 77 = a scenario skipped itself (printed why): it proved nothing.
            if [ "$rc" -eq 77 ]; then
                [ "${HOTBACKUP_ALLOW_SKIP:-}" = 1 ] || die "$name: a scenario skipped itself (see above; HOTBACKUP_ALLOW_SKIP=1 accepts that)"
                log "-- $name: a scenario skipped itself, accepted (HOTBACKUP_ALLOW_SKIP=1)"
                rm -rf "$work"
                continue
            fi
            die "$name failed (exit $rc) under ${RUN_LABEL:-no checker}: the program's own check, see its output above"
        }
        rm -rf "$work"
    done
}
