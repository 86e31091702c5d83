"""search: a tiny search-like HTTP service, the demo app relctl deploys in its
local test cluster. Usage: server.py PORT PIDFILE (bin/start runs it)."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

VERSION = "@VERSION@"
# A broken release (1.2.0) installs and starts but never loads its index, so
# /health fails: exactly what a canary and its health check must catch.
INDEX_LOADED = @INDEX_LOADED@

DOCUMENTS = [
    "getting started with search",
    "release notes",
    "rolling back a release",
    "search ranking explained",
    "tuning the index",
]


class Handler(BaseHTTPRequestHandler):
    server_version = "search/" + VERSION

    def reply(self, status, body):
        data = (json.dumps(body, separators=(",", ":")) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/health":
            if INDEX_LOADED:
                self.reply(200, {"status": "ok", "service": "search", "version": VERSION})
            else:
                self.reply(500, {"status": "failing", "version": VERSION, "reason": "index not loaded"})
        elif url.path == "/search":
            query = parse_qs(url.query).get("q", [""])[0]
            hits = [d for d in DOCUMENTS if query.lower() in d] if INDEX_LOADED else []
            self.reply(200, {"version": VERSION, "query": query, "hits": hits})
        else:
            self.reply(404, {"error": "not found", "path": url.path})


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: server.py PORT PIDFILE")
    port, pidfile = int(sys.argv[1]), sys.argv[2]
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    # The pid file appears only once the port is bound: bin/start waits for it.
    tmp = pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, pidfile)
    print("search %s listening on 127.0.0.1:%d (pid %d)" % (VERSION, port, os.getpid()), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
