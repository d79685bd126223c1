#!/usr/bin/env bash
# Deploy fan-out benchmark (issue #3): slipway against the floor (one ssh per host, by hand) and
# against Ansible, doing the same deploy of the same ~600 KB app to N local sshd hosts.
#
#   bench/deploy/run.sh [HOSTS...]        default: 10 30
#
# Environment:
#   R=5               timed runs per tool and host count (after one untimed warm-up each)
#   R_ANSIBLE         timed Ansible runs (default: R below 30 hosts, 3 from 30 hosts on)
#   SKIP_ANSIBLE=1    leave Ansible out
#   ROLLBACK_HOSTS=10 host count at which `slipway rollback` is timed (R times)
#   SKIP_BUILD=1      use the existing /var/tmp/slipway-bench-target/release/slipway as is
#   PEER=/work/shared/bench/peer   the peer scripts (raw.sh, deploy.yml, ansible.cfg, inventory.sh)
#   ANSIBLE_VENV=/var/tmp/slipway-bench-ansible   where ansible-core is pip-installed (reused)
#   KEEP=1            keep the work directories (default: removed at the end)
#   EMPTY_BASHRC=1    diagnostic: hosts see an empty /root/.bashrc (see fleet.sh); not the headline
#
# Every host count gets a fresh fleet (bench/deploy/fleet.sh: sshd per host in its own mount
# namespace, its root DIR/hosts/hI seen as /srv). Timings are wall clock (date +%s.%N) of the
# whole command. Results: the summary on stdout; raw samples and job logs in the work directory.
# Run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
hosts_list=("$@")
[[ ${#hosts_list[@]} -gt 0 ]] || hosts_list=(10 30)
R=${R:-5}
ROLLBACK_HOSTS=${ROLLBACK_HOSTS:-10}
PEER=${PEER:-/work/shared/bench/peer}
ANSIBLE_VENV=${ANSIBLE_VENV:-/var/tmp/slipway-bench-ansible}
target_dir=/var/tmp/slipway-bench-target
bin=$target_dir/release/slipway
PY=/usr/bin/python3

[[ $(id -u) -eq 0 ]] || { echo "run.sh: run as root (sshd on port 22, mount namespaces)" >&2; exit 1; }
for tool in /usr/sbin/sshd ssh ssh-keygen git unshare tar "$PY"; do
  command -v "$tool" >/dev/null || { echo "run.sh: missing $tool" >&2; exit 1; }
done

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
log() { printf '%s\n' "$*" >&2; }

# --- the binary -------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-} != 1 ]]; then
  log "building slipway (release) into $target_dir"
  (cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release -q)
fi
[[ -x $bin ]] || { echo "run.sh: no binary at $bin" >&2; exit 1; }

# --- peers --------------------------------------------------------------------------------------
have_raw=0; have_ansible=0
if [[ -x $PEER/raw.sh ]]; then have_raw=1; else log "NOTE: $PEER/raw.sh not found: raw skipped"; fi
if [[ ${SKIP_ANSIBLE:-} == 1 ]]; then
  log "NOTE: SKIP_ANSIBLE=1: Ansible skipped"
elif [[ ! -f $PEER/deploy.yml || ! -f $PEER/ansible.cfg || ! -x $PEER/inventory.sh ]]; then
  log "NOTE: Ansible peer files not found in $PEER: Ansible skipped"
else
  if [[ ! -x $ANSIBLE_VENV/bin/ansible-playbook ]]; then
    log "installing ansible-core into $ANSIBLE_VENV"
    "$PY" -m venv "$ANSIBLE_VENV"
    "$ANSIBLE_VENV/bin/pip" install -q --disable-pip-version-check ansible-core
  fi
  have_ansible=1
fi

# --- work directory, cleanup -----------------------------------------------------------------------
work=$(mktemp -d /var/tmp/slipway-bench.XXXXXX)
fleet=""
cleanup() {
  [[ -n $fleet ]] && "$here/fleet.sh" stop "$fleet" || true
  if [[ ${KEEP:-} == 1 ]]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
samples=$work/samples.tsv
: > "$samples"
log "work directory: $work"

# --- the workload, built once: a git repo (bare mirror source) and the same tree as .tar.gz -------
src=$work/workload/src
mkdir -p "$src"
"$PY" "$here/workload.py" "$src"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid GIT_COMMITTER_NAME=bench \
  GIT_COMMITTER_EMAIL=bench@example.invalid GIT_AUTHOR_DATE=2026-11-22T00:00:00Z \
  GIT_COMMITTER_DATE=2026-11-22T00:00:00Z
git -C "$src" init -q -b main
git -C "$src" add -A
git -C "$src" commit -q -m "benchmark workload"
git clone -q --bare "$src" "$work/workload/app.git"
tarball=$work/workload/app.tar.gz
git -C "$work/workload/app.git" archive --format=tar.gz -o "$tarball" main
log "workload: commit $(git -C "$work/workload/app.git" rev-parse --short main)," \
  "$(git -C "$work/workload/app.git" ls-tree -r main | wc -l) files, tarball $(stat -c %s "$tarball") bytes"

# --- one host count --------------------------------------------------------------------------------
# Release ids for the peers: new for every run (nanoseconds; runs are called in subshells).
new_rel() { date +bench-%Y%m%d%H%M%S%N; }

sample() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$samples"; }

bench_hosts() {
  local n=$1 dir=$work/n$n
  mkdir -p "$dir/logs"
  fleet=$dir/fleet
  "$here/fleet.sh" start "$fleet" "$n" >&2

  # slipway config: everything inside $dir, one app, one environment with all N hosts.
  local hosts="" i
  for i in $(seq 1 "$n"); do hosts+="${hosts:+, }\"root@127.0.1.$i:22\""; done
  cat > "$dir/slipway.toml" <<TOML
# Generated by bench/deploy/run.sh ($n hosts).
[server]
listen = "127.0.0.1:0"
[database]
url = "sqlite://slipway.db"
[github]
webhook_secret = "bench-only-secret"
[worker]
data_dir = "data"
[apps.bench]
repo = "bench/app"
clone_url = "$work/workload/app.git"
[apps.bench.environments.prod]
hosts = [$hosts]
deploy_path = "/srv/app"
keep_releases = 5
steps = ["/usr/bin/python3 app.py"]
ssh = { key = "$fleet/client_key", known_hosts = "$fleet/known_hosts" }
TOML
  (cd "$dir" && "$bin" check-config --config slipway.toml) >&2

  local ra=$R
  if [[ -n ${R_ANSIBLE:-} ]]; then ra=$R_ANSIBLE; elif (( n >= 30 )); then ra=3; fi
  [[ $have_ansible == 1 ]] && "$PEER/inventory.sh" "$fleet" "$n" > "$dir/inventory.ini"

  run_slipway() { # $1 = label; prints seconds
    local t0 out=$dir/logs/slipway-$1.txt
    t0=$(now)
    if ! (cd "$dir" && "$bin" deploy bench prod --ref main --config slipway.toml) > "$out" 2>"$out.err"; then
      log "slipway deploy failed ($n hosts, $1):"; tail -n 40 "$out" "$out.err" >&2; return 1
    fi
    since "$t0"
  }
  run_raw() {
    local t0
    t0=$(now)
    "$PEER/raw.sh" "$fleet" "$n" "$tarball" "$(new_rel)" > "$dir/logs/raw-$1.txt" 2>&1 \
      || { log "raw.sh failed:"; cat "$dir/logs/raw-$1.txt" >&2; return 1; }
    since "$t0"
  }
  run_ansible() {
    local t0
    t0=$(now)
    (cd "$dir" && LC_ALL=C.UTF-8 ANSIBLE_CONFIG=$PEER/ansible.cfg REL=$(new_rel) TARBALL=$tarball \
      "$ANSIBLE_VENV/bin/ansible-playbook" -i inventory.ini "$PEER/deploy.yml") > "$dir/logs/ansible-$1.txt" 2>&1 \
      || { log "ansible-playbook failed:"; tail -n 40 "$dir/logs/ansible-$1.txt" >&2; return 1; }
    since "$t0"
  }

  log "== $n hosts: warm-up"
  [[ $have_raw == 1 ]] && run_raw warmup >/dev/null
  run_slipway warmup >/dev/null
  [[ $have_ansible == 1 ]] && run_ansible warmup >/dev/null

  # Interleaved, so drift on the machine hits every tool alike.
  local k s
  for k in $(seq 1 "$R"); do
    if [[ $have_raw == 1 ]]; then s=$(run_raw "$k"); sample "$n" raw "$k" "$s"; log "  $n hosts run $k: raw $s s"; fi
    s=$(run_slipway "$k"); sample "$n" slipway "$k" "$s"; log "  $n hosts run $k: slipway $s s"
    if [[ $have_ansible == 1 ]] && (( k <= ra )); then
      s=$(run_ansible "$k"); sample "$n" ansible "$k" "$s"; log "  $n hosts run $k: ansible $s s"
    fi
  done

  if [[ $n == "$ROLLBACK_HOSTS" ]]; then
    # Each rollback follows two untimed deploys, so its target (the release live before the
    # current one) is the second newest release on every host and cannot have been pruned.
    log "== $n hosts: rollback (each after two untimed deploys)"
    for k in $(seq 1 "$R"); do
      run_slipway "pre-rollback-$k-a" >/dev/null
      run_slipway "pre-rollback-$k-b" >/dev/null
      local t0 out=$dir/logs/rollback-$k.txt
      t0=$(now)
      (cd "$dir" && "$bin" rollback bench prod --config slipway.toml) > "$out" 2>"$out.err" \
        || { log "slipway rollback failed:"; tail -n 40 "$out" "$out.err" >&2; return 1; }
      s=$(since "$t0"); sample "$n" "slipway-rollback" "$k" "$s"; log "  $n hosts rollback $k: $s s"
    done
  fi

  # Sanity: every host has its release under /srv/app (= DIR/hosts/hI/app) and at most 5 kept.
  for i in $(seq 1 "$n"); do
    local root=$fleet/hosts/h$i/app
    [[ -L $root/current && -f $root/current/app.py ]] || { log "host $i: no current release in $root"; return 1; }
    local kept; kept=$(ls -1 "$root/releases" | wc -l)
    (( kept <= 5 )) || { log "host $i: $kept releases kept (keep_releases = 5)"; return 1; }
  done

  # Where slipway's time goes: per-step durations of the timed deploys (and rollbacks).
  {
    echo "slipway per-step durations, $n hosts (timed deploys):"
    "$PY" "$here/summarize.py" steps $(for k in $(seq 1 "$R"); do echo "$dir/logs/slipway-$k.txt"; done)
    "$PY" "$here/summarize.py" timeline "$dir/slipway.db" $(for k in $(seq 1 "$R"); do echo "$dir/logs/slipway-$k.txt"; done)
    if [[ $n == "$ROLLBACK_HOSTS" ]]; then
      echo "slipway per-step durations, $n hosts (rollbacks):"
      "$PY" "$here/summarize.py" steps "$dir"/logs/rollback-*.txt
      "$PY" "$here/summarize.py" timeline "$dir/slipway.db" "$dir"/logs/rollback-*.txt
    fi
  } > "$dir/steps.txt"

  # What one SSH channel costs on these hosts (every slipway step is one channel).
  local o=(-i "$fleet/client_key" -o UserKnownHostsFile="$fleet/known_hosts" -o StrictHostKeyChecking=yes
           -o LogLevel=ERROR -o ControlPath="$dir/cm" -o ControlMaster=auto -o ControlPersist=30)
  ssh "${o[@]}" root@127.0.1.1 true
  local t0 c=()
  for k in 1 2 3 4 5; do t0=$(now); ssh "${o[@]}" root@127.0.1.1 'exec sh -c true'; c+=("$(since "$t0")"); done
  ssh "${o[@]}" -O exit root@127.0.1.1 2>/dev/null || true
  echo "one channel on a warm master ('exec sh -c true'), 5 tries: ${c[*]} s" >> "$dir/steps.txt"
  # One round of N channels at once, one per host on warm masters: what each of slipway's
  # all-host phases (ship, build step, read current, switch) costs at the least.
  local p=(-i "$fleet/client_key" -o UserKnownHostsFile="$fleet/known_hosts" -o StrictHostKeyChecking=yes
           -o LogLevel=ERROR -o ControlPath="$dir/cm-%h" -o ControlMaster=auto -o ControlPersist=30)
  for i in $(seq 1 "$n"); do ssh "${p[@]}" "root@127.0.1.$i" true & done; wait
  c=()
  for k in 1 2 3; do
    t0=$(now)
    for i in $(seq 1 "$n"); do ssh "${p[@]}" "root@127.0.1.$i" 'exec sh -c true' & done; wait
    c+=("$(since "$t0")")
  done
  for i in $(seq 1 "$n"); do ssh "${p[@]}" -O exit "root@127.0.1.$i" 2>/dev/null || true; done
  echo "one round of $n parallel channels (one per host, warm masters), 3 tries: ${c[*]} s" >> "$dir/steps.txt"

  "$here/fleet.sh" stop "$fleet"
  fleet=""
}

for n in "${hosts_list[@]}"; do bench_hosts "$n"; done

# --- summary -----------------------------------------------------------------------------------------
echo "# Deploy fan-out: $(nproc) cores, $(uname -r), $(ssh -V 2>&1), slipway $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo '+dirty')"
[[ ${EMPTY_BASHRC:-} == 1 ]] && echo "# DIAGNOSTIC RUN: EMPTY_BASHRC=1 (hosts see an empty /root/.bashrc)"
echo "# R=$R, workload $(stat -c %s "$tarball") bytes tar.gz; medians of wall-clock seconds"
"$PY" "$here/summarize.py" table "$samples"
for n in "${hosts_list[@]}"; do echo; cat "$work/n$n/steps.txt"; done
echo
echo "root's login shell sources ~/.bashrc for every ssh command; sourcing it here takes:" \
  "$(t0=$(now); bash -c '. ~/.bashrc' >/dev/null 2>&1; since "$t0") s" \
  "($(grep -c 'pyenv' ~/.bashrc 2>/dev/null || echo 0) pyenv lines in ~/.bashrc)"
