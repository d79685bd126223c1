//! The small web app the strategy and ephemeral tests deploy: python3 stdlib only. It answers
//! `release <id> of <sha>` ([`page`]) with 200, or 503 on a host whose address is listed in the release's
//! `unhealthy` file, so a test can make one release fail its health check on chosen hosts.

use serde_json::Value;

use crate::helpers::GitRepo;

const APP_PY: &str = r#"import http.server, os, sys
addr, port, release, sha = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
here = os.path.dirname(os.path.abspath(__file__))
bad = open(os.path.join(here, "unhealthy")).read().split() if os.path.exists(os.path.join(here, "unhealthy")) else []
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if addr in bad else 200
        body = f"release {release} of {sha}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((addr, port), H).serve_forever()
"#;

/// `bin/app start|stop`: runs app.py from the release directory for SLIPWAY_PORT, bound to the
/// host's own address (taken from SSH_CONNECTION), tracked by a pid file in the deploy path. The
/// release and the commit it serves come from the step's SLIPWAY_RELEASE and SLIPWAY_SHA.
const APP_SH: &str = r#"#!/bin/sh
set -eu
addr=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)
port=${SLIPWAY_PORT:-8000}
pidfile="$SLIPWAY_DEPLOY_PATH/app-$port.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$pidfile"
fi
if [ "$1" = start ]; then
  nohup python3 "$PWD/app.py" "$addr" "$port" "$SLIPWAY_RELEASE" "$SLIPWAY_SHA" >/dev/null 2>&1 &
  echo $! > "$pidfile"
fi
"#;

pub fn add_web_app(repo: &GitRepo) {
    repo.write("app.py", APP_PY);
    repo.write("bin/app", APP_SH);
    repo.make_executable("bin/app");
}

/// The page the app serves once `job` (a finished deploy or rollback) is live.
pub fn page(job: &Value) -> String {
    let (release, sha) = (job["release_id"].as_str(), job["sha"].as_str());
    format!("release {} of {}\n", release.unwrap(), sha.unwrap())
}
