"""app: a tiny front-end service of relctl's local test cluster. It reads the
search hosts it talks to from app.conf at start (one host:port per line, #
comments allowed), so moving the search service to other hosts means
rewriting app.conf and restarting the app.

Usage: app.py serve PORT PIDFILE CONFIG   (bin/start runs it)
       app.py check PORT SECONDS          (bin/restart: wait until it answers)
"""

import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A backend that does not answer within this is not healthy: the app must
# answer its own /health well within a health check's timeout.
BACKEND_TIMEOUT = 1.0


def read_config(path):
    """Returns the backends ("host:port") listed in path, in order."""
    backends = []
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            host, sep, port = line.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("%s:%d: want host:port, got %r" % (path, lineno, line))
            backends.append(line)
    return backends


def backend_health(backend):
    """Returns the body of backend's GET /health when it answers 200, else None."""
    try:
        with urllib.request.urlopen("http://%s/health" % backend, timeout=BACKEND_TIMEOUT) as resp:
            body = resp.read()
            return body if resp.status == 200 else None
    except (OSError, urllib.error.URLError, ValueError):
        return None


class App:
    def __init__(self, backends):
        self.backends = backends
        self.lock = threading.Lock()
        self.next = 0

    def any_healthy(self):
        return any(backend_health(b) is not None for b in self.backends)

    def search(self):
        """Round robin over the healthy backends: the body of the first one,
        from the next in turn, that answers; None when none does."""
        n = len(self.backends)
        if n == 0:
            return None
        with self.lock:
            start = self.next
            self.next = (self.next + 1) % n
        for i in range(n):
            body = backend_health(self.backends[(start + i) % n])
            if body is not None:
                return body
        return None


class Handler(BaseHTTPRequestHandler):
    server_version = "app"

    def reply(self, status, body):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/health":
            if app.any_healthy():
                self.reply(200, "app ok backends=%s\n" % ",".join(app.backends))
            else:
                self.reply(503, "app: no backend healthy\n")
        elif path == "/search":
            body = app.search()
            if body is None:
                self.reply(502, "app: no backend healthy\n")
            else:
                self.reply(200, body)
        else:
            self.reply(404, "app: not found: %s\n" % path)

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.log_date_time_string(), fmt % args))
        sys.stdout.flush()


def serve(port, pidfile, config):
    backends = read_config(config)
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    httpd.app = App(backends)
    # The pid file appears only once the port is bound: bin/start waits for it.
    tmp = pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, pidfile)
    print("app listening on 127.0.0.1:%d, backends %s" % (port, ",".join(backends) or "(none)"), flush=True)
    httpd.serve_forever()


def check(port, seconds):
    """Exit 0 once the app answers /health at all (200, or 503 while no
    backend is healthy), 1 if it does not within seconds."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=2) as resp:
                if resp.status == 200:
                    return 0
        except urllib.error.HTTPError as e:
            if e.code == 503:
                return 0
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.1)


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "serve":
        try:
            serve(int(args[1]), args[2], args[3])
        except (OSError, ValueError) as e:
            sys.exit("app: %s" % e)
    elif len(args) == 3 and args[0] == "check":
        sys.exit(check(int(args[1]), float(args[2])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
