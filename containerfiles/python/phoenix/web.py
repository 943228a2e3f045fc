"""Tiny HTTP framework on http.server: routing, JSON, /health, /metrics."""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# Upper bound for a /health answer; dependency calls themselves time out after ~2 s.
HEALTH_DEADLINE = float(os.environ.get("PHOENIX_HEALTH_DEADLINE", "2.5"))


class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Metrics:
    """Prometheus counters kept in memory, rendered in text format 0.0.4."""

    def __init__(self, service):
        self.service = service
        self.lock = threading.Lock()
        self.requests = {}  # (method, path, status) -> count
        self.durations = {}  # path -> [sum, count]
        self.counters = {}  # (name, help) -> value
        self.started = time.time()

    def observe(self, method, path, status, seconds):
        with self.lock:
            key = (method, path, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            d = self.durations.setdefault(path, [0.0, 0])
            d[0] += seconds
            d[1] += 1

    def inc(self, name, help_text, value=1):
        with self.lock:
            key = (name, help_text)
            self.counters[key] = self.counters.get(key, 0) + value

    def render(self):
        out = []
        svc = _label(self.service)
        with self.lock:
            out.append("# HELP phoenix_http_requests_total HTTP requests handled, by method, path and status.")
            out.append("# TYPE phoenix_http_requests_total counter")
            for (method, path, status), n in sorted(self.requests.items()):
                out.append(
                    'phoenix_http_requests_total{service="%s",method="%s",path="%s",status="%s"} %d'
                    % (svc, _label(method), _label(path), status, n)
                )
            out.append("# HELP phoenix_http_request_duration_seconds Time spent handling requests.")
            out.append("# TYPE phoenix_http_request_duration_seconds summary")
            for path, (total, count) in sorted(self.durations.items()):
                lbl = 'service="%s",path="%s"' % (svc, _label(path))
                out.append("phoenix_http_request_duration_seconds_sum{%s} %.6f" % (lbl, total))
                out.append("phoenix_http_request_duration_seconds_count{%s} %d" % (lbl, count))
            for (name, help_text), n in sorted(self.counters.items()):
                out.append("# HELP %s %s" % (name, help_text))
                out.append("# TYPE %s counter" % name)
                out.append('%s{service="%s"} %s' % (name, svc, n))
            out.append("# HELP phoenix_process_start_time_seconds Start time of the process since the epoch.")
            out.append("# TYPE phoenix_process_start_time_seconds gauge")
            out.append('phoenix_process_start_time_seconds{service="%s"} %.3f' % (svc, self.started))
        return "\n".join(out) + "\n"


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class App:
    """Routes plus health checks.  Subclasses register routes and checks."""

    def __init__(self, service):
        self.service = service
        self.metrics = Metrics(service)
        self.routes = {}  # (method, path) -> fn(body_json_or_None) -> (status, obj)
        self.checks = {}  # name -> fn() raising on failure, returning detail
        self.route("GET", "/health", self._health)
        self.route("GET", "/metrics", None)

    def route(self, method, path, fn):
        self.routes[(method, path)] = fn

    def check(self, name, fn):
        self.checks[name] = fn

    def _health(self, _body):
        """200 only when every check passes. Checks run in parallel, each in its own daemon thread,
        and the answer never waits longer than HEALTH_DEADLINE: a check stuck in DNS or connect
        counts as failed instead of hanging the probe (and stuck threads cannot starve a pool)."""
        # Fault injection for the harness's negative fixtures: clients outside the container get a
        # fixed status while the in-container healthcheck (from loopback) still sees the truth,
        # the way a service can look healthy to its engine and be broken for its clients.
        fault = os.environ.get("PHOENIX_HEALTH_FAULT_STATUS", "")
        if fault.isdigit() and not getattr(_request, "loopback", True):
            return int(fault), {"status": "fault", "service": self.service, "checks": {}}
        deadline = time.monotonic() + HEALTH_DEADLINE
        outcomes = {}

        def run(name, fn):
            try:
                outcomes[name] = ("ok", fn())
            except Exception as e:  # noqa: BLE001 - any failure means unhealthy
                outcomes[name] = ("fail", str(e).strip()[:300] or type(e).__name__)

        threads = []
        for name, fn in self.checks.items():
            t = threading.Thread(target=run, args=(name, fn), name="check-" + name, daemon=True)
            t.start()
            threads.append((name, t))
        results, ok = {}, True
        for name, t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            status, detail = outcomes.get(name, ("fail", "no answer within %.1fs" % HEALTH_DEADLINE))
            if status == "ok":
                results[name] = {"status": "ok"}
                if detail:
                    results[name].update(detail)
            else:
                ok = False
                results[name] = {"status": "fail", "error": detail}
        body = {"status": "ok" if ok else "fail", "service": self.service, "checks": results}
        return (200 if ok else 503), body


# The current request's client, per handler thread (for the health fault above).
_request = threading.local()


def make_handler(app):
    class Handler(BaseHTTPRequestHandler):
        server_version = "phoenix/1"
        protocol_version = "HTTP/1.1"

        def _dispatch(self, method):
            start = time.monotonic()
            _request.loopback = self.client_address[0].startswith("127.") or self.client_address[0] == "::1"
            path = self.path.split("?", 1)[0]
            known = (method, path) in app.routes
            label_path = path if any(p == path for (_, p) in app.routes) else "other"
            status = 500
            try:
                if path == "/metrics" and method == "GET":
                    status = 200
                    text = app.metrics.render()
                    # Fault injection for the harness's negative fixture: a sample line that is not
                    # exposition format, which Prometheus must refuse with its own parse error.
                    if os.environ.get("PHOENIX_METRICS_FAULT", "") == "invalid":
                        text += "phoenix_broken_total{service=unquoted} not-a-number\n"
                    self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
                    return
                if not known:
                    if any(p == path for (_, p) in app.routes):
                        raise HttpError(405, "method not allowed")
                    raise HttpError(404, "not found")
                body = None
                if method == "POST":
                    body = self._read_json()
                status, obj = app.routes[(method, path)](body)
                try:
                    self._json(status, obj)
                except (BrokenPipeError, ConnectionResetError):
                    status = 499
                    self.close_connection = True
            except HttpError as e:
                status = e.status
                self._json(status, {"error": e.message})
            except (BrokenPipeError, ConnectionResetError):
                status = 499  # client went away (e.g. a probe that timed out); nothing to answer
                self.close_connection = True
            except Exception as e:  # noqa: BLE001
                status = 500
                sys.stderr.write("%s %s: internal error: %r\n" % (method, path, e))
                self._json(500, {"error": "internal error"})
            finally:
                app.metrics.observe(method, label_path, status, time.monotonic() - start)

        def _read_json(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > 10 * 1024 * 1024:
                raise HttpError(413, "body too large")
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw or b"null")
            except ValueError:
                raise HttpError(400, "body is not valid JSON")

        def _json(self, status, obj):
            self._send(status, (json.dumps(obj) + "\n").encode(), "application/json")

        def _send(self, status, data, ctype):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def log_message(self, fmt, *args):
            # health probes and scrapes would drown the log
            if self.path in ("/health", "/metrics"):
                return
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    return Handler


def serve(app, port, on_start=None):
    """Serve forever on all interfaces; SIGTERM/SIGINT stop cleanly (we run as PID 1)."""

    def stop(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer(("0.0.0.0", port), make_handler(app))
    if on_start:
        on_start()
    sys.stderr.write("%s listening on :%d (pid %d, uid %d)\n" % (app.service, port, os.getpid(), os.getuid()))
    try:
        httpd.serve_forever(poll_interval=0.5)
    finally:
        httpd.server_close()
