#!/bin/sh
# deps.sh - installs (apt-get, Debian 12) whatever the
# build and tests need and is missing, plus $MHA_EXTRA_PKGS. Sourced by tests/run.sh, bench/run.sh
# and .ci/run; does nothing when everything is present.
need="cmake gcc g++ make pkg-config libopenblas-dev libcmocka-dev libcjson-dev binutils abigail-tools ${MHA_EXTRA_PKGS:-}"
missing=""
for p in $need; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing > /dev/null
fi
