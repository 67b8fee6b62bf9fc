#!/usr/bin/env bash
# End-to-end demonstration on a fresh Debian 12 machine:
#   build libHotBackup and the tokudb_backup plugin, start a throwaway MariaDB
#   with the library preloaded, load a bank data set, run a write load
#   (transfers + DDL), take a hot backup with `tokubackup backup` (the plugin's
#   SET tokudb_backup_dir), check it with `tokubackup verify` and
#   `verify --recover`, restore it with `tokubackup restore`, start a second
#   server on the restored datadir and verify its data. Prints every check; exits non-zero
#   on the first failed one. Never touches the system's MariaDB service.
#
#   ci/demo.sh            (KEEP=1 keeps the work directory)
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ACCOUNTS=100
INITIAL=1000

say() { printf '\n== %s\n' "$*"; }
pass() { printf '   PASS  %s\n' "$*"; }
fail() { printf '   FAIL  %s\n' "$*"; exit 1; }

say "Installing what is missing (Debian packages)"
"$REPO_ROOT/ci/install-deps.sh"

say "Building libHotBackup.so, tokudb_backup.so and tokubackup (release)"
(cd "$REPO_ROOT" && cargo build --release -p hotbackup -p tokudb_backup -p tokubackup 2>&1 | tail -n 2)
LIB="$TARGET_DIR/release/libHotBackup.so"
PLUGIN="$TARGET_DIR/release/libtokudb_backup.so"
TB="$TARGET_DIR/release/tokubackup"
[ -f "$LIB" ] && [ -f "$PLUGIN" ] && [ -f "$TB" ] || die "build did not produce $LIB, $PLUGIN and $TB"

WORK="$(mktemp -d /tmp/tokudb-backup-demo.XXXXXX)"
DATA="$WORK/data"
SOCK="$DATA/sock"
BACKUP="$WORK/backup"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

sql() { mariadb_client "$SOCK" "$1"; }

say "Starting a throwaway MariaDB in $WORK with LD_PRELOAD=$LIB"
init_datadir "$DATA"
mkdir -p "$WORK/plugins"
ln -s "$PLUGIN" "$WORK/plugins/tokudb_backup.so"
LD_PRELOAD="$LIB" mariadbd --no-defaults --datadir="$DATA" --socket="$SOCK" \
    --port="$((20000 + RANDOM % 20000))" --bind-address=127.0.0.1 --user=root \
    --pid-file="$DATA/mariadbd.pid" --log-error="$WORK/err.log" \
    --plugin-dir="$WORK/plugins" --plugin-load-add=tokudb_backup.so \
    --log-bin=mysql-bin --server-id=1 2>/dev/null &
PIDS+=($!)
disown
wait_for_server "$SOCK" "" 120 || { cat "$WORK/err.log" >&2; die "server did not start"; }
pass "server up; plugin $(sql "SELECT @@tokudb_backup_plugin_version"), library $(sql "SELECT @@tokudb_backup_version")"
if grep -q "Using io_uring" "$WORK/err.log" && ! grep -q "falling back" "$WORK/err.log"; then
    pass "InnoDB writes through io_uring (default settings); the library follows its ring"
else
    pass "InnoDB fell back from io_uring to pwrite (see the library's line in $WORK/err.log)"
fi

say "Loading data: $ACCOUNTS accounts, a transfer log, an Aria ledger, ~100 MB of filler"
sql "CREATE DATABASE bank; USE bank;
     CREATE TABLE bank.accounts(id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
     CREATE TABLE bank.transfers(id BIGINT AUTO_INCREMENT PRIMARY KEY, src INT, dst INT, amount INT) ENGINE=InnoDB;
     CREATE TABLE bank.ledger(id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=Aria TRANSACTIONAL=1;
     CREATE TABLE bank.filler(id INT PRIMARY KEY, pad VARCHAR(255)) ENGINE=InnoDB;
     INSERT INTO bank.accounts SELECT seq, $INITIAL FROM seq_1_to_$ACCOUNTS;
     INSERT INTO bank.ledger SELECT seq, $INITIAL FROM seq_1_to_$ACCOUNTS;
     INSERT INTO bank.filler SELECT seq, REPEAT(CHAR(65 + seq % 26), 255) FROM seq_1_to_300000;"
pass "loaded: $(du -sm "$DATA/bank" | cut -f1) MiB in $DATA/bank, $(du -sm "$DATA" | cut -f1) MiB in the datadir"

# transfers N SEED: N transactions moving money between two accounts (rows
# locked in id order: no deadlocks), each logged once, plus one Aria update.
transfers() {
    local n="$1" i a b t amt
    RANDOM="$2"
    for ((i = 0; i < n; i++)); do
        a=$((1 + RANDOM % ACCOUNTS)); b=$((1 + RANDOM % ACCOUNTS)); amt=$((1 + RANDOM % 50))
        [ "$a" = "$b" ] && b=$((a % ACCOUNTS + 1))
        if [ "$a" -lt "$b" ]; then t="$a,$b"; else t="$b,$a"; fi
        printf 'START TRANSACTION;\nSELECT id FROM bank.accounts WHERE id IN (%s) ORDER BY id FOR UPDATE;\n' "$t"
        printf 'UPDATE bank.accounts SET balance=balance-%d WHERE id=%d;\n' "$amt" "$a"
        printf 'UPDATE bank.accounts SET balance=balance+%d WHERE id=%d;\n' "$amt" "$b"
        printf 'INSERT INTO bank.transfers(src,dst,amount) VALUES (%d,%d,%d);\nCOMMIT;\n' "$a" "$b" "$amt"
        printf 'UPDATE bank.ledger SET balance=balance+IF(id=%d,-%d,%d) WHERE id IN (%d,%d);\n' "$a" "$amt" "$amt" "$a" "$b"
    done
}
ddl() {
    local i
    echo 'USE bank;'
    for ((i = 0; i < 200; i++)); do
        printf 'CREATE TABLE bank.tmp%d(id INT PRIMARY KEY, v INT) ENGINE=InnoDB;\n' "$i"
        printf 'INSERT INTO bank.tmp%d SELECT seq, seq FROM seq_1_to_1000;\n' "$i"
        printf 'ALTER TABLE bank.tmp%d FORCE;\nRENAME TABLE bank.tmp%d TO bank.old%d;\n' "$i" "$i" "$i"
        printf 'OPTIMIZE TABLE bank.ledger;\nALTER TABLE bank.accounts FORCE;\nDROP TABLE bank.old%d;\n' "$i"
    done
}

say "Starting the write load: 3 transfer clients and 1 DDL client"
for c in 1 2 3; do
    transfers 100000 "$c" | mariadb --no-defaults --socket="$SOCK" -uroot >/dev/null 2>"$WORK/client$c.err" &
    PIDS+=($!)
    disown
done
ddl | mariadb --no-defaults --socket="$SOCK" -uroot >/dev/null 2>"$WORK/ddl.err" &
PIDS+=($!)
disown
sleep 2
pass "$(sql "SELECT COUNT(*) FROM bank.transfers") transfers committed so far"

say "tokubackup backup $BACKUP (throttled to 50 MB/s so that progress can be watched)"
"$TB" backup "$BACKUP" --no-defaults --socket="$SOCK" --user=root --throttle=50000000 ||
    fail "tokubackup backup failed (exit $?)"
pass "backup done: $(sql "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='TOKUDB_BACKUP_LAST_RESULT'")"
for c in 1 2 3; do
    [ -s "$WORK/client$c.err" ] && fail "transfer client $c failed: $(cat "$WORK/client$c.err")"
done
pass "the write load ran during the whole backup: $(sql "SELECT COUNT(*) FROM bank.transfers") transfers now"
for p in "${PIDS[@]:1}"; do kill "$p" 2>/dev/null || true; done

say "What the backup holds"
ls -l "$BACKUP"
[ -f "$BACKUP/BACKUP-COMPLETE" ] && [ ! -e "$BACKUP/BACKUP-INCOMPLETE" ] && pass "completion marker present"
[ ! -e "$BACKUP/mysql_data_dir/sock" ] && [ ! -e "$BACKUP/mysql_data_dir/mariadbd.pid" ] && pass "socket and pid file not copied"
"$TB" info "$BACKUP" | sed 's/^/   /'
read -r BL_FILE BL_POS BL_GTID <"$BACKUP/tokubackup_binlog_info"
pass "snapshot binlog position: $BL_FILE:$BL_POS, GTID $BL_GTID"

say "tokubackup verify: completion marker, every file's size and xxh3-128 checksum, no unlisted file"
"$TB" verify "$BACKUP" || fail "tokubackup verify failed (exit $?)"
pass "every file of the backup is as the manifest says"

say "tokubackup verify --recover: crash recovery and CHECK TABLE on a scratch copy"
"$TB" verify "$BACKUP" --recover || fail "tokubackup verify --recover failed (exit $?)"
pass "the backup restores"

say "tokubackup restore $BACKUP --datadir $WORK/restored"
"$TB" restore "$BACKUP" --datadir="$WORK/restored" --user=root || fail "tokubackup restore failed (exit $?)"
pass "restored"

say "Starting a server on the restored datadir (crash recovery runs)"
RSOCK="$WORK/restored.sock"
mariadbd --no-defaults --datadir="$WORK/restored" --socket="$RSOCK" --skip-networking \
    --user=root --pid-file="$WORK/restored.pid" --log-error="$WORK/restored.err" \
    --log-bin=mysql-bin --server-id=1 2>/dev/null &
PIDS+=($!)
disown
wait_for_server "$RSOCK" "" 120 || { tail -n 30 "$WORK/restored.err"; fail "server on the backup did not start"; }
pass "server on the backup started"
rsql() { mariadb_client "$RSOCK" "$1"; }

say "Verifying the restored data"
bad="$(mariadb-check --no-defaults --socket="$RSOCK" -uroot --all-databases --check | grep -v -E 'OK$|^note|support check' || true)"
[ -z "$bad" ] || fail "CHECK TABLE: $bad"
pass "CHECK TABLE: all $(mariadb-check --no-defaults --socket="$RSOCK" -uroot --all-databases --check | grep -c 'OK$') tables OK"
total="$(rsql "SELECT SUM(balance) FROM bank.accounts")"
[ "$total" = "$((ACCOUNTS * INITIAL))" ] || fail "InnoDB total $total, expected $((ACCOUNTS * INITIAL))"
pass "InnoDB accounts total is constant: $total"
ltotal="$(rsql "SELECT SUM(balance) FROM bank.ledger")"
[ "$ltotal" = "$((ACCOUNTS * INITIAL))" ] || fail "Aria ledger total $ltotal"
pass "Aria ledger total is constant: $ltotal"
mism="$(rsql "SELECT COUNT(*) FROM bank.accounts a LEFT JOIN (SELECT id, SUM(d) d FROM (SELECT src id, -amount d FROM bank.transfers UNION ALL SELECT dst, amount FROM bank.transfers) m GROUP BY id) t ON a.id=t.id WHERE a.balance <> $INITIAL + IFNULL(t.d,0)")"
[ "$mism" = "0" ] || fail "$mism accounts disagree with the transfer log"
n="$(rsql "SELECT COUNT(*) FROM bank.transfers")"
pass "every one of the $n restored transfers is in the log exactly once (balances = initial + log)"
logged=0
while read -r f; do
    f="$(basename "$f")"
    stop=()
    [ "$f" = "$BL_FILE" ] && stop=(--stop-position="$BL_POS")
    c="$(mariadb-binlog --no-defaults "${stop[@]}" "$BACKUP/mysql_data_dir/$f" | grep -c '^INSERT INTO bank.transfers' || true)"
    logged=$((logged + c))
    [ "$f" = "$BL_FILE" ] && break
done <"$BACKUP/mysql_data_dir/mysql-bin.index"
[ "$logged" = "$n" ] || fail "binlog up to $BL_FILE:$BL_POS has $logged transfers, the data $n"
pass "binary log up to the recorded position has exactly the $n transfers of the data: nothing newer"

say "All checks passed"
