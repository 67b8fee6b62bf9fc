#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need:
# MariaDB server/client/backup (throwaway test servers, the mariabackup
# comparison) and a C compiler. `--bench` adds sysbench. Idempotent, and
# quick when everything is already installed. Run as root (CI and the
# development machines are).
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pkgs=(mariadb-server mariadb-client mariadb-backup libmariadbd-dev libmariadb-dev gcc libc6-dev procps)
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(sysbench)
fi

missing=0
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing=1
done
[ "$missing" -eq 0 ] && exit 0

# The tests start their own servers: keep the package from starting the
# system service while it installs (policy-rc.d 101 = "not allowed").
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
trap '[ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt_install "${pkgs[@]}"
