"""Outbound dependencies: PostgreSQL and other services, always with short timeouts."""
import json
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = float(os.environ.get("PHOENIX_DEP_TIMEOUT", "2"))


def resolve(host, timeout=TIMEOUT):
    """IPv4 address of host, bounded in time.

    Neither libpq's connect_timeout nor urllib's timeout covers name resolution, and the
    engine's DNS can stall: rootless Podman's aardvark-dns was seen not answering for 30-50 s
    right after `up`, which left a caller blocked in getaddrinfo that long. The lookup runs in
    a daemon thread we stop waiting for; RES_OPTIONS (set in the image) bounds how long such a
    thread lives. AF_INET only: the stack's networks are IPv4 and no AAAA query is sent.
    """
    result = {}

    def run():
        try:
            result["addr"] = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except Exception as e:  # noqa: BLE001 - re-raised in the caller
            result["error"] = e

    t = threading.Thread(target=run, name="resolve-" + host, daemon=True)
    t.start()
    t.join(timeout)
    if "addr" in result:
        return result["addr"]
    if "error" in result:
        raise OSError("cannot resolve %s: %s" % (host, result["error"]))
    raise TimeoutError("resolving %s took longer than %.1fs" % (host, timeout))


def db_connect():
    """A fresh connection per use: a dead db never leaves a stale connection behind."""
    import psycopg2

    # libpq's own variables (PGHOST, PGPORT, PGUSER, PGDATABASE) name the server; the password
    # comes from the same env file the db container reads.
    host = os.environ.get("PGHOST", "db")
    return psycopg2.connect(
        host=host,
        hostaddr=resolve(host),
        port=int(os.environ.get("PGPORT", "5432")),
        user=os.environ.get("PGUSER", "phoenix"),
        password=os.environ.get("POSTGRES_PASSWORD", ""),
        dbname=os.environ.get("PGDATABASE", "phoenix"),
        connect_timeout=max(2, int(TIMEOUT)),  # libpq's minimum is 2 s
        application_name=os.environ.get("PHOENIX_SERVICE", "phoenix"),
        options="-c statement_timeout=%d" % int(TIMEOUT * 1000),
    )


def db_query(sql, params=None, fetch=True):
    """Run one statement in its own transaction; returns rows when fetch."""
    conn = db_connect()
    try:
        with conn:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if fetch else None
    finally:
        conn.close()


def check_db():
    rows = db_query("SELECT 1")
    if rows != [(1,)]:
        raise RuntimeError("unexpected answer to SELECT 1: %r" % (rows,))
    return None


def http_json(url, payload=None, timeout=TIMEOUT):
    """GET (payload None) or POST JSON; returns (status, decoded body). Raises on network errors."""
    data = None
    headers = {"Accept": "application/json"}
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    # Resolve ourselves (bounded) and connect to the address; the Host header keeps the name.
    parts = urllib.parse.urlsplit(url)
    headers["Host"] = parts.netloc
    addr = resolve(parts.hostname, timeout)
    netloc = addr + (":%d" % parts.port if parts.port else "")
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read() or b"null")
        except ValueError:
            body = None
        return e.code, body


def check_http_health(base_url):
    """Dependency check: the other service's /health must answer 200."""

    def check():
        status, body = http_json(base_url.rstrip("/") + "/health")
        if status != 200:
            raise RuntimeError("%s/health answered %d" % (base_url, status))
        return {"url": base_url}

    return check
