#!/usr/bin/env bash
# Webhook ingest benchmark (issue #11): slipway's POST /webhooks/github under wrk, next to the
# webhook servers users would otherwise run (@octokit/webhooks, Probot, Slack Bolt JS), one
# server at a time, same wrk settings and measurements.
#
#   bench/webhooks/run.sh [DURATION] [CONNECTIONS]      default: 20s 32
#
# Environment:
#   THREADS=2         wrk threads
#   WARMUP=5s         untimed load before each measured run (JIT, pools, caches); 0 to skip
#   PEERS="octokit probot boltjs"   peers run after slipway; "" for slipway alone; "floor" is
#                     slipway's HTTP stack with nothing behind it (examples/edge_floor.rs: the
#                     signature check and the push parser, no store, no middleware), built here
#   PEER_DIR=/work/shared/bench/webhook-peers      the peers' own server files, used as they are
#   PEER_CACHE=/var/tmp/slipway-bench-webhook-peers  a copy of them with their npm installs (reused)
#   QUIET_WAIT=120    seconds to wait, before each measured run, for other load on the machine
#                     to drop under 10 % of a core (then it goes on and reports that load)
#   SKIP_BUILD=1      use the existing binary; KEEP=1 keeps the work directory (logs, database)
#   CARGO_TARGET_DIR  default /var/tmp/slipway-bench-target; RUST_LOG is passed to slipway as is
#
# slipway runs `serve --role web` (no workers: jobs stay queued, nothing else burns CPU) on a
# fresh SQLite database. Every request is a signed `push` to refs/heads/main of acme/shop that
# queues one deploy; wrk gives each request its own X-GitHub-Delivery (push.lua), so every one is
# verified, parsed, planned and committed. After the run the jobs and deliveries rows are counted
# against wrk's 2xx answers. @octokit/webhooks and Probot get the same requests (same body, same
# signature: the secret is the peers' `bench-secret`); Bolt JS gets the peers' signed Slack
# slash command (their sign.py). Results: the tables on stdout; logs in the work directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

duration=${1:-20s}
[[ $duration =~ ^[0-9]+$ ]] && duration=${duration}s
connections=${2:-32}
threads=${THREADS:-2}
warmup=${WARMUP:-5s}
[[ $warmup =~ ^[0-9]+$ ]] && warmup=${warmup}s
read -r -a peers <<< "${PEERS-octokit probot boltjs}"
PEER_DIR=${PEER_DIR:-/work/shared/bench/webhook-peers}
PEER_CACHE=${PEER_CACHE:-/var/tmp/slipway-bench-webhook-peers}
QUIET_WAIT=${QUIET_WAIT:-120}
target_dir=${CARGO_TARGET_DIR:-/var/tmp/slipway-bench-target}
bin=$target_dir/release/slipway
secret=bench-secret # the peers' secret; slipway is configured with the same one
fixture=$repo/tests/fixtures/github/push.branch.json
HZ=$(getconf CLK_TCK)

log() { printf '%s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

if ! [[ $connections =~ ^[0-9]+$ ]] || (( connections < threads )); then
  die "CONNECTIONS must be a number >= THREADS ($threads), got '$connections'"
fi

# --- tools: installed when missing, as scripts/test does ------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v pgrep >/dev/null || missing+=(procps)
# The Node peers: every peer but the floor.
node_peers=()
with_floor=0
for p in "${peers[@]}"; do
  if [[ $p == floor ]]; then with_floor=1; else node_peers+=("$p"); fi
done
if (( ${#node_peers[@]} > 0 )); then
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
if (( ${#missing[@]} > 0 )); then
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root to have them installed"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the binary ---------------------------------------------------------------------------------------
# The peers' packages declare node >= 20; Debian 12's own nodejs is 18 (NodeSource has 20+).
if (( ${#node_peers[@]} > 0 )); then
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  (( node_major >= 20 )) || die "the peers need node >= 20, found $(node --version); install a newer node or PEERS= for slipway alone"
fi

if [[ ${SKIP_BUILD:-} != 1 ]]; then
  command -v cargo >/dev/null || die "cargo not found (install Rust, or SKIP_BUILD=1 with a built binary)"
  log "building slipway (release) into $target_dir"
  (cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release -q)
  if (( with_floor )); then
    (cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release -q --example edge_floor)
  fi
fi
[[ -x $bin ]] || die "no binary at $bin"
floor_bin=$target_dir/release/examples/edge_floor
if (( with_floor )); then
  [[ -x $floor_bin ]] || die "no binary at $floor_bin (cargo build --release --example edge_floor)"
fi

# --- peers: their own files, copied next to their npm installs (never into this repo) ----------------
declare -A peer_cmd peer_port peer_path peer_kind peer_pkg peer_label
peer_cmd[floor]="$floor_bin 127.0.0.1:3100 $secret"; peer_port[floor]=3100; peer_path[floor]=/api/github/webhooks
peer_kind[floor]=github; peer_label[floor]="axum floor (no store)"
peer_cmd[octokit]="node octokit/server.mjs"; peer_port[octokit]=3101; peer_path[octokit]=/api/github/webhooks
peer_kind[octokit]=github; peer_pkg[octokit]=@octokit/webhooks; peer_label[octokit]="@octokit/webhooks"
peer_cmd[probot]="probot/start.sh"; peer_port[probot]=3102; peer_path[probot]=/api/github/webhooks
peer_kind[probot]=github; peer_pkg[probot]=probot; peer_label[probot]=Probot
peer_cmd[boltjs]="node boltjs/app.js"; peer_port[boltjs]=3103; peer_path[boltjs]=/slack/events
peer_kind[boltjs]=slack; peer_pkg[boltjs]=@slack/bolt; peer_label[boltjs]="Slack Bolt JS"

for p in "${peers[@]}"; do
  [[ -n ${peer_cmd[$p]:-} ]] || die "unknown peer '$p' (known: ${!peer_cmd[*]})"
done
if (( ${#node_peers[@]} > 0 )); then
  [[ -d $PEER_DIR ]] || die "peers requested (PEERS='${node_peers[*]}') but $PEER_DIR does not exist; PEERS= for slipway alone"
  mkdir -p "$PEER_CACHE"
  for p in "${node_peers[@]}"; do
    [[ -d $PEER_DIR/$p ]] || die "no $PEER_DIR/$p"
    # Their files as they are now; node_modules and the probot key stay between runs.
    mkdir -p "$PEER_CACHE/$p"
    cp -Rf "$PEER_DIR/$p/." "$PEER_CACHE/$p/"
    chmod u+w "$PEER_CACHE/$p" "$PEER_CACHE/$p"/*
    if [[ ! -d $PEER_CACHE/$p/node_modules ]]; then
      log "npm install for $p in $PEER_CACHE/$p"
      (cd "$PEER_CACHE/$p" && npm install --silent --no-audit --no-fund) || die "npm install failed for $p"
    fi
  done
  if [[ " ${peers[*]} " == *" probot "* && ! -f $PEER_CACHE/probot/key.pem ]]; then
    openssl genrsa -out "$PEER_CACHE/probot/key.pem" 2048 2>/dev/null # throwaway app key, as their setup.sh
  fi
fi

# --- work directory, cleanup -----------------------------------------------------------------------------
work=$(mktemp -d /var/tmp/slipway-bench-webhooks.XXXXXX)
results=$work/results
mkdir -p "$results"
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [[ ${KEEP:-} == 1 ]]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log "work directory: $work"

# --- the request: built once, signed once ----------------------------------------------------------------
# GitHub's push.branch fixture, pointed at acme/shop's main branch (a trigger of the config below).
body=$work/push.json
python3 - "$fixture" "$body" <<'PY'
import json, sys
payload = json.load(open(sys.argv[1]))
payload["ref"] = "refs/heads/main"
payload["repository"]["full_name"] = "acme/shop"
payload["repository"]["name"] = "shop"
open(sys.argv[2], "w").write(json.dumps(payload, indent=2) + "\n")
PY
signature=sha256=$(openssl dgst -sha256 -hmac "$secret" -r < "$body" | cut -d' ' -f1)
[[ $signature =~ ^sha256=[0-9a-f]{64}$ ]] || die "could not sign the body with openssl: '$signature'"
export WEBHOOK_BODY=$body WEBHOOK_SIGNATURE=$signature
github_headers=(-H "Content-Type: application/json" -H "X-GitHub-Event: push" -H "User-Agent: GitHub-Hookshot/bench")

# --- measurements ------------------------------------------------------------------------------------------
# The server and its direct children (none for these servers, but a forking server would count).
server_pids() { echo "$1"; pgrep -P "$1" || true; }
server_ticks() { # utime + stime, clock ticks
  local p s=0 t
  for p in $(server_pids "$1"); do
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    s=$((s + ${t:-0}))
  done
  echo "$s"
}
server_rss_kb() {
  local p s=0 r
  for p in $(server_pids "$1"); do
    r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || r=0
    s=$((s + ${r:-0}))
  done
  echo "$s"
}
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; } # user nice system irq softirq

# Waits until processes other than the server use < 10 % of one core over 2 s (at most QUIET_WAIT s).
wait_quiet() {
  local pid=$1 waited=0 b0 s0 other
  while :; do
    b0=$(busy_ticks); s0=$(server_ticks "$pid"); sleep 2
    other=$(( $(busy_ticks) - b0 - ($(server_ticks "$pid") - s0) ))
    (( other * 5 < HZ )) && return 0 # other / (2 s * HZ) < 10 %
    (( waited >= QUIET_WAIT )) && { log "  WARNING: machine still busy after ${QUIET_WAIT}s (other load $((other * 50 / HZ)) % of a core); measuring anyway"; return 0; }
    (( waited == 0 )) && log "  waiting for other load on the machine to settle ($((other * 50 / HZ)) % of a core)"
    sleep 3; waited=$((waited + 5))
  done
}

wrk_runs=0
# load NAME PID LUA URL DURATION OUT: one wrk run, with the server's CPU and everyone else's.
load() {
  local name=$1 pid=$2 lua=$3 url=$4 dur=$5 out=$6 b0 b1 s0 s1 t0 t1
  wrk_runs=$((wrk_runs + 1))
  export WEBHOOK_RUN
  WEBHOOK_RUN=$(printf '%08x' "$wrk_runs")
  b0=$(busy_ticks); s0=$(server_ticks "$pid"); t0=$(date +%s.%N)
  local TIMEFORMAT='%3U %3S'
  { time wrk -t"$threads" -c"$connections" -d"$dur" --latency -s "$lua" "$url" > "$out" 2> "$out.err"; } 2> "$out.time" \
    || { cat "$out.err" >&2; die "wrk failed against $name"; }
  b1=$(busy_ticks); s1=$(server_ticks "$pid"); t1=$(date +%s.%N)
  [[ -s $out.err ]] && { log "  wrk said:"; sed 's/^/    /' "$out.err" >&2; }
  kill -0 "$pid" 2>/dev/null || die "$name died under load (log: $work/$name.log)"
  python3 - "$out.time" "$HZ" "$b0" "$b1" "$s0" "$s1" "$t0" "$t1" > "$out.meta" <<'PY'
import sys
wrk_cpu = sum(map(float, open(sys.argv[1]).read().split()))
hz, b0, b1, s0, s1 = (int(x) for x in sys.argv[2:7])
wall = float(sys.argv[8]) - float(sys.argv[7])
print(f"server_ticks={s1 - s0}\nwall_s={wall:.3f}\nwrk_core_s={wrk_cpu:.3f}")
print(f"other_core_s={max(0.0, (b1 - b0 - (s1 - s0)) / hz - wrk_cpu):.3f}")
PY
}
ok_answers() { # requests answered 2xx in a wrk output (wrk counts 3xx with non-2xx; none here)
  awk '/ requests in / {n = $1} /Non-2xx or 3xx responses:/ {bad = $NF} END {print n - bad}' "$1"
}

# start NAME DIR CMD...: starts a server in DIR, its output in $work/NAME.log; sets server_pid.
start() {
  local name=$1 dir=$2; shift 2
  (cd "$dir" && exec "$@") > "$work/$name.log" 2>&1 &
  server_pid=$!
}
# wait_up NAME URL [STATUS]: until URL answers (with STATUS, if given); fails if the server died.
wait_up() {
  local name=$1 url=$2 want=${3:-} code
  for _ in $(seq 1 300); do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$work/$name.log" >&2; die "$name did not start (exited; log above)"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
    if [[ $code != 000 && ( -z $want || $code == "$want" ) ]]; then return 0; fi
    sleep 0.2
  done
  tail -n 30 "$work/$name.log" >&2
  die "$name did not start: $url answered '$code' for 60 s (log above)"
}
stop() {
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# post_github URL DELIVERY [bad]: one signed push by curl; prints "STATUS BODY".
post_github() {
  local sig=$signature
  [[ ${3:-} == bad ]] && sig=sha256=$(printf '0%.0s' $(seq 1 64))
  local code
  code=$(curl -s --max-time 10 -o "$work/answer" -w '%{http_code}' "${github_headers[@]}" \
    -H "X-GitHub-Delivery: $2" -H "X-Hub-Signature-256: $sig" --data-binary "@$body" "$1") || true
  echo "$code $(tr '\n' ' ' < "$work/answer" 2>/dev/null)"
}

# measure NAME LABEL REQUEST PID LUA URL: idle RSS, warm-up, the measured run, RSS after.
measure() {
  local name=$1 label=$2 request=$3 pid=$4 lua=$5 url=$6 idle ok_total=0 f
  sleep 1
  idle=$(server_rss_kb "$pid")
  if [[ $warmup != 0s ]]; then
    log "  warm-up $warmup"
    load "$name" "$pid" "$lua" "$url" "$warmup" "$results/$name.warmup.txt"
  fi
  wait_quiet "$pid"
  log "  measured run: wrk -t$threads -c$connections -d$duration --latency"
  load "$name" "$pid" "$lua" "$url" "$duration" "$results/$name.wrk.txt"
  for f in "$results/$name".{warmup,wrk}.txt; do
    if [[ -f $f ]]; then ok_total=$((ok_total + $(ok_answers "$f"))); fi
  done
  {
    cat "$results/$name.wrk.txt.meta"
    echo "label=$label"
    echo "request=$request"
    echo "hz=$HZ"
    echo "connections=$connections"
    echo "rss_idle_kb=$idle"
    echo "rss_after_kb=$(server_rss_kb "$pid")"
    echo "ok_total=$ok_total"
  } > "$results/$name.meta"
  log "  $(sed -n 's/^Requests\/sec: *//p' "$results/$name.wrk.txt") req/s; $(grep -E '^ +99%' "$results/$name.wrk.txt" | tr -s ' ') p99"
}

# --- slipway -------------------------------------------------------------------------------------------------
log "== slipway"
sdir=$work/slipway
mkdir -p "$sdir/srv"
# A free port, chosen here rather than read from slipway's log (RUST_LOG may hide that line).
addr=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$sdir/slipway.toml" <<TOML
# Generated by bench/webhooks/run.sh.
[server]
listen = "$addr"
[database]
url = "sqlite://slipway.db"
[github]
webhook_secret = "$secret"
[worker]
data_dir = "var"
[telemetry]
log_format = "json"
[apps.shop]
repo = "acme/shop"
clone_url = "shop.git"
[apps.shop.environments.staging]
hosts = ["local"]
deploy_path = "srv/shop"
[[apps.shop.triggers]]
push = "main"
deploy = "staging"
TOML
(cd "$sdir" && "$bin" check-config --config slipway.toml) > "$sdir/check-config.txt" 2>&1 \
  || { cat "$sdir/check-config.txt" >&2; die "slipway rejected the generated config"; }
start slipway "$sdir" "$bin" serve --role web --config slipway.toml
wait_up slipway "http://$addr/readyz" 200
url=http://$addr/webhooks/github

# Signed push: 202 and a job; the same delivery again: 200, duplicate; a bad signature: 401.
check=$(post_github "$url" 00000000-0000-4000-8000-000000000000)
[[ $check == "202 "*'"job_id":'* ]] || die "slipway: a signed push did not queue a job: $check"
check=$(post_github "$url" 00000000-0000-4000-8000-000000000000)
[[ $check == "200 "*'"duplicate":true'* ]] || die "slipway: a redelivery was not recognised: $check"
check=$(post_github "$url" 00000000-0000-4000-8000-000000000001 bad)
[[ $check == "401 "* ]] || die "slipway: a bad signature was not refused with 401: $check"
log "  checks passed: signed push 202, redelivery 200 (duplicate), bad signature 401"

db=$sdir/slipway.db
count_rows() { sqlite3 "$db" "SELECT (SELECT COUNT(*) FROM jobs) || ' ' || (SELECT COUNT(*) FROM deliveries)"; }
read -r jobs0 deliveries0 <<< "$(count_rows)"
measure slipway slipway "GitHub push" "$server_pid" "$here/push.lua" "$url"
stop
read -r jobs1 deliveries1 <<< "$(count_rows)"
queued=$(sqlite3 "$db" "SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
{ echo "rows_jobs=$((jobs1 - jobs0))"; echo "rows_deliveries=$((deliveries1 - deliveries0))"; } >> "$results/slipway.meta"
log "  rows committed under load: $((jobs1 - jobs0)) jobs ($queued queued in all), $((deliveries1 - deliveries0)) deliveries"

# --- peers ---------------------------------------------------------------------------------------------------------
names=(slipway)
versions=""
for p in "${peers[@]}"; do
  log "== ${peer_label[$p]}"
  port=${peer_port[$p]}
  port_free "$port" || die "port $port (${peer_label[$p]}) is already in use by another process"
  read -r -a cmd <<< "${peer_cmd[$p]}"
  pdir=$PEER_CACHE; [[ $p == floor ]] && pdir=$work
  start "$p" "$pdir" "${cmd[@]}"
  wait_up "$p" "http://127.0.0.1:$port/"
  url=http://127.0.0.1:$port${peer_path[$p]}
  if [[ ${peer_kind[$p]} == github ]]; then
    check=$(post_github "$url" 00000000-0000-4000-8000-000000000000)
    [[ $check == 2* ]] || die "$p: a signed push was not accepted: $check"
    check=$(post_github "$url" 00000000-0000-4000-8000-000000000001 bad)
    [[ $check == 4* ]] || die "$p: a bad signature was not refused: $check"
    lua=$here/push.lua request="GitHub push"
  else
    # The peers' own signed Slack slash command (fresh timestamp), as their bench uses it.
    python3 "$PEER_DIR/sign.py" slack "$work/$p.lua" >/dev/null
    check=$(curl -s --max-time 10 -o "$work/answer" -w '%{http_code}' -H @"$work/$p.lua.hdr" \
      --data-binary @"$work/$p.lua.body" "$url") || true
    [[ $check == 2* ]] || die "$p: a signed slash command was not acknowledged: $check $(cat "$work/answer")"
    lua=$work/$p.lua request="Slack slash command"
  fi
  measure "$p" "${peer_label[$p]}" "$request" "$server_pid" "$lua" "$url"
  stop
  names+=("$p")
  [[ $p == floor ]] && continue
  versions+="${versions:+, }${peer_label[$p]} $(node -p "require('$PEER_CACHE/$p/node_modules/${peer_pkg[$p]}/package.json').version")"
done

# --- summary -------------------------------------------------------------------------------------------------------
rev=$(git -C "$repo" rev-parse --short HEAD)
git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock migrations 2>/dev/null || rev+="+dirty"
echo "# Webhook ingest, $(date -u +%Y-%m-%d): slipway $rev, $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r)"
warm="after a $warmup warm-up"; [[ $warmup == 0s ]] && warm="no warm-up"
echo "# wrk -t$threads -c$connections -d$duration --latency ($warm), one server at a time on 127.0.0.1"
echo "# slipway: serve --role web, SQLite WAL synchronous=$(grep -o 'SqliteSynchronous::[A-Za-z]*' "$repo/src/store/mod.rs" | head -n 1 | sed 's/.*:://' | tr '[:lower:]' '[:upper:]') (src/store/mod.rs), RUST_LOG=${RUST_LOG:-unset (info)}; push body $(stat -c %s "$body") bytes"
[[ -n $versions ]] && echo "# peers: $versions; node $(node --version)"
if (( with_floor )); then
  echo "# floor: examples/edge_floor.rs (verify + parse, then 202; no store), slipway's build profile"
fi
echo
python3 "$here/summarize.py" "$results" "${names[@]}"
