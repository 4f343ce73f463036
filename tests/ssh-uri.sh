#!/bin/bash
# tests/ssh-uri.sh LIBDIR INCLUDEDIR [ORACLE_PREFIX]
#
# nbd+ssh:// and nbds+ssh:// URIs against a real OpenSSH server, on our
# library (LIBDIR, INCLUDEDIR) and on libnbd 1.22.2 (ORACLE_PREFIX, default
# that of tests/oracle.sh), with one client program (tests/ssh/ssh-client.c)
# built against each library's header.
#
# The test starts its own sshd on 127.0.0.1 and a free port, with its own
# host key, configuration and authorized key in a temporary directory
# (never the system service). The libraries run plain `ssh`, so an `ssh`
# first in PATH adds `-F` with our client configuration (key, known
# hosts) and logs its arguments, which must be the same for both
# libraries. Behind sshd: nbdkit on a Unix socket, on TCP port 10809 (the
# port the ssh transport always uses remotely; that case is skipped when
# the port is taken), and with TLS-PSK.
#
# Prints "PASS case" / "FAIL case (why)" and "N passed, N failed".

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

for prog in sshd ssh ssh-keygen nc nbdkit cc python3; do
    p=$(command -v "$prog" || ls "/usr/sbin/$prog" 2>/dev/null) ||
        { echo "$0: $prog is required (make check installs it)" >&2; exit 2; }
done
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
real_ssh=$(command -v ssh)
export LC_ALL=C
unset LIBNBD_DEBUG

# sshd insists on its privilege separation directory.
if [ ! -d /run/sshd ]; then
    if [ "$(id -u)" -eq 0 ]; then
        mkdir -p /run/sshd && chmod 755 /run/sshd
    else
        echo "SKIP: /run/sshd is missing and only root can make it"
        exit 0
    fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rust-libnbd-ssh.XXXXXX")
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
chmod 700 "$work"

# --- the clients ---------------------------------------------------------
libs=(ours)
cc -std=gnu11 -Wall -Werror -o client-ours "$here/ssh/ssh-client.c" \
   -I "$incdir" -L "$libdir" -l:libnbd.so.0 || exit 2
if [ -e "$oracle/lib/libnbd.so.0" ] && [ -e "$oracle/include/libnbd.h" ]; then
    cc -std=gnu11 -Wall -Werror -o client-oracle "$here/ssh/ssh-client.c" \
       -I "$oracle/include" -L "$oracle/lib" -l:libnbd.so.0 || exit 2
    libs+=(oracle)
else
    echo "SKIP: no libnbd 1.22.2 in $oracle: the cases run on our library alone"
fi

# --- sshd and the ssh the libraries run -----------------------------------
free_port () { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ssh-keygen -q -t ed25519 -N '' -f host_key || exit 2
ssh-keygen -q -t ed25519 -N '' -f user_key || exit 2
cp user_key.pub authorized_keys
port=$(free_port)
cat >sshd_config <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
EOF
echo "[127.0.0.1]:$port $(cat host_key.pub)" >known_hosts
cat >ssh_config <<EOF
Host *
  IdentityFile $work/user_key
  IdentitiesOnly yes
  UserKnownHostsFile $work/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
  LogLevel ERROR
EOF
mkdir bin
cat >bin/ssh <<EOF
#!/bin/sh
echo "ssh \$*" >>"$work/ssh-args.log"
exec "$real_ssh" -F "$work/ssh_config" "\$@"
EOF
chmod +x bin/ssh

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
    echo "$0: $name did not start:" >&2
    cat "$name.log" >&2
    exit 2
}
tcp_ready () { echo "(exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null"; }

start sshd "$(tcp_ready "$port")" "$sshd_bin" -D -e -f "$work/sshd_config"
if ! PATH=$work/bin:$PATH ssh -p "$port" 127.0.0.1 true 2>ssh-probe.log; then
    echo "$0: cannot log in to our sshd:" >&2
    cat ssh-probe.log sshd.log >&2
    exit 2
fi
start nbdkit-unix "[ -S $work/nbd.sock ]" nbdkit -f -U "$work/nbd.sock" memory 1M
printf 'alice:8e1f6b1b0a9d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80910\n' >keys.psk
start nbdkit-psk "[ -S $work/psk.sock ]" \
      nbdkit -f -U "$work/psk.sock" --tls=require --tls-psk="$work/keys.psk" memory 3M
have_tcp=
if ! (exec 3<>/dev/tcp/127.0.0.1/10809) 2>/dev/null; then
    start nbdkit-tcp "$(tcp_ready 10809)" nbdkit -f -i 127.0.0.1 -p 10809 memory 2M
    have_tcp=y
fi

# --- the cases ---------------------------------------------------------------
passed=0
failed=0
pass () { echo "PASS $1"; passed=$((passed + 1)); }
fail () { echo "FAIL $1 ($2)"; failed=$((failed + 1)); }

# run LIB [ARGS...]: the client's output, ssh's arguments in LIB.args.
run () {
    local lib=$1; shift
    local dir=$libdir limit=60
    # libnbd 1.22.2 waits in nbd_close until ssh exits, which after a
    # failed TLS setup is when the server gives up on the handshake (about
    # 40 s): its answer is printed by then, so it is cut short.
    [ "$lib" = oracle ] && dir=$oracle/lib limit=8
    : >ssh-args.log
    PATH=$work/bin:$PATH LD_LIBRARY_PATH=$dir timeout "$limit" "./client-$lib" "$@" 2>>"client-$lib.log"
    cp ssh-args.log "$lib.args"
}

# check NAME EXPECT OURS-PATTERN -- CLIENT-ARGS...
#   EXPECT: a glob the last line of each library's output must match;
#   OURS-PATTERN: one our last line must match too (- for none). ssh must
#   have been run with the same arguments by both libraries.
check () {
    local name=$1 expect=$2 ours=$3; shift 4
    local lib out why=
    for lib in "${libs[@]}"; do
        out=$(run "$lib" "$@" | tail -n 1)
        # shellcheck disable=SC2053
        [[ $out == $expect ]] || why="$why; $lib: $out"
        # shellcheck disable=SC2053
        if [ "$lib" = ours ] && [ "$ours" != - ] && [[ $out != $ours ]]; then
            why="$why; ours: expected $ours: $out"
        fi
    done
    if [ ${#libs[@]} -eq 2 ] && ! cmp -s ours.args oracle.args; then
        why="$why; ssh ran as: ours: $(cat ours.args), libnbd: $(cat oracle.args)"
    fi
    if [ -z "$why" ]; then pass "$name"; else fail "$name" "${why#; }"; fi
}

authority="127.0.0.1:$port"
# A URI a library cannot write back: libnbd 1.22.2 fails (EINVAL); we
# write the ssh URI (a README difference), so "uri=" is checked for ours.
check unix-socket "OK size=1048576 export=exp tls=0 pid=1 uri=*" \
      "*uri=nbd+ssh://$authority/exp?socket=$work/nbd.sock" -- \
      "nbd+ssh://$authority/exp?socket=$work/nbd.sock"
if [ -n "$have_tcp" ]; then
    check tcp-port "OK size=2097152 export= tls=0 pid=1 uri=*" \
          "*uri=nbd+ssh://$authority/" -- "nbd+ssh://$authority/"
else
    echo "SKIP tcp-port (port 10809 is taken on this machine)"
fi
check scheme-case "OK size=1048576 *" - -- "NBD+SSH://$authority/?socket=$work/nbd.sock"
# The user name is the TLS (PSK) user, not ssh's.
check tls-psk "OK size=3145728 export= tls=1 pid=1 uri=*" \
      "*uri=nbds+ssh://alice@$authority/?socket=$work/psk.sock&tls-psk-file=$work/keys.psk" -- \
      "nbds+ssh://alice@$authority/?socket=$work/psk.sock&tls-psk-file=$work/keys.psk"
check tls-psk-wrong-user "ERR errno=22 dead=1: *" "*username bob was not found in PSK file*" -- \
      "nbds+ssh://bob@$authority/?socket=$work/psk.sock&tls-psk-file=$work/keys.psk"
check tls-required-plain-server "ERR errno=95 dead=1: *" \
      "*server refused TLS, but handle TLS setting is 'require' (2)*" -- \
      "nbds+ssh://$authority/?socket=$work/nbd.sock"
check allow-all-transports "OK size=1048576 *" - -- \
      --allow=0x0f "nbd+ssh://$authority/?socket=$work/nbd.sock"
check forbid-ssh "ERR errno=1 dead=0: *URI transport nbd+ssh is not permitted*" - -- \
      --allow=0x07 "nbd+ssh://$authority/?socket=$work/nbd.sock"
check no-server-name "ERR errno=22 dead=0: *SSH transport requires a server name*" - -- \
      "nbd+ssh:///?socket=$work/nbd.sock"
closed_port=$(free_port)
check unreachable-host "ERR errno=0 dead=1: *" \
      "*server disconnected unexpectedly: ssh exited with status 255: ssh: connect to host 127.0.0.1 port $closed_port: Connection refused" -- \
      "nbd+ssh://127.0.0.1:$closed_port/?socket=$work/nbd.sock"
check missing-remote-socket "ERR errno=0 dead=1: *" \
      "*server disconnected unexpectedly: ssh exited with status 1: nc: $work/missing.sock: No such file or directory" -- \
      "nbd+ssh://$authority/?socket=$work/missing.sock"
# An unknown host key: ssh refuses, and says so.
mv known_hosts known_hosts.good
: >known_hosts
check unknown-host-key "ERR errno=0 dead=1: *" "*Host key verification failed.*" -- \
      "nbd+ssh://$authority/?socket=$work/nbd.sock"
mv known_hosts.good known_hosts
# No ssh at all.
mv bin/ssh bin/ssh.off
for lib in "${libs[@]}"; do
    dir=$libdir
    [ "$lib" = oracle ] && dir=$oracle/lib
    out=$(PATH=$work/bin LD_LIBRARY_PATH=$dir "./client-$lib" \
          "nbd+ssh://$authority/?socket=$work/nbd.sock" 2>/dev/null | tail -n 1)
    case "$lib:$out" in
        ours:"ERR errno=0 dead=1: "*"server disconnected unexpectedly: ssh exited with status 127: ssh: No such file or directory") ;;
        oracle:"ERR errno=0 dead=1: "*) ;;
        *) no_ssh_why="${no_ssh_why:-}; $lib: $out" ;;
    esac
done
mv bin/ssh.off bin/ssh
if [ -z "${no_ssh_why:-}" ]; then pass ssh-missing; else fail ssh-missing "${no_ssh_why#; }"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
