#!/usr/bin/env bash
# Install everything ci/test.sh needs on a fresh Debian 12 machine (CI runs
# as root): Debian packages, cargo-deb and cargo-generate-rpm, and check the
# Rust toolchain. Quick when all is there already.
set -euo pipefail
# shellcheck source=ci/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

# MariaDB server/client/backup and a C compiler, without starting the
# system service (ci/install-deps.sh, shared with ci/demo.sh).
bash ci/install-deps.sh
# Packaging and checks: dpkg-dev (dpkg-architecture, dpkg-shlibdeps),
# lintian, rpm (rpm -qp, rpm2cpio), cpio; valgrind; shellcheck; jemalloc
# (a user's malloc-lib next to ours); pkg-config (the -dev package test).
apt_install dpkg-dev lintian rpm cpio binutils valgrind shellcheck libjemalloc2 pkg-config gcc libc6-dev liburing-dev

command -v cargo >/dev/null || die "cargo is not installed (the machine image provides rustup's stable toolchain)"
for c in rustfmt clippy; do
    grep -q "^$c" <<<"$(rustup component list --installed 2>/dev/null)" || rustup component add "$c"
done
# Packaging tools from crates.io; --locked builds them with their own lock file.
cargo_tool_install cargo-deb cargo-deb
cargo_tool_install cargo-generate-rpm cargo-generate-rpm
# Garage, the S3-compatible store tokubackup-repo's tests run a cluster of
# (repo/tests/common/garage.rs): pinned, LMDB metadata only (no SQLite, K2V
# or metrics: a shorter build).
GARAGE_VERSION=2.5.0
# `garage --version` prints "garage cargo:2.5.0 [features: ...]".
if ! grep -q "cargo:$GARAGE_VERSION " <<<"$(garage --version 2>/dev/null)"; then
    log "cargo install garage $GARAGE_VERSION"
    cargo install garage --version "$GARAGE_VERSION" --locked --quiet --no-default-features --features bundled-libs,lmdb
fi
# cargo zigbuild + zig from PyPI: the glibc 2.17 build of the RPMs and tarball.
zigbuild_install
if ! grep -q '^nightly' <<<"$(rustup toolchain list)"; then
    log "NOTE: no nightly toolchain; ci/asan.sh will use stable with RUSTC_BOOTSTRAP=1"
fi
log "tools: $(cargo --version); $(garage --version); $(cargo deb --version); $(cargo generate-rpm --version); zig $(python3 -m ziglang version); $(lintian --version); $(rpm --version); $(valgrind --version)"
