#!/usr/bin/env bash
# Start (or stop) N throwaway OpenSSH hosts on 127.0.1.1 .. 127.0.1.N, port 22, for the deploy
# benchmark. Same addresses, key layout and known_hosts format as /work/shared/bench/fleet.sh,
# but each sshd runs in its own mount namespace with DIR/hosts/hI bind-mounted on /srv, so every
# host sees its own root as /srv (slipway needs one deploy_path for all hosts of an environment).
# DIR itself stays visible inside every namespace, so DIR/hosts/hI/... paths work too.
#   fleet.sh start DIR N
#   fleet.sh stop DIR
# Needs root, openssh-server and util-linux (unshare).
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?dir}
case $cmd in
start)
  n=${3:?count}
  dir=$(cd "$dir" 2>/dev/null && pwd || { mkdir -p "$dir" && cd "$dir" && pwd; })
  mkdir -p "$dir/hosts" /run/sshd /srv
  [[ -f $dir/host_key ]] || ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$dir/host_key"
  [[ -f $dir/client_key ]] || ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  : > "$dir/known_hosts"
  for i in $(seq 1 "$n"); do
    mkdir -p "$dir/hosts/h$i"
    cat > "$dir/sshd_$i.conf" <<CONF
Port 22
ListenAddress 127.0.1.$i
HostKey $dir/host_key
PidFile none
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
MaxSessions 64
MaxStartups 200
CONF
    # Diagnostic only (EMPTY_BASHRC=1): inside the host's namespace, root's ~/.bashrc reads as
    # empty, to measure what sourcing it costs every ssh command. Never used for the headline.
    extra=""
    if [[ ${EMPTY_BASHRC:-} == 1 && -f /root/.bashrc ]]; then extra="mount --bind /dev/null /root/.bashrc && "; fi
    # unshare (no --fork) execs sh, which execs sshd: $! is sshd's pid.
    unshare --mount --propagation private sh -c \
      "mount --bind '$dir/hosts/h$i' /srv && $extra exec /usr/sbin/sshd -D -f '$dir/sshd_$i.conf' -E '$dir/sshd_$i.log'" \
      </dev/null >/dev/null 2>>"$dir/sshd_$i.log" &
    echo $! > "$dir/sshd_$i.pid"
    echo "127.0.1.$i $(cut -d' ' -f1,2 "$dir/host_key.pub")" >> "$dir/known_hosts"
  done
  # Wait until every host accepts connections (5 s each at most).
  for i in $(seq 1 "$n"); do
    ok=
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.1.$i/22") 2>/dev/null; then ok=1; break; fi
      kill -0 "$(cat "$dir/sshd_$i.pid")" 2>/dev/null || break
      sleep 0.05
    done
    if [[ -z $ok ]]; then
      echo "fleet.sh: host $i (127.0.1.$i:22) did not start; see $dir/sshd_$i.log:" >&2
      cat "$dir/sshd_$i.log" >&2 || true
      exit 1
    fi
  done
  echo "started $n hosts (own /srv each); client key $dir/client_key; known_hosts $dir/known_hosts"
  ;;
stop)
  for p in "$dir"/sshd_*.pid; do
    [[ -f $p ]] || continue
    pid=$(cat "$p")
    kill "$pid" 2>/dev/null || true
    rm -f "$p"
  done
  ;;
*) echo "usage: fleet.sh start DIR N | stop DIR" >&2; exit 2 ;;
esac
