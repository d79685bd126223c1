#!/usr/bin/env bash
# Slack slash-command acknowledgements (issue #5): a signed `/deploy status` POSTed to slipway's
# /slack/commands under wrk. The body and its signature are made once (Slack accepts a signature
# for 5 minutes, so keep DURATION well under that); `status` reads the store and queues nothing,
# so every request does the whole work: verify, parse, read, answer.
#
#   bench/slack/ack.sh [DURATION] [CONNECTIONS]      default: 20s 4
#
# Environment: SKIP_BUILD=1 uses the existing release binary; CARGO_TARGET_DIR (default
# /var/tmp/slipway-bench-target); KEEP=1 keeps the work directory.
# MODE=deploy measures queuing acks instead: `/deploy main to staging` of a real local git repo,
# each request its own signed body (BODIES of them, default 50,000, made before the run; a body
# sent twice is a retry, answered from its job), so each one commits a job. `main` is fetched by the
# check before the run, so each run's request queues it by name (its commit is looked up when the
# deploy starts; the bench runs no workers).
# The jobs are counted after the run against wrk's requests.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
duration=${1:-20s}
[[ $duration =~ ^[0-9]+$ ]] && duration=${duration}s
connections=${2:-4}
target_dir=${CARGO_TARGET_DIR:-/var/tmp/slipway-bench-target}
die() { echo "bench/slack/ack.sh: $*" >&2; exit 1; }
# The server's CPU time in clock ticks (utime + stime) and its resident memory in KiB.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# Runs wrk with the given arguments against the server and prints what it measured, then the
# server's CPU per request over the run and its RSS before and after.
measure() {
  local t0 t1 rss0 requests
  rss0=$(rss_kib "$server_pid"); t0=$(cpu_ticks "$server_pid")
  wrk "$@" > "$work/wrk.txt"
  t1=$(cpu_ticks "$server_pid")
  grep -E 'Requests/sec|^ +(50|99)%|Non-2xx|requests in' "$work/wrk.txt"
  requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$requests" -v r0="$rss0" -v r1="$(rss_kib "$server_pid")" \
    'BEGIN { printf "server CPU: %.1f µs/request; RSS: %.1f MiB before, %.1f MiB after\n", t / hz * 1e6 / n, r0 / 1024, r1 / 1024 }'
}

mode=${MODE:-status}
[[ $mode == status || $mode == deploy ]] || die "MODE must be status or deploy, got '$mode'"
for tool in wrk curl openssl python3 git sqlite3; do
  command -v "$tool" >/dev/null || { apt-get install -y -qq "$tool" >/dev/null || die "cannot install $tool"; }
done
if [[ ${SKIP_BUILD:-} != 1 ]]; then
  (cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release --quiet) || die "build failed"
fi
bin=$target_dir/release/slipway
[[ -x $bin ]] || die "no binary at $bin (drop SKIP_BUILD)"

work=$(mktemp -d /var/tmp/slipway-bench-slack.XXXXXX)
server_pid=""
cleanup() {
  [[ -n $server_pid ]] && { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
  if [[ ${KEEP:-} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

secret=bench-slack-signing-secret
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/slipway.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[github]
webhook_secret = "bench-webhook-secret"
[database]
url = "sqlite://$work/slipway.db"
[worker]
data_dir = "$work/var"
[slack]
signing_secret = "$secret"
team_id = "T0BENCH"
[apps.shop]
repo = "acme/shop"
clone_url = "file://$work/shop.git"
[apps.shop.environments.staging]
hosts = ["local"]
deploy_path = "$work/srv/staging"
TOML
git init -q --bare "$work/shop.git"
git init -q "$work/src"
git -C "$work/src" -c user.name=bench -c user.email=bench@example.test commit -q --allow-empty -m first
git -C "$work/src" push -q "$work/shop.git" HEAD:refs/heads/main
# The service's own PATH, as systemd gives it: a developer's PATH may put shims first (pyenv's
# `git` shim is a shell script that costs more than the git it runs).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin RUST_LOG=warn \
  "$bin" serve --role web --config "$work/slipway.toml" > "$work/slipway.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 150); do
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/slipway.log" >&2; die "slipway exited"; }
  [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true) == 200 ]] && break
  sleep 0.2
done

body='token=bench&team_id=T0BENCH&team_domain=bench&channel_id=C0BENCH&channel_name=deploys&user_id=U0BENCH&user_name=bench&command=%2Fdeploy&text=status&api_app_id=A0BENCH&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT0BENCH%2F1%2F2&trigger_id=1.2.3'
ts=$(date +%s)
sig=v0=$(printf 'v0:%s:%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
answer=$(curl -s -w ' %{http_code}' -H 'Content-Type: application/x-www-form-urlencoded' \
  -H "X-Slack-Request-Timestamp: $ts" -H "X-Slack-Signature: $sig" --data "$body" \
  "http://127.0.0.1:$port/slack/commands")
[[ $answer == *'"response_type":"ephemeral"'*' 200' ]] || die "a signed /deploy status was not acknowledged: $answer"

if [[ $mode == status ]]; then
  cat > "$work/ack.lua" <<LUA
wrk.method = "POST"
wrk.body = "$body"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["X-Slack-Request-Timestamp"] = "$ts"
wrk.headers["X-Slack-Signature"] = "$sig"
LUA
  echo "slipway /slack/commands, signed '/deploy status': wrk -t1 -c$connections -d$duration --latency"
  measure -t1 -c"$connections" -d"$duration" --latency -s "$work/ack.lua" "http://127.0.0.1:$port/slack/commands"
  exit 0
fi

# MODE=deploy: a first deploy, answered after a fetch and naming the commit; then `main` is known.
check=${body/text=status/text=main+to+staging}
check=${check/trigger_id=1.2.3/trigger_id=check}
sig=v0=$(printf 'v0:%s:%s' "$ts" "$check" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
answer=$(curl -s -w ' %{http_code}' -H 'Content-Type: application/x-www-form-urlencoded' \
  -H "X-Slack-Request-Timestamp: $ts" -H "X-Slack-Signature: $sig" --data "$check" \
  "http://127.0.0.1:$port/slack/commands")
[[ $answer == *'Queued #1: deploy `main` (`'*' 200' ]] || die "a signed /deploy main to staging was not queued: $answer"

# Distinct signed bodies (trigger_id differs), one per line: signature TAB body.
python3 - "$secret" "$ts" "${BODIES:-50000}" "$work/bodies.tsv" <<'PY'
import hashlib, hmac, sys
secret, ts, count, out = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3]), sys.argv[4]
base = ("token=bench&team_id=T0BENCH&team_domain=bench&channel_id=C0BENCH&channel_name=deploys"
        "&user_id=U0BENCH&user_name=bench&command=%2Fdeploy&text=main+to+staging&api_app_id=A0BENCH"
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT0BENCH%2F1%2F2&trigger_id=")
with open(out, "w") as f:
    for i in range(count):
        body = f"{base}{i}.bench"
        sig = hmac.new(secret, f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        f.write(f"v0={sig}\t{body}\n")
PY
cat > "$work/deploy.lua" <<LUA
local requests, i = {}, 0
for line in io.lines("$work/bodies.tsv") do
  local sig, body = line:match("^(%S+)\t(.*)$")
  requests[#requests + 1] = wrk.format("POST", "/slack/commands", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Slack-Request-Timestamp"] = "$ts",
    ["X-Slack-Signature"] = sig,
  }, body)
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
LUA
echo "slipway /slack/commands, signed '/deploy main to staging', distinct bodies: wrk -t1 -c$connections -d$duration --latency"
measure -t1 -c"$connections" -d"$duration" --latency -s "$work/deploy.lua" "http://127.0.0.1:$port/slack/commands"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
jobs=$(sqlite3 "$work/slipway.db" 'SELECT COUNT(*) FROM jobs')
answered=$(awk '/requests in/ {n = $1} /Non-2xx/ {bad = $NF} END {print n - bad}' "$work/wrk.txt")
distinct=$(( answered < ${BODIES:-50000} ? answered : ${BODIES:-50000} ))
echo "jobs committed: $jobs for $answered answered requests ($distinct distinct bodies, and the check)"
# More jobs than that: requests in flight when wrk stopped (committed, answer never read).
(( jobs >= distinct + 1 )) || die "fewer jobs than answered distinct requests: an answer without its job"
