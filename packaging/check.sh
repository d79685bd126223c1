#!/usr/bin/env bash
# Checks the packaging files as far as a machine without a Docker engine can:
#   - the slipway binary has the flags the unit and the Dockerfile use (--version, serve --config)
#     and honours the environment overrides they set (SLIPWAY_SERVER__LISTEN,
#     SLIPWAY_GITHUB__WEBHOOK_SECRET_FILE, SLIPWAY_API__TOKEN_FILE, SLIPWAY_WORKER__DATA_DIR)
#     and the absolute sqlite:/// URL the docs recommend;
#   - slipway.service passes `systemd-analyze verify` (on a temp copy whose ExecStart= names the
#     given binary), when systemd-analyze exists;
#   - docker-compose.yml is valid YAML with the expected shape (when python3 has PyYAML);
#   - the Dockerfile's stages, user, port, healthcheck, entrypoint and the paths it COPYs.
#
# Usage: packaging/check.sh PATH_TO_SLIPWAY_BINARY
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 PATH_TO_SLIPWAY_BINARY" >&2
  exit 2
fi
bin=$(realpath "$1")
[ -x "$bin" ] || { echo "check.sh: $1 is not an executable file" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0 failed=0 skipped=0
ok()   { echo "ok    $*"; passed=$((passed + 1)); }
bad()  { echo "FAIL  $*"; failed=$((failed + 1)); }
skip() { echo "skip  $*"; skipped=$((skipped + 1)); }
# check NAME COMMAND...: runs COMMAND quietly, shows its output only when it fails.
check() {
  local name=$1; shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name"; printf '%s\n' "$out" | sed 's/^/      /'; fi
}

# --- the binary -----------------------------------------------------------------------------
check "slipway --version" "$bin" --version
check "slipway serve --help lists --config" \
  bash -c '"$1" serve --help | grep -q -- "--config"' _ "$bin"

# A container/systemd-style setup: absolute paths, secrets from files via env overrides.
mkdir -p "$tmp/etc" "$tmp/state"
printf 'a-webhook-secret\n' > "$tmp/etc/github_webhook"
printf 'an-api-token\n' > "$tmp/etc/slipway_api"
chmod 0400 "$tmp/etc/github_webhook" "$tmp/etc/slipway_api"
cat > "$tmp/etc/slipway.toml" <<TOML
[server]
listen = "127.0.0.1:8080"
[database]
url = "sqlite://$tmp/state/slipway.db"
[apps.shop]
repo = "example/shop"
clone_url = "git@github.com:example/shop.git"
[apps.shop.environments.production]
hosts = ["deploy@web1.example.com"]
deploy_path = "/srv/shop"
ssh = { key = "/etc/slipway/id_ed25519", known_hosts = "/etc/slipway/known_hosts" }
[[apps.shop.triggers]]
push = "main"
deploy = "production"
TOML
env_check() {
  env SLIPWAY_SERVER__LISTEN=0.0.0.0:8080 \
    SLIPWAY_GITHUB__WEBHOOK_SECRET_FILE="$tmp/etc/github_webhook" \
    SLIPWAY_API__TOKEN_FILE="$tmp/etc/slipway_api" \
    SLIPWAY_WORKER__DATA_DIR="$tmp/state" \
    "$bin" --config "$tmp/etc/slipway.toml" "$@"
}
export -f env_check
export tmp bin
check "check-config with env overrides and secret files" \
  bash -c 'env_check check-config | grep -q "listen 0.0.0.0:8080"'
check "migrate creates the database at an absolute sqlite:// path" \
  bash -c 'env_check migrate && test -s "$tmp/state/slipway.db"'

# --- systemd unit ---------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$tmp/unit"
  sed "s|^ExecStart=/usr/local/bin/slipway |ExecStart=$bin |" "$here/slipway.service" \
    > "$tmp/unit/slipway.service"
  if grep -q "^ExecStart=$bin serve --config /etc/slipway/slipway.toml\$" "$tmp/unit/slipway.service"
  then ok "slipway.service ExecStart= is slipway serve --config /etc/slipway/slipway.toml"
  else bad "slipway.service ExecStart= is not the expected command line"; fi
  # verify exits non-zero on errors; warnings go to stderr with the unit's name: none allowed.
  if out=$(cd "$tmp/unit" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify ./slipway.service 2>&1) \
    && ! grep -q 'slipway.service' <<<"$out"; then
    ok "systemd-analyze verify slipway.service"
  else
    bad "systemd-analyze verify slipway.service"; printf '%s\n' "$out" | sed 's/^/      /'
  fi
else
  skip "systemd-analyze not installed: slipway.service not verified"
fi

# --- docker-compose.yml ---------------------------------------------------------------------
if python3 -c 'import yaml' 2>/dev/null; then
  check "docker-compose.yml is valid YAML with the expected services, secrets and volumes" \
    python3 - "$here/docker-compose.yml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
services = doc["services"]
pg, sw = services["postgres"], services["slipway"]
assert pg["image"] == "postgres:16", pg["image"]
assert "pg_isready" in " ".join(pg["healthcheck"]["test"]), "postgres healthcheck"
assert sw["depends_on"]["postgres"]["condition"] == "service_healthy", "depends_on"
assert sw["build"]["dockerfile"] == "packaging/Dockerfile", "dockerfile"
env = sw["environment"]
assert env["SLIPWAY_SERVER__LISTEN"] == "0.0.0.0:8080", "listen"
assert env["SLIPWAY_DATABASE__URL"].startswith("postgres://slipway:"), "database url"
assert env["SLIPWAY_GITHUB__WEBHOOK_SECRET_FILE"] == "/run/secrets/github_webhook", "secret file"
for name in sw["secrets"]:
    assert name in doc["secrets"], f"secret {name} not declared"
for mount in pg["volumes"] + sw["volumes"]:
    src, dst, *mode = mount.split(":")
    if not src.startswith((".", "/")):
        assert src in doc["volumes"], f"volume {src} not declared"
    if dst.startswith("/etc/slipway/"):
        assert mode == ["ro"], f"{dst} must be read-only"
PY
else
  skip "python3 has no PyYAML: docker-compose.yml not parsed"
fi

# --- Dockerfile -----------------------------------------------------------------------------
check "Dockerfile: stages, user, port, healthcheck, entrypoint, command" \
  bash -c '
    f=$1
    grep -q "^ARG RUST_IMAGE=rust:1-bookworm$" "$f" &&
    grep -q "^ARG RUNTIME_IMAGE=debian:bookworm-slim$" "$f" &&
    grep -q "cargo build --release --locked" "$f" &&
    grep -q "useradd .*--uid 10001" "$f" &&
    grep -q "^USER slipway$" "$f" &&
    grep -q "^WORKDIR /var/lib/slipway$" "$f" &&
    grep -q "^EXPOSE 8080$" "$f" &&
    grep -q "http://127.0.0.1:8080/healthz" "$f" &&
    grep -q "^ENTRYPOINT \[\"slipway\"\]$" "$f" &&
    grep -q "^CMD \[\"serve\", \"--config\", \"/etc/slipway/slipway.toml\"\]$" "$f"
  ' _ "$here/Dockerfile"
copied=$(sed -n 's/^COPY \([^-][^ ]*\( [^ ]*\)*\) [^ ]*$/\1/p' "$here/Dockerfile")
missing=()
for path in $copied; do [ -e "$root/$path" ] || missing+=("$path"); done
if [ ${#missing[@]} -eq 0 ]; then ok "Dockerfile COPY sources exist: $(echo $copied)"
else bad "Dockerfile COPY sources missing: ${missing[*]}"; fi
if docker info >/dev/null 2>&1; then
  skip "a Docker engine is reachable, but this script does not build: docker build -f packaging/Dockerfile ."
else
  skip "no Docker engine: the image build and docker-compose.yml were not run"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
