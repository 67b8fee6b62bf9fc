#!/usr/bin/env bash
# Inspect what ci/build-packages.sh made, without installing anything:
# lintian (no errors), the file lists, links, modes, conffiles, control files
# and scriptlets of the .debs and .rpms, and the tarball's contents.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
apt_install lintian rpm cpio binutils dpkg-dev

VERSION="$(workspace_version)"
MA="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
SOFILE="libHotBackup.so.$VERSION"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

one() { # one GLOB: the single file matching GLOB
    local f=("$@")
    if [ "${#f[@]}" -ne 1 ] || [ ! -e "${f[0]}" ]; then die "expected one file, found: ${f[*]}"; fi
    printf '%s\n' "${f[0]}"
}
LIB_DEB="$(one "$PKG_DIR"/libhotbackup1_"$VERSION"-1_*.deb)"
DEV_DEB="$(one "$PKG_DIR"/libhotbackup-dev_"$VERSION"-1_*.deb)"
PLUGIN_DEB="$(one "$PKG_DIR"/tokudb-backup-plugin_"$VERSION"-1_*.deb)"
RPM="$(one "$PKG_DIR"/tokudb-backup-plugin-"$VERSION"-1.x86_64.rpm)"
DEVEL_RPM="$(one "$PKG_DIR"/tokudb-backup-plugin-devel-"$VERSION"-1.x86_64.rpm)"
TARBALL="$(one "$PKG_DIR"/tokudb-backup-plugin-"$VERSION"-x86_64-linux.tar.gz)"

# man_pages PREFIX : the tokubackup man pages, one line each after PREFIX.
man_pages() {
    local p
    for p in tokubackup tokubackup-backup tokubackup-verify tokubackup-restore tokubackup-info tokubackup-replica-sql; do
        printf '%s%s.1.gz\n' "$1" "$p"
    done
}

# expect_lines WHAT EXPECTED ACTUAL : exact comparison of sorted line sets.
expect_lines() {
    if ! diff -u <(printf '%s\n' "$2" | sort) <(printf '%s\n' "$3" | sort) >"$WORK/diff"; then
        cat "$WORK/diff" >&2
        die "$1 differs from the expected list (- expected, + actual)"
    fi
    log "ok: $1"
}
contains() { # contains WHAT FILE PATTERN
    grep -qE -- "$3" "$2" || { cat "$2" >&2; die "$1: no line matching /$3/"; }
}

# deb_list DEB : "TYPE PATH[ -> TARGET]" for files and links (no directories).
deb_list() {
    dpkg-deb --fsys-tarfile "$1" | tar -tvf - | awk '
        $1 ~ /^-/ { sub(/^\.\//, "/", $6); print "f " $1 " " $6 }
        $1 ~ /^l/ { sub(/^\.\//, "/", $6); print "l " $6 " -> " $8 }'
}

check_lintian() {
    # Errors fail the run; warnings and infos are shown.
    lintian --fail-on error --display-info --allow-root "$LIB_DEB" "$DEV_DEB" "$PLUGIN_DEB" | tee "$WORK/lintian"
    if grep -q '^E:' "$WORK/lintian"; then die "lintian reported errors"; fi
    log "ok: lintian, no errors"
}

check_debs() {
    expect_lines "libhotbackup1 contents" "\
f -rw-r--r-- /usr/lib/$MA/$SOFILE
l /usr/lib/$MA/libHotBackup.so.1 -> $SOFILE
f -rw-r--r-- /usr/share/doc/libhotbackup1/changelog.Debian.gz
f -rw-r--r-- /usr/share/doc/libhotbackup1/copyright" "$(deb_list "$LIB_DEB")"

    expect_lines "libhotbackup-dev contents" "\
f -rw-r--r-- /usr/include/hotbackup/backup.h
f -rw-r--r-- /usr/lib/$MA/pkgconfig/hotbackup.pc
l /usr/lib/$MA/libHotBackup.so -> libHotBackup.so.1
f -rw-r--r-- /usr/share/doc/libhotbackup-dev/changelog.Debian.gz
f -rw-r--r-- /usr/share/doc/libhotbackup-dev/copyright" "$(deb_list "$DEV_DEB")"

    expect_lines "tokudb-backup-plugin contents" "\
f -rw-r--r-- /usr/lib/mysql/plugin/tokudb_backup.so
l /usr/lib/mysql/plugin/tokubackup.so -> tokudb_backup.so
f -rw-r--r-- /etc/mysql/mariadb.conf.d/60-tokudb-backup.cnf
f -rw-r--r-- /lib/systemd/system/mariadb.service.d/10-tokudb-backup.conf
f -rw-r--r-- /usr/share/doc/tokudb-backup-plugin/README.md
f -rw-r--r-- /usr/share/doc/tokudb-backup-plugin/changelog.Debian.gz
f -rw-r--r-- /usr/share/doc/tokudb-backup-plugin/copyright
f -rwxr-xr-x /usr/bin/tokubackup
$(man_pages "f -rw-r--r-- /usr/share/man/man1/")
f -rw-r--r-- /usr/share/bash-completion/completions/tokubackup
f -rw-r--r-- /usr/share/zsh/vendor-completions/_tokubackup
f -rw-r--r-- /usr/share/fish/vendor_completions.d/tokubackup.fish" "$(deb_list "$PLUGIN_DEB")"

    # Control data.
    local c="$WORK/ctl"
    mkdir -p "$c"
    dpkg-deb -e "$LIB_DEB" "$c/lib"
    contains "libhotbackup1 triggers" "$c/lib/triggers" '^activate-noawait ldconfig$'
    contains "libhotbackup1 shlibs" "$c/lib/shlibs" "^libHotBackup 1 libhotbackup1 \(>= $VERSION\)$"
    contains "libhotbackup1 symbols" "$c/lib/symbols" '^ tokubackup_create_backup@Base '
    contains "libhotbackup1 symbols" "$c/lib/symbols" '^ tokubackup_throttle_backup@Base '
    contains "libhotbackup1 symbols" "$c/lib/symbols" '^ tokubackup_version_string@Base '
    contains "libhotbackup1 Depends" "$c/lib/control" '^Depends: .*libc6 \(>= '
    contains "libhotbackup1 Multi-Arch" "$c/lib/control" '^Multi-Arch: same$'
    contains "libhotbackup1 md5sums" "$c/lib/md5sums" " usr/lib/$MA/$SOFILE$"
    dpkg-deb -e "$PLUGIN_DEB" "$c/plugin"
    contains "plugin Depends" "$c/plugin/control" '^Depends: .*libhotbackup1'
    contains "plugin Depends" "$c/plugin/control" '^Depends: .*libmariadb3 \(>= '
    # cargo-deb sorts the list once $auto adds entries (libmariadb3 for tokubackup).
    contains "plugin Depends" "$c/plugin/control" '^Depends: .*mariadb-server \(>= 1:10\.11\)'
    contains "plugin Depends" "$c/plugin/control" '^Depends: .*mariadb-server \(<< 1:10\.12~\)'
    expect_lines "plugin conffiles" "/etc/mysql/mariadb.conf.d/60-tokudb-backup.cnf" "$(cat "$c/plugin/conffiles")"
    contains "plugin postinst" "$c/plugin/postinst" 'daemon-reload'
    contains "plugin postrm" "$c/plugin/postrm" 'daemon-reload'
    log "ok: control files (triggers, shlibs, symbols, Depends, conffiles, scripts)"

    # The binaries themselves, and the drop-ins' library path.
    local x="$WORK/x"
    dpkg-deb -x "$LIB_DEB" "$x"
    dpkg-deb -x "$PLUGIN_DEB" "$x"
    [ "$(readelf -d "$x/usr/lib/$MA/$SOFILE" | sed -n 's/.*soname: \[\(.*\)\]/\1/p')" = libHotBackup.so.1 ] ||
        die "SONAME of the packaged library is not libHotBackup.so.1"
    contains "mysqld_safe snippet" "$x/etc/mysql/mariadb.conf.d/60-tokudb-backup.cnf" \
        "^malloc-lib = /usr/lib/$MA/libHotBackup.so.1$"
    contains "mysqld_safe snippet group" "$x/etc/mysql/mariadb.conf.d/60-tokudb-backup.cnf" '^\[mysqld_safe\]$'
    contains "systemd drop-in" "$x/lib/systemd/system/mariadb.service.d/10-tokudb-backup.conf" \
        "^Environment=\"LD_PRELOAD=/usr/lib/$MA/libHotBackup.so.1\"$"
    # systemd parses the drop-in next to MariaDB's unit without complaint
    # (verify reads FILE.d/ beside the unit file; no running systemd needed).
    if [ -f /lib/systemd/system/mariadb.service ] && command -v systemd-analyze >/dev/null; then
        mkdir -p "$WORK/sd/mariadb.service.d"
        cp /lib/systemd/system/mariadb.service "$WORK/sd/"
        cp "$x/lib/systemd/system/mariadb.service.d/10-tokudb-backup.conf" "$WORK/sd/mariadb.service.d/"
        systemd-analyze verify "$WORK/sd/mariadb.service" >"$WORK/sd/verify.log" 2>&1 || true
        if grep -n 'tokudb-backup' "$WORK/sd/verify.log"; then die "systemd-analyze verify complains about the drop-in"; fi
        log "ok: systemd-analyze verify mariadb.service with the drop-in"
    fi
    log "ok: SONAME, drop-in paths"
}

check_rpms() {
    rpm -qlpv "$RPM" | tee "$WORK/rpm-list"
    expect_lines "rpm file list" "\
/etc/my.cnf.d/tokudb-backup.cnf
/usr/lib/systemd/system/mariadb.service.d/10-tokudb-backup.conf
/usr/lib64/$SOFILE
/usr/lib64/mysql/plugin/tokudb_backup.so
/usr/share/doc/tokudb-backup-plugin/README.md
/usr/share/licenses/tokudb-backup-plugin/COPYING
/usr/bin/tokubackup
$(man_pages /usr/share/man/man1/)
/usr/share/bash-completion/completions/tokubackup
/usr/share/zsh/site-functions/_tokubackup
/usr/share/fish/vendor_completions.d/tokubackup.fish" "$(rpm -qlp "$RPM")"
    contains "rpm tokubackup mode" "$WORK/rpm-list" '^-rwxr-xr-x .* /usr/bin/tokubackup$'
    grep -qx 'libmariadb.so.3()(64bit)' <<<"$(rpm -qpR "$RPM")" || die "rpm does not require libmariadb.so.3()(64bit)"
    contains "rpm library mode" "$WORK/rpm-list" "^-rwxr-xr-x .* /usr/lib64/$SOFILE$"
    contains "rpm plugin mode" "$WORK/rpm-list" '^-rwxr-xr-x .* /usr/lib64/mysql/plugin/tokudb_backup.so$'
    expect_lines "rpm config files" "/etc/my.cnf.d/tokudb-backup.cnf" "$(rpm -qpc "$RPM")"
    expect_lines "rpm doc files" "\
/usr/share/doc/tokudb-backup-plugin/README.md
/usr/share/licenses/tokudb-backup-plugin/COPYING
$(man_pages /usr/share/man/man1/)" "$(rpm -qpd "$RPM")"
    [ "$(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH}' "$RPM")" = "tokudb-backup-plugin $VERSION 1 x86_64" ] ||
        die "rpm NAME/VERSION/RELEASE/ARCH: $(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH}' "$RPM")"
    # %config(noreplace): FILEFLAGS has RPMFILE_CONFIG (1) and RPMFILE_NOREPLACE (16).
    grep -qE '^17 /etc/my.cnf.d/tokudb-backup.cnf$' <<<"$(rpm -qp --qf '[%{FILEFLAGS} %{FILENAMES}\n]' "$RPM")" ||
        die "/etc/my.cnf.d/tokudb-backup.cnf is not %config(noreplace)"

    rpm -qp --scripts "$RPM" | tee "$WORK/rpm-scripts"
    contains "rpm %post" "$WORK/rpm-scripts" "^ln -sf $SOFILE /usr/lib64/libHotBackup.so.1$"
    contains "rpm %post" "$WORK/rpm-scripts" '^ln -sf tokudb_backup.so /usr/lib64/mysql/plugin/tokubackup.so$'
    contains "rpm scriptlets" "$WORK/rpm-scripts" '^/sbin/ldconfig$'
    contains "rpm %postun" "$WORK/rpm-scripts" 'rm -f /usr/lib64/libHotBackup.so.1 /usr/lib64/mysql/plugin/tokubackup.so'
    contains "rpm scriptlets" "$WORK/rpm-scripts" 'daemon-reload'
    # The scriptlets must at least be valid sh.
    rpm -qp --qf '%{POSTIN}' "$RPM" | sh -n
    rpm -qp --qf '%{POSTUN}' "$RPM" | sh -n
    grep -qx '/sbin/ldconfig' <<<"$(rpm -qpR "$RPM")" || die "rpm does not require /sbin/ldconfig"

    expect_lines "devel rpm file list" "\
/usr/include/hotbackup/backup.h
/usr/lib64/pkgconfig/hotbackup.pc" "$(rpm -qlp "$DEVEL_RPM")"
    grep -q '^tokudb-backup-plugin' <<<"$(rpm -qpR "$DEVEL_RPM")" || die "devel rpm does not require tokudb-backup-plugin"
    grep -q 'ln -sf libHotBackup.so.1 /usr/lib64/libHotBackup.so' <<<"$(rpm -qp --scripts "$DEVEL_RPM")" ||
        die "devel rpm %post does not make the libHotBackup.so link"

    # Payload: the drop-ins point at /usr/lib64, the library has its SONAME.
    local x="$WORK/rpmx"
    mkdir -p "$x"
    # rpm2cpio of Debian 12's rpm 4.18 exits 1 after writing a complete
    # archive; the files checked below show whether the extraction worked.
    { rpm2cpio "$RPM" || true; } >"$WORK/payload.cpio"
    (cd "$x" && cpio -idm --quiet <"$WORK/payload.cpio")
    contains "rpm mysqld_safe snippet" "$x/etc/my.cnf.d/tokudb-backup.cnf" '^malloc-lib = /usr/lib64/libHotBackup.so.1$'
    contains "rpm systemd drop-in" "$x/usr/lib/systemd/system/mariadb.service.d/10-tokudb-backup.conf" \
        '^Environment="LD_PRELOAD=/usr/lib64/libHotBackup.so.1"$'
    [ "$(readelf -d "$x/usr/lib64/$SOFILE" | sed -n 's/.*soname: \[\(.*\)\]/\1/p')" = libHotBackup.so.1 ] ||
        die "SONAME of the library in the rpm is not libHotBackup.so.1"
    log "ok: rpm contents, modes, config files, scriptlets, payload"

    # Install both RPMs into an empty root with rpm itself (no RPM system
    # here: --nodeps, and the scriptlets, which would run inside the root,
    # are run below with the paths moved into it), run %post, check the
    # links it makes, run %postun as for an erase, erase, and check that
    # nothing is left.
    local root="$WORK/rpmroot"
    mkdir -p "$root"
    rpm --root "$root" --initdb 2>/dev/null
    # (Debian's rpm warns on stderr that it is not the system's installer.)
    rpm --root "$root" -i --nodeps --noscripts "$RPM" "$DEVEL_RPM" 2>"$WORK/rpm-i.err" ||
        { cat "$WORK/rpm-i.err" >&2; die "rpm -i failed"; }
    [ -f "$root/usr/lib64/$SOFILE" ] && [ -f "$root/usr/lib64/mysql/plugin/tokudb_backup.so" ] ||
        die "rpm -i did not install the library and the plugin"
    scriptlet() { # scriptlet RPM TAG ARG: run it with paths under $root
        rpm -qp --qf "%{$2}" "$1" | sed -e "s|/usr/lib64|$root/usr/lib64|g" -e 's|/sbin/ldconfig|true|' |
            sh -s -- "$3" || die "%$2 of $(basename "$1") failed"
    }
    scriptlet "$RPM" POSTIN 1
    scriptlet "$DEVEL_RPM" POSTIN 1
    [ "$(readlink "$root/usr/lib64/libHotBackup.so.1")" = "$SOFILE" ] || die "%post made no libHotBackup.so.1 -> $SOFILE"
    [ -f "$root/usr/lib64/mysql/plugin/tokubackup.so" ] || die "%post made no tokubackup.so link"
    [ -f "$root/usr/lib64/libHotBackup.so" ] || die "devel %post made no libHotBackup.so link"
    scriptlet "$DEVEL_RPM" POSTUN 0
    scriptlet "$RPM" POSTUN 0
    rpm --root "$root" -e --nodeps --noscripts tokudb-backup-plugin-devel tokudb-backup-plugin 2>"$WORK/rpm-e.err" ||
        { cat "$WORK/rpm-e.err" >&2; die "rpm -e failed"; }
    local left
    left="$(find "$root" \( -type f -o -type l \) -not -path "$root/root/*" -not -path "$root/var/lib/rpm*" -not -path "$root/usr/lib/sysimage/*")"
    [ -z "$left" ] || die "left after %postun and rpm -e: $left"
    log "ok: rpm -i into an empty root, %post links, %postun and rpm -e leave nothing"
}

check_tarball() {
    local top="tokudb-backup-plugin-$VERSION-x86_64-linux"
    expect_lines "tarball contents" "\
$top/
$top/COPYING
$top/README
$top/bin/
$top/bin/tokubackup
$top/share/
$top/share/bash-completion/
$top/share/bash-completion/completions/
$top/share/bash-completion/completions/tokubackup
$top/share/fish/
$top/share/fish/vendor_completions.d/
$top/share/fish/vendor_completions.d/tokubackup.fish
$top/share/man/
$top/share/man/man1/
$(man_pages "$top/share/man/man1/")
$top/share/zsh/
$top/share/zsh/site-functions/
$top/share/zsh/site-functions/_tokubackup
$top/include/
$top/include/backup.h
$top/lib/
$top/lib/$SOFILE
$top/lib/libHotBackup.so
$top/lib/libHotBackup.so.1
$top/lib/mysql/
$top/lib/mysql/plugin/
$top/lib/mysql/plugin/tokubackup.so
$top/lib/mysql/plugin/tokudb_backup.so
$top/lib/mysql/plugin/tokudb_backup_mysql57.so
$top/lib/mysql/plugin/tokudb_backup_mysql80.so" "$(tar -tzf "$TARBALL")"
    grep -q " $top/lib/libHotBackup.so.1 -> $SOFILE$" <<<"$(tar -tvzf "$TARBALL")" || die "tarball: libHotBackup.so.1 is not a link to $SOFILE"
    tar -xzf "$TARBALL" -C "$WORK" "$top/README"
    contains "tarball README" "$WORK/$top/README" "tar xzf tokudb-backup-plugin-$VERSION-x86_64-linux.tar.gz"
    contains "tarball README" "$WORK/$top/README" "INSTALL PLUGIN tokudb_backup SONAME 'tokudb_backup.so'"
    if grep -nE '@[A-Z_]+@' "$WORK/$top/README"; then die "tarball README has unfilled @PLACEHOLDERS@"; fi
    log "ok: tarball contents and README"
}

# The MySQL/Percona RPMs: that series' plugin (the MySQL plugin interface),
# a server of that series required, the drop-in for mysqld.service.
check_mysql_rpms() {
    local f rpm x
    for f in mysql57 mysql80; do
        rpm="$(one "$PKG_DIR"/tokudb-backup-plugin-"$f"-"$VERSION"-1.x86_64.rpm)"
        x="$WORK/rpm-$f"
        mkdir -p "$x"
        { rpm2cpio "$rpm" || true; } | (cd "$x" && cpio -idm --quiet)
        nm -D --defined-only "$x/usr/lib64/mysql/plugin/tokudb_backup.so" | grep -q ' _mysql_plugin_interface_version_$' ||
            die "$rpm: the plugin is not a MySQL-interface build"
        grep -qx "mysql-server >= ${f:5:1}.${f:6:1}" <<<"$(rpm -qpR "$rpm")" ||
            die "$rpm does not require mysql-server >= ${f:5:1}.${f:6:1}: $(rpm -qpR "$rpm" | tr '\n' ' ')"
        contains "$f rpm systemd drop-in" "$x/usr/lib/systemd/system/mysqld.service.d/10-tokudb-backup.conf" \
            '^Environment="LD_PRELOAD=/usr/lib64/libHotBackup.so.1"$'
        if grep -n mariadb "$x/usr/lib/systemd/system/mysqld.service.d/10-tokudb-backup.conf"; then
            die "$f rpm drop-in names MariaDB"
        fi
        log "ok: $rpm (mysql-server >= ${f:5:1}.${f:6:1}, MySQL-interface plugin, mysqld.service drop-in)"
    done
}

# Arguments select checks (lintian debs rpms tarball); none = all.
SELECTED=" $* "
want() { [ "$SELECTED" = "  " ] || [[ "$SELECTED" == *" $1 "* ]]; }
if want lintian; then step "lintian" check_lintian; fi
if want debs; then step "deb contents" check_debs; fi
if want rpms; then step "rpm contents (rpm -qlpv, --scripts)" check_rpms; fi
if want rpms; then step "MySQL/Percona rpms" check_mysql_rpms; fi
if want tarball; then step "tarball contents" check_tarball; fi
