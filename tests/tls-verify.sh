#!/bin/bash
# tests/tls-verify.sh LIBDIR INCLUDEDIR [ORACLE_PREFIX]
#
# How TLS authenticates the server, case by case, on our library (LIBDIR,
# INCLUDEDIR) and on libnbd 1.22.2 (ORACLE_PREFIX, default
# that of tests/oracle.sh: /opt/libnbd-1.22, or $LIBNBD_ORACLE):
# the same client program (tests/tls/tls-client.c), built against each
# library's header, must get the same outcome from both: connected, or
# refused with the same errno and a dead handle. Our error message is
# checked as well, since it is ours.
#
# Every certificate is made here with certtool: a CA, server certificates
# that are good, for another host, expired, not yet valid, self-signed and
# revoked (with a CRL), a client certificate, a CA nobody trusts, and PSK
# files. The servers are real: nbdkit (Unix socket, TCP, subprocess, and
# one that demands a client certificate) and qemu-nbd.
#
# Prints "PASS case" or "FAIL case (why)" per case and "N passed, N failed";
# exits non-zero if anything failed. Without the oracle the cases run on
# our library alone, and the script says so with a SKIP line.

set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 LIBDIR INCLUDEDIR [ORACLE_PREFIX]" >&2
    exit 2
fi
libdir=$(cd "$1" && pwd) || exit 2
incdir=$(cd "$2" && pwd) || exit 2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/oracle.sh
. "$here/oracle.sh"
oracle=${3:-$ORACLE_PREFIX}

for prog in certtool nbdkit qemu-nbd cc; do
    command -v "$prog" >/dev/null || { echo "$0: $prog is required" >&2; exit 2; }
done
export LC_ALL=C
unset LIBNBD_DEBUG

work=$(mktemp -d "${TMPDIR:-/tmp}/rust-libnbd-tls-verify.XXXXXX")
pids=()
cleanup () {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 2

# --- the clients ---------------------------------------------------------
libs=(ours)
cc -std=gnu11 -Wall -Werror -o client-ours "$here/tls/tls-client.c" \
   -I "$incdir" -L "$libdir" -l:libnbd.so.0 || exit 2
if [ -e "$oracle/lib/libnbd.so.0" ] && [ -e "$oracle/include/libnbd.h" ]; then
    cc -std=gnu11 -Wall -Werror -o client-oracle "$here/tls/tls-client.c" \
       -I "$oracle/include" -L "$oracle/lib" -l:libnbd.so.0 || exit 2
    libs+=(oracle)
else
    echo "SKIP: no libnbd 1.22.2 in $oracle: the cases run on our library alone"
fi

# client LIB ARGS...: the client's one line of output (stderr goes to a log).
client () {
    local lib=$1; shift
    local dir=$libdir
    [ "$lib" = oracle ] && dir=$oracle/lib
    LD_LIBRARY_PATH=$dir timeout 60 "./client-$lib" "$@" 2>>"client-$lib.log" | tail -n 1
}

# --- the certificates ----------------------------------------------------
ct () { certtool "$@" >>certtool.log 2>&1 || { echo "certtool $* failed" >&2; cat certtool.log >&2; exit 2; }; }
key () { ct --generate-privkey --bits=2048 --outfile "$1"; }

mkdir -p ca
key ca/key.pem
printf 'cn = Test CA\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 2\n' >ca.info
ct --generate-self-signed --load-privkey ca/key.pem --template ca.info --outfile ca/cert.pem

# server NAME TEMPLATE-LINES: srv-NAME/ holds what nbdkit and qemu-nbd read.
server_certs () {
    local name=$1 lines=$2
    mkdir -p "srv-$name"
    cp ca/cert.pem "srv-$name/ca-cert.pem"
    key "srv-$name/server-key.pem"
    printf 'organization = Test\n%s\ntls_www_server\nsigning_key\nencryption_key\n' \
           "$lines" >"$name.info"
    ct --generate-certificate --load-ca-certificate ca/cert.pem --load-ca-privkey ca/key.pem \
       --load-privkey "srv-$name/server-key.pem" --template "$name.info" \
       --outfile "srv-$name/server-cert.pem"
}
local_names='cn = localhost
dns_name = localhost
ip_address = 127.0.0.1'
server_certs good "$local_names
expiration_days = 2"
server_certs other 'cn = other.example
dns_name = other.example
expiration_days = 2'
server_certs expired "$local_names
activation_date = \"2020-01-01 00:00:00\"
expiration_date = \"2020-02-01 00:00:00\""
server_certs future "$local_names
activation_date = \"2099-01-01 00:00:00\"
expiration_date = \"2099-02-01 00:00:00\""
server_certs revoked "$local_names
expiration_days = 2"
# Self-signed: its own issuer, not our CA.
mkdir -p srv-self
cp ca/cert.pem srv-self/ca-cert.pem
key srv-self/server-key.pem
printf '%s\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 2\n' \
       "$local_names" >self.info
ct --generate-self-signed --load-privkey srv-self/server-key.pem --template self.info \
   --outfile srv-self/server-cert.pem

# The client's directories: cli (CA and client certificate), cli-crl (the
# same and a CRL revoking srv-revoked), cli-noca (no ca-cert.pem: the
# system's CAs), cli-nocert (the CA only), otherca (a CA that signed
# nothing here).
mkdir -p cli cli-crl cli-noca cli-nocert otherca
cp ca/cert.pem cli/ca-cert.pem
key cli/client-key.pem
printf 'cn = client\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 2\n' >client.info
ct --generate-certificate --load-ca-certificate ca/cert.pem --load-ca-privkey ca/key.pem \
   --load-privkey cli/client-key.pem --template client.info --outfile cli/client-cert.pem
cp cli/* cli-crl/
printf 'crl_next_update = 2\ncrl_number = 1\n' >crl.info
ct --generate-crl --load-ca-privkey ca/key.pem --load-ca-certificate ca/cert.pem \
   --load-certificate srv-revoked/server-cert.pem --template crl.info \
   --outfile cli-crl/ca-crl.pem
cp cli/client-*.pem cli-noca/
cp ca/cert.pem cli-nocert/ca-cert.pem
key otherca/key.pem
ct --generate-self-signed --load-privkey otherca/key.pem --template ca.info \
   --outfile otherca/ca-cert.pem
rm otherca/key.pem

printf 'alice:8e1f6b1b0a9d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80910\n' >keys.psk
printf 'alice:00112233445566778899aabbccddeeff\n' >wrong.psk

# --- the servers -----------------------------------------------------------
# start NAME READY-TEST PROGRAM ARGS...: in the background, stopped by pid.
start () {
    local name=$1 ready=$2; shift 2
    "$@" >"$name.log" 2>&1 &
    pids+=($!)
    local i
    for i in $(seq 200); do
        eval "$ready" && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    echo "$0: server $name did not start:" >&2
    cat "$name.log" >&2
    exit 2
}
unix_ready () { echo "[ -S $work/$1 ]"; }
free_port () { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tcp_ready () { echo "(exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null"; }

for s in good other expired future revoked self; do
    start "nbdkit-$s" "$(unix_ready "$s.sock")" \
          nbdkit -f -U "$work/$s.sock" --tls=require --tls-certificates="$work/srv-$s" memory 1M
done
start nbdkit-clientcert "$(unix_ready clientcert.sock)" \
      nbdkit -f -U "$work/clientcert.sock" --tls=require --tls-verify-peer \
      --tls-certificates="$work/srv-good" memory 1M
start nbdkit-psk "$(unix_ready psk.sock)" \
      nbdkit -f -U "$work/psk.sock" --tls=require --tls-psk="$work/keys.psk" memory 1M
port_good=$(free_port)
start nbdkit-tcp-good "$(tcp_ready "$port_good")" \
      nbdkit -f -i 127.0.0.1 -p "$port_good" --tls=require \
      --tls-certificates="$work/srv-good" memory 1M
port_other=$(free_port)
start nbdkit-tcp-other "$(tcp_ready "$port_other")" \
      nbdkit -f -i 127.0.0.1 -p "$port_other" --tls=require \
      --tls-certificates="$work/srv-other" memory 1M
truncate -s 4M disk.img
# (qemu-nbd refuses to start with an expired certificate.)
for s in good other; do
    start "qemu-nbd-$s" "$(unix_ready "qemu-$s.sock")" \
          qemu-nbd --object "tls-creds-x509,id=tls0,dir=$work/srv-$s,endpoint=server,verify-peer=off" \
          --tls-creds tls0 -f raw -t -k "$work/qemu-$s.sock" disk.img
done
nbdkit_cmd () { echo command nbdkit -s --exit-with-parent --tls=require "--tls-certificates=$work/srv-$1" memory 1M; }
nbdkit_activation () { echo activation nbdkit --exit-with-parent --tls=require "--tls-certificates=$work/srv-$1" memory 1M; }

# --- the cases ---------------------------------------------------------------
passed=0
failed=0

# check NAME EXPECT ERRNO OURS-MESSAGE -- CLIENT-ARGS...
#   EXPECT: OK (connected over TLS, data written and read back) or ERR
#   (refused, handle dead); ERRNO: the errno of a refusal, or - to leave
#   it unchecked; OURS-MESSAGE: what our message must contain, or -.
check () {
    local name=$1 expect=$2 errno=$3 msg=$4; shift 5
    local lib out why=
    for lib in "${libs[@]}"; do
        out=$(client "$lib" "$@")
        case "$expect" in
            OK) [ "$out" = "OK tls=1" ] || why="$why; $lib: $out" ;;
            ERR)
                case "$out" in
                    "ERR errno="*" dead=1: "*) ;;
                    *) why="$why; $lib: expected a refusal and a dead handle: $out"; continue ;;
                esac
                if [ "$errno" != - ] && [ "${out#ERR errno=$errno }" = "$out" ]; then
                    why="$why; $lib: expected errno $errno: $out"
                fi
                if [ "$lib" = ours ] && [ "$msg" != - ] && [ "${out#*"$msg"}" = "$out" ]; then
                    why="$why; ours: expected \"$msg\": $out"
                fi
                ;;
        esac
    done
    if [ -z "$why" ]; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name (${why#; })"
        failed=$((failed + 1))
    fi
}

verify_failed="TLS handshake: certificate verify failed"
unix () { echo unix "$work/$1.sock"; }

# The chain is verified on every transport, with or without a host name.
check unix-good OK - - -- --certs=cli $(unix good)
check unix-untrusted-ca ERR 0 "$verify_failed: unable to get local issuer certificate" -- \
      --certs=otherca $(unix good)
check unix-system-cas ERR 0 "$verify_failed: unable to get local issuer certificate" -- \
      --certs=cli-noca $(unix good)
check unix-expired ERR 0 "$verify_failed: certificate has expired" -- --certs=cli $(unix expired)
check unix-not-yet-valid ERR 0 "$verify_failed: certificate is not yet valid" -- \
      --certs=cli $(unix future)
check unix-self-signed ERR 0 "$verify_failed: self" -- --certs=cli $(unix self)
check unix-revoked-crl ERR 0 "$verify_failed: certificate revoked" -- --certs=cli-crl $(unix revoked)
check unix-revoked-no-crl OK - - -- --certs=cli $(unix revoked)
check unix-good-with-crl OK - - -- --certs=cli-crl $(unix good)
# No host name over a Unix socket: the name alone is not checked ...
check unix-other-host OK - - -- --certs=cli $(unix other)
# ... unless one is set.
check unix-other-host-named ERR 0 "$verify_failed: hostname mismatch" -- \
      --certs=cli --hostname=localhost $(unix other)
check unix-good-named OK - - -- --certs=cli --hostname=localhost $(unix good)
# Checks off: encrypted, not authenticated.
check unix-untrusted-no-verify OK - - -- --certs=otherca --no-verify $(unix good)
check unix-expired-no-verify OK - - -- --certs=cli --no-verify $(unix expired)
# "allow" never falls back to plaintext over a certificate that fails.
check unix-allow-untrusted ERR 0 "$verify_failed" -- --tls=allow --certs=otherca $(unix good)
check unix-allow-expired ERR 0 "$verify_failed" -- --tls=allow --certs=cli $(unix expired)
# A server that demands a client certificate gets the directory's.
check client-cert OK - - -- --certs=cli $(unix clientcert)
check client-cert-missing ERR - - -- --certs=cli-nocert $(unix clientcert)

# TCP: the host connected to is the name checked, by name or address.
check tcp-name OK - - -- --certs=cli tcp localhost "$port_good"
check tcp-address OK - - -- --certs=cli tcp 127.0.0.1 "$port_good"
check tcp-name-mismatch ERR 0 "$verify_failed: hostname mismatch" -- \
      --certs=cli tcp localhost "$port_other"
check tcp-address-mismatch ERR 0 "$verify_failed: IP address mismatch" -- \
      --certs=cli tcp 127.0.0.1 "$port_other"
check tcp-tls-hostname OK - - -- --certs=cli --hostname=other.example tcp localhost "$port_other"
check tcp-tls-hostname-mismatch ERR 0 "$verify_failed: hostname mismatch" -- \
      --certs=cli --hostname=other.example tcp localhost "$port_good"
check tcp-untrusted-ca ERR 0 "$verify_failed: unable to get local issuer certificate" -- \
      --certs=otherca tcp localhost "$port_good"
check tcp-mismatch-no-verify OK - - -- --certs=cli --no-verify tcp localhost "$port_other"

# A subprocess: no host name, the chain is verified.
# shellcheck disable=SC2046
check command-good OK - - -- --certs=cli $(nbdkit_cmd good)
# shellcheck disable=SC2046
check command-untrusted-ca ERR 0 "$verify_failed: unable to get local issuer certificate" -- \
      --certs=otherca $(nbdkit_cmd good)
# shellcheck disable=SC2046
check command-expired ERR 0 "$verify_failed: certificate has expired" -- \
      --certs=cli $(nbdkit_cmd expired)

# Socket activation: likewise.
# shellcheck disable=SC2046
check activation-good OK - - -- --certs=cli $(nbdkit_activation good)
# shellcheck disable=SC2046
check activation-untrusted-ca ERR 0 "$verify_failed: unable to get local issuer certificate" -- \
      --certs=otherca $(nbdkit_activation good)

# URIs: the same checks, and the query parameters that change them.
check uri-unix-good OK - - -- uri "nbds+unix:///?socket=$work/good.sock&tls-certificates=$work/cli"
check uri-unix-untrusted ERR 0 "$verify_failed" -- \
      uri "nbds+unix:///?socket=$work/good.sock&tls-certificates=$work/otherca"
check uri-unix-no-verify OK - - -- \
      uri "nbds+unix:///?socket=$work/good.sock&tls-certificates=$work/otherca&tls-verify-peer=false"
check uri-tcp-mismatch ERR 0 "$verify_failed: hostname mismatch" -- \
      uri "nbds://localhost:$port_other/?tls-certificates=$work/cli"
check uri-tcp-tls-hostname OK - - -- \
      uri "nbds://localhost:$port_other/?tls-certificates=$work/cli&tls-hostname=other.example"

# qemu-nbd.
check qemu-good OK - - -- --certs=cli $(unix qemu-good)
check qemu-untrusted ERR 0 "$verify_failed" -- --certs=otherca $(unix qemu-good)
check qemu-other-host OK - - -- --certs=cli $(unix qemu-other)
check qemu-other-host-named ERR 0 "$verify_failed: hostname mismatch" -- \
      --certs=cli --hostname=localhost $(unix qemu-other)

# PSK: the key is the only credential, and the server must hold it.
check psk-good OK - - -- --psk="$work/keys.psk" --user=alice $(unix psk)
check psk-wrong-key ERR 0 "TLS handshake: " -- --psk="$work/wrong.psk" --user=alice $(unix psk)
check psk-unknown-user ERR 22 "username bob was not found in PSK file" -- \
      --psk="$work/keys.psk" --user=bob $(unix psk)
check psk-missing-file ERR 2 "open: " -- --psk="$work/none.psk" --user=alice $(unix psk)
# A server with a certificate instead of the key is not accepted.
check psk-certificate-server ERR 0 "TLS handshake: " -- \
      --psk="$work/keys.psk" --user=alice --certs=cli $(unix good)

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
