#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a figure that does not move with
# the machine's load (wall-clock runs here vary by 2-3x from one minute to the next), for
# comparing two builds of a change that saves a few percent. It counts user-space instructions
# only: syscalls, context switches and waiting for the disk are not in it (bench/webhooks/run.sh
# and bench/slack/ack.sh measure those).
#
#   bench/instructions.sh [push|status] [REQUESTS]        default: push 1000
#
# Environment: BIN (default $CARGO_TARGET_DIR/release/slipway, CARGO_TARGET_DIR defaulting to
# /var/tmp/slipway-bench-target; built with SKIP_BUILD unset), KEEP=1 keeps the callgrind output.
#
# The server (`serve --role web`, fresh SQLite database) runs under callgrind; a Python client
# sends REQUESTS requests one after another on one keep-alive connection: `push` a signed
# GitHub push of refs/heads/main with its own delivery id (verified, parsed, one job
# committed); `status` a signed Slack `/deploy status`. Requests go one at a time, so each is a
# batch of one: the figure includes a whole group commit per push. The same is run with no
# requests, and the difference divided by REQUESTS is printed.
# Under valgrind SHA-256 runs its portable code (valgrind hides the CPU's SHA extensions), so
# a push's HMAC over the 7 KiB body counts about 0.45M instructions that the native build
# spends in a few thousand.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
kind=${1:-push}
requests=${2:-1000}
target_dir=${CARGO_TARGET_DIR:-/var/tmp/slipway-bench-target}
bin=${BIN:-$target_dir/release/slipway}

die() { printf 'instructions.sh: %s\n' "$*" >&2; exit 1; }
[[ $kind == push || $kind == status ]] || die "the first argument is push or status, got '$kind'"
[[ $requests =~ ^[1-9][0-9]*$ ]] || die "REQUESTS must be a positive number, got '$requests'"

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
command -v git >/dev/null || missing+=(git)
if (( ${#missing[@]} > 0 )); then
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root to have them installed"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ -z ${BIN:-} && ${SKIP_BUILD:-} != 1 ]]; then
  (cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release -q)
fi
[[ -x $bin ]] || die "no binary at $bin"

work=$(mktemp -d /var/tmp/slipway-bench-instructions.XXXXXX)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [[ ${KEEP:-} == 1 ]]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

python3 - "$repo/tests/fixtures/github/push.branch.json" "$work/push.json" <<'PY'
import json, sys
payload = json.load(open(sys.argv[1]))
payload["ref"] = "refs/heads/main"
payload["repository"]["full_name"] = "acme/shop"
payload["repository"]["name"] = "shop"
open(sys.argv[2], "w").write(json.dumps(payload, indent=2) + "\n")
PY
git init -q --bare "$work/shop.git"

# Counts one server run that answers `$1` requests; prints its total instructions.
count() {
  local n=$1 run=$work/run-$1 port
  mkdir -p "$run"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$run/slipway.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[database]
url = "sqlite://$run/slipway.db"
[github]
webhook_secret = "bench-secret"
[slack]
signing_secret = "bench-slack-signing-secret"
team_id = "T0BENCH"
[worker]
data_dir = "$run/var"
[apps.shop]
repo = "acme/shop"
clone_url = "file://$work/shop.git"
[apps.shop.environments.staging]
hosts = ["local"]
deploy_path = "$run/srv/shop"
[[apps.shop.triggers]]
push = "main"
deploy = "staging"
TOML
  valgrind --tool=callgrind --callgrind-out-file="$run/callgrind.out" \
    "$bin" serve --role web --config "$run/slipway.toml" > "$run/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$port/readyz" && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$run/server.log" >&2; die "slipway exited"; }
    sleep 0.2
  done
  python3 - "$kind" "$port" "$n" "$work/push.json" <<'PY' || { cat "$run/server.log" >&2; die "requests failed"; }
import hashlib, hmac, http.client, sys, time, uuid
kind, port, n, body_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port)
push = open(body_path, "rb").read()
push_sig = "sha256=" + hmac.new(b"bench-secret", push, hashlib.sha256).hexdigest()
status = (b"token=bench&team_id=T0BENCH&team_domain=bench&channel_id=C0BENCH&user_id=U0BENCH"
          b"&user_name=bench&command=%2Fdeploy&text=status&trigger_id=1.2.3")
for _ in range(n):
    if kind == "push":
        conn.request("POST", "/webhooks/github", push, {
            "Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-Hub-Signature-256": push_sig, "X-GitHub-Delivery": str(uuid.uuid4())})
        want = 202
    else:
        ts = str(int(time.time()))
        sig = "v0=" + hmac.new(b"bench-slack-signing-secret", f"v0:{ts}:".encode() + status,
                               hashlib.sha256).hexdigest()
        conn.request("POST", "/slack/commands", status, {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})
        want = 200
    answer = conn.getresponse()
    body = answer.read()
    if answer.status != want:
        sys.exit(f"answered {answer.status}, not {want}: {body[:200]!r}")
PY
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
  awk '/^(summary|totals):/ {print $2; exit}' "$run/callgrind.out"
}

idle=$(count 0)
loaded=$(count "$requests")
echo "slipway $kind: $(( (loaded - idle) / requests )) instructions per request ($requests requests, one at a time; $loaded in all, $idle for start-up and shutdown alone)"
