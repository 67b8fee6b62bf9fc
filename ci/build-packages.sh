#!/usr/bin/env bash
# Build the release library and plugin once, stage the installed trees, and
# make every package from them into $TARGET_DIR/packages:
#   libhotbackup1_V-1_amd64.deb, libhotbackup-dev_V-1_amd64.deb,
#   tokudb-backup-plugin_V-1_amd64.deb                        (cargo-deb)
#   tokudb-backup-plugin-V-1.x86_64.rpm,
#   tokudb-backup-plugin-devel-V-1.x86_64.rpm                 (cargo-generate-rpm)
#   tokudb-backup-plugin-V-x86_64-linux.tar.gz                (tar)
# The plugin packages and the tarball also carry the tokubackup command with
# its man pages and bash/zsh/fish completions (made by the binary itself from
# its argument definitions: tokubackup generate-docs).
# The version comes from [workspace.package] in Cargo.toml, nowhere else.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

apt_install dpkg-dev binutils
cargo_tool_install cargo-deb cargo-deb
cargo_tool_install cargo-generate-rpm cargo-generate-rpm

VERSION="$(workspace_version)"
MULTIARCH="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
DEB_LIBDIR="/usr/lib/$MULTIARCH"
RPM_LIBDIR="/usr/lib64"
log "version $VERSION, multiarch $MULTIARCH"

# Debian's changelog documents each release; it must name this version.
deb_version="$(dpkg-parsechangelog -l debian/changelog -S Version)"
[ "$deb_version" = "$VERSION-1" ] ||
    die "debian/changelog's top entry is $deb_version, Cargo.toml says $VERSION: add a changelog entry for $VERSION-1"

# One build for all packages (cargo deb/generate-rpm run with --no-build).
cargo build --release --workspace

LIB="$TARGET_DIR/release/libHotBackup.so"
PLUGIN="$TARGET_DIR/release/libtokudb_backup.so"
[ -f "$LIB" ] || die "$LIB was not built"
[ -f "$PLUGIN" ] || die "$PLUGIN was not built"
TOKUBACKUP="$TARGET_DIR/release/tokubackup"
[ -f "$TOKUBACKUP" ] || die "$TOKUBACKUP was not built"
# The RPMs and the tarball get glibc $GLIBC_FLOOR builds (README "Which
# systems"); the .deb, for Debian 12 only, the native one. The plugin for
# MySQL and Percona Server 5.7 / 8.0 (cargo features): one per series, for
# the tarball and the -mysql57/-mysql80 RPMs. The default (MariaDB) build is
# made last again, so $GLIBC_BUILD_DIR keeps it.
for f in mysql57 mysql80; do
    zigbuild -p tokudb_backup --lib --no-default-features --features "$f"
    cp "$GLIBC_BUILD_DIR/libtokudb_backup.so" "$GLIBC_BUILD_DIR/tokudb_backup_$f.so"
done
build_glibc_floor
LIB_FLOOR="$GLIBC_BUILD_DIR/libHotBackup.so"
PLUGIN_FLOOR="$GLIBC_BUILD_DIR/libtokudb_backup.so"
TOKUBACKUP_FLOOR="$GLIBC_BUILD_DIR/tokubackup"
[ -f "$TOKUBACKUP_FLOOR" ] || die "$TOKUBACKUP_FLOOR was not built"

# The file name carries the full version; its major must be the SONAME's.
soname="$(readelf -d "$LIB" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
[ "$soname" = "libHotBackup.so.1" ] || die "SONAME of $LIB is '$soname', expected libHotBackup.so.1"
[ "${VERSION%%.*}" = "1" ] ||
    die "version $VERSION does not match SONAME libHotBackup.so.1: bump the soname in build.rs and the package names together"
SOFILE="libHotBackup.so.$VERSION"

# Shared objects are shipped stripped of debug info (policy 10.1).
install_so() { install -D -m 644 "$1" "$2" && strip --strip-unneeded --remove-section=.comment "$2"; }

# subst FILE.in OUT : fill in the paths of one package flavour.
subst() {
    mkdir -p "$(dirname "$2")"
    sed -e "s|@LIBDIR@|$LIBDIR|g" -e "s|@PLUGINDIR@|$PLUGINDIR|g" -e "s|@SOFILE@|$SOFILE|g" \
        -e "s|@SYSTEMD_DROPIN@|$SYSTEMD_DROPIN|g" -e "s|@VERSION@|$VERSION|g" -e "s|@PREFIX@|${PREFIX:-}|g" "$1" >"$2"
    chmod 644 "$2"
}

pkgconfig() { # pkgconfig LIBDIR OUT
    mkdir -p "$(dirname "$2")"
    cat >"$2" <<EOF
prefix=/usr
libdir=$1
includedir=\${prefix}/include/hotbackup

Name: hotbackup
Description: Hot backup of a running process's directories (Percona TokuBackup API)
Version: $VERSION
Libs: -L\${libdir} -lHotBackup
Cflags: -I\${includedir}
EOF
    chmod 644 "$2"
}

rm -rf "$STAGE_DIR" "$PKG_DIR"
mkdir -p "$PKG_DIR"

# Man pages (gzip -9n: reproducible, policy 12.1) and completions, once.
DOCS="$STAGE_DIR/docs"
"$TOKUBACKUP" generate-docs --man "$DOCS/man" --completions "$DOCS/completions"
gzip -9n "$DOCS"/man/*.1

# stage_cli ROOT ZSH_DIR : the command, its man pages and completions under ROOT.
stage_cli() {
    install -D -m 755 "$TOKUBACKUP" "$1/usr/bin/tokubackup"
    strip --strip-unneeded --remove-section=.comment "$1/usr/bin/tokubackup"
    install -D -m 644 -t "$1/usr/share/man/man1" "$DOCS"/man/*.1.gz
    install -D -m 644 "$DOCS/completions/tokubackup.bash" "$1/usr/share/bash-completion/completions/tokubackup"
    install -D -m 644 "$DOCS/completions/_tokubackup" "$1$2/_tokubackup"
    install -D -m 644 "$DOCS/completions/tokubackup.fish" "$1/usr/share/fish/vendor_completions.d/tokubackup.fish"
}

# ---- Debian: libhotbackup1 (the soname package), libhotbackup-dev, tokudb-backup-plugin
LIBDIR="$DEB_LIBDIR" PLUGINDIR=/usr/lib/mysql/plugin
SYSTEMD_DROPIN=/lib/systemd/system/mariadb.service.d/10-tokudb-backup.conf
d="$STAGE_DIR/deb/libhotbackup1"
install_so "$LIB" "$d$LIBDIR/$SOFILE"
ln -s "$SOFILE" "$d$LIBDIR/libHotBackup.so.1"
d="$STAGE_DIR/deb/libhotbackup-dev"
install -D -m 644 include/backup.h "$d/usr/include/hotbackup/backup.h"
mkdir -p "$d$LIBDIR"
ln -s libHotBackup.so.1 "$d$LIBDIR/libHotBackup.so"
pkgconfig "$LIBDIR" "$d$LIBDIR/pkgconfig/hotbackup.pc"
d="$STAGE_DIR/deb/tokudb-backup-plugin"
install_so "$PLUGIN" "$d$PLUGINDIR/tokudb_backup.so"
ln -s tokudb_backup.so "$d$PLUGINDIR/tokubackup.so"
subst packaging/mariadb/tokudb-backup.cnf.in "$d/etc/mysql/mariadb.conf.d/60-tokudb-backup.cnf"
subst packaging/systemd/tokudb-backup.conf.in "$d$SYSTEMD_DROPIN"
install -D -m 644 README.md "$d/usr/share/doc/tokudb-backup-plugin/README.md"
stage_cli "$d" /usr/share/zsh/vendor-completions

# shlibs (policy 8.6) and symbols files for the library package; cargo-deb
# has no field for them, so they are added to its control archive below.
ctl="$STAGE_DIR/deb/libhotbackup1.control"
mkdir -p "$ctl"
echo "libHotBackup 1 libhotbackup1 (>= $VERSION)" >"$ctl/shlibs"
{
    echo "libHotBackup.so.1 libhotbackup1 #MINVER#"
    echo "* Build-Depends-Package: libhotbackup-dev"
    nm -D --defined-only "$STAGE_DIR/deb/libhotbackup1$LIBDIR/$SOFILE" | awk -v v="$VERSION" '{print " " $3 "@Base " v}' | sort
} >"$ctl/symbols"

cargo deb -p hotbackup --no-build --no-strip --multiarch=same --variant lib -o "$PKG_DIR/"
cargo deb -p hotbackup --no-build --no-strip --multiarch=same --variant dev -o "$PKG_DIR/"
cargo deb -p tokudb_backup --no-build --no-strip -o "$PKG_DIR/"

# cargo-deb writes no md5sums (debsums uses them) and has no field for the
# shlibs/symbols files of a library package (policy 8.6), nor can its $auto
# Depends see libHotBackup.so.1.x.y (it only looks at files named *.so). So
# each .deb is unpacked, completed and rebuilt with dpkg-deb.
finish_deb() { # finish_deb DEB [CONTROL-FILE...]
    local deb="$1" raw="$STAGE_DIR/deb/raw"
    shift
    rm -rf "$raw"
    dpkg-deb -R "$deb" "$raw"
    [ "$#" -eq 0 ] || install -m 644 "$@" "$raw/DEBIAN/"
    (cd "$raw" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
    chmod 644 "$raw/DEBIAN/md5sums"
    if [ "$(basename "$deb" | cut -d_ -f1)" = libhotbackup1 ]; then
        local libdeps
        mkdir -p "$ctl/debian"
        printf 'Source: tokudb-backup\n\nPackage: libhotbackup1\nArchitecture: any\n' >"$ctl/debian/control"
        libdeps="$(cd "$ctl" && dpkg-shlibdeps -O -e"$raw$DEB_LIBDIR/$SOFILE" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
        [ -n "$libdeps" ] || die "dpkg-shlibdeps found no dependencies for $SOFILE"
        sed -i "s/^Depends:.*/Depends: $libdeps/" "$raw/DEBIAN/control"
    fi
    dpkg-deb --root-owner-group -Zxz -b "$raw" "$deb" >/dev/null
    rm -rf "$raw"
}
finish_deb "$PKG_DIR"/libhotbackup1_*.deb "$ctl/shlibs" "$ctl/symbols"
finish_deb "$PKG_DIR"/libhotbackup-dev_*.deb
finish_deb "$PKG_DIR"/tokudb-backup-plugin_*.deb

# The RPMs and the tarball (below) stage the glibc $GLIBC_FLOOR tokubackup.
TOKUBACKUP="$TOKUBACKUP_FLOOR"

# ---- RPM: tokudb-backup-plugin (library + plugin + drop-ins), -devel (header)
LIBDIR="$RPM_LIBDIR" PLUGINDIR=/usr/lib64/mysql/plugin
SYSTEMD_DROPIN=/usr/lib/systemd/system/mariadb.service.d/10-tokudb-backup.conf
d="$STAGE_DIR/rpm/tokudb-backup-plugin"
install_so "$LIB_FLOOR" "$d$LIBDIR/$SOFILE"
install_so "$PLUGIN_FLOOR" "$d$PLUGINDIR/tokudb_backup.so"
subst packaging/mariadb/tokudb-backup.cnf.in "$d/etc/my.cnf.d/tokudb-backup.cnf"
subst packaging/systemd/tokudb-backup.conf.in "$d$SYSTEMD_DROPIN"
install -D -m 644 README.md "$d/usr/share/doc/tokudb-backup-plugin/README.md"
install -D -m 644 debian/copyright "$d/usr/share/licenses/tokudb-backup-plugin/COPYING"
stage_cli "$d" /usr/share/zsh/site-functions
subst rpm/post.sh.in "$STAGE_DIR/rpm/post.sh"
subst rpm/postun.sh.in "$STAGE_DIR/rpm/postun.sh"
subst rpm/devel-post.sh.in "$STAGE_DIR/rpm/devel-post.sh"
subst rpm/devel-postun.sh.in "$STAGE_DIR/rpm/devel-postun.sh"
d="$STAGE_DIR/rpm/tokudb-backup-plugin-devel"
install -D -m 644 include/backup.h "$d/usr/include/hotbackup/backup.h"
pkgconfig "$LIBDIR" "$d$LIBDIR/pkgconfig/hotbackup.pc"

cargo generate-rpm -p plugin --auto-req no -o "$PKG_DIR/"
# tokudb-backup-plugin-mysql57/-mysql80: the same files with that series'
# plugin and a drop-in for mysqld.service (Oracle's and Percona's unit).
for f in mysql57 mysql80; do
    v="$STAGE_DIR/rpm/tokudb-backup-plugin-$f"
    install_so "$LIB_FLOOR" "$v$LIBDIR/$SOFILE"
    install_so "$GLIBC_BUILD_DIR/tokudb_backup_$f.so" "$v$PLUGINDIR/tokudb_backup.so"
    mkdir -p "$v/etc" "$v/usr/share"
    cp -a "$STAGE_DIR/rpm/tokudb-backup-plugin/etc/." "$v/etc/"
    cp -a "$STAGE_DIR/rpm/tokudb-backup-plugin/usr/share/." "$v/usr/share/"
    SYSTEMD_DROPIN=/usr/lib/systemd/system/mysqld.service.d/10-tokudb-backup.conf
    subst packaging/systemd/tokudb-backup.conf.in "$v$SYSTEMD_DROPIN"
    sed -i -e 's/mariadbd-safe/mysqld_safe/g; s/mariadbd/mysqld/g; s/mariadb\.service/mysqld.service/g' \
        -e 's/systemctl edit mariadb/systemctl edit mysqld/g' "$v$SYSTEMD_DROPIN" "$v/etc/my.cnf.d/tokudb-backup.cnf"
    cargo generate-rpm -p plugin --auto-req no --variant "$f" -o "$PKG_DIR/"
done
cargo generate-rpm -p . --auto-req no -o "$PKG_DIR/"

# ---- Release tarball: a top directory with lib/, lib/mysql/plugin/, include/, README
name="tokudb-backup-plugin-$VERSION-x86_64-linux"
t="$STAGE_DIR/tarball/$name"
install_so "$LIB_FLOOR" "$t/lib/$SOFILE"
ln -s "$SOFILE" "$t/lib/libHotBackup.so.1"
ln -s libHotBackup.so.1 "$t/lib/libHotBackup.so"
install_so "$PLUGIN_FLOOR" "$t/lib/mysql/plugin/tokudb_backup.so"
ln -s tokudb_backup.so "$t/lib/mysql/plugin/tokubackup.so"
for f in mysql57 mysql80; do
    install_so "$GLIBC_BUILD_DIR/tokudb_backup_$f.so" "$t/lib/mysql/plugin/tokudb_backup_$f.so"
done
install -D -m 644 include/backup.h "$t/include/backup.h"
install -m 644 debian/copyright "$t/COPYING"
stage_cli "$t/stage" /share/zsh/site-functions
mv "$t/stage/usr/bin" "$t/bin"
mv "$t/stage/usr/share" "$t/share"
mv "$t/stage/share/zsh" "$t/share/zsh"
rm -r "$t/stage"
LIBDIR=/opt/$name/lib PLUGINDIR=/opt/$name/lib/mysql/plugin PREFIX=/opt/$name
subst packaging/tarball/README.in "$t/README"
# Every shared object and program the RPMs and the tarball ship loads on
# glibc $GLIBC_FLOOR.
mapfile -t floor_files < <(find "$STAGE_DIR/rpm" "$t" -type f \( -name '*.so*' -o -path '*/bin/tokubackup' \) | sort)
[ "${#floor_files[@]}" -ge 12 ] || die "expected 12 or more staged RPM/tarball ELF files, found ${#floor_files[@]}"
bash ci/check-glibc.sh "$GLIBC_FLOOR" "${floor_files[@]}"
tar --owner=0 --group=0 --numeric-owner --sort=name -C "$STAGE_DIR/tarball" -czf "$PKG_DIR/$name.tar.gz" "$name"

log "packages in $PKG_DIR:"
ls -l "$PKG_DIR" >&2
