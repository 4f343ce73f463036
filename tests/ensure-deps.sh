#!/bin/bash
# tests/ensure-deps.sh
#
# Makes sure the test servers (nbdkit, qemu-nbd, nbd-server), Debian's libnbd
# packages (1.14: the programs Debian ships, a second reference), man-db
# (make check-man reads the generated man pages with it) and the
# oracle, libnbd 1.22.2 in /opt/libnbd-1.22 (tests/oracle.sh ensure, which
# runs ../shared/tools/build-oracle.sh), are installed.  As root it installs
# what is missing; otherwise it prints the command to run and fails.

set -u

packages="nbdkit qemu-utils nbd-server libnbd-bin libnbd-dev python3-libnbd pkg-config valgrind libssl-dev gnutls-bin openssh-server openssh-client netcat-openbsd man-db groff-base"
install_cmd="apt-get update && apt-get install -y $packages"

missing=()
for prog in nbdkit qemu-nbd nbd-server nbdinfo pkg-config valgrind certtool ssh nc man lexgrog groff; do
    command -v "$prog" >/dev/null 2>&1 || missing+=("program $prog")
done
# sshd is in sbin, which a user's PATH may lack.
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || missing+=("program sshd")
# The oracle packages, checked by what they install.
[ -e /usr/include/libnbd.h ] || missing+=("libnbd-dev (/usr/include/libnbd.h)")
# The build links the system OpenSSL (the openssl crate).
[ -e /usr/include/openssl/ssl.h ] || missing+=("libssl-dev (/usr/include/openssl/ssl.h)")
[ -e /usr/lib/x86_64-linux-gnu/libnbd.so.0 ] || missing+=("libnbd0 (libnbd.so.0)")
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in libnbd-bin libnbd-dev python3-libnbd; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)
        [ "$status" = "install ok installed" ] || missing+=("package $pkg")
    done
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "ensure-deps: all test dependencies are installed"
    # The oracle last: its build needs some of the packages above.
    exec "$(dirname "$0")/oracle.sh" ensure
fi

echo "ensure-deps: missing: $(printf '%s, ' "${missing[@]}" | sed 's/, $//')"
if [ -n "${ENSURE_DEPS_RECHECK:-}" ]; then
    echo "ensure-deps: still missing after installing; giving up"
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-deps: run as root:"
    echo "  $install_cmd"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-deps: apt-get not found; install the equivalents of: $packages"
    exit 1
fi
echo "ensure-deps: $install_cmd"
export DEBIAN_FRONTEND=noninteractive
apt-get update && apt-get install -y $packages || exit 1
ENSURE_DEPS_RECHECK=1 exec "$0"
