"""A tiny web app for slipway's demo and tests: serves its release id and commit.

Run: python3 app.py PORT   (stdlib only, no installs)
"""
import http.server
import os
import sys

RELEASE = os.environ.get("SLIPWAY_RELEASE") or open(
    os.path.join(os.path.dirname(__file__), "BUILD_INFO")
).read().strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from release {RELEASE}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
