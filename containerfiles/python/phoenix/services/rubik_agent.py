"""rubik-agent: writes a heartbeat row every few seconds; healthy while heartbeats are fresh."""
import os
import socket
import threading
import time

from phoenix import deps
from phoenix.web import App, serve

INTERVAL = float(os.environ.get("RUBIK_HEARTBEAT_INTERVAL", "3"))
MAX_AGE = float(os.environ.get("RUBIK_HEARTBEAT_MAX_AGE", str(max(3 * INTERVAL, 5))))
AGENT = os.environ.get("RUBIK_AGENT_NAME") or socket.gethostname()


def build(name):
    app = App(name)
    state = {"last_ok": None, "last_error": "no heartbeat yet"}

    def beat_forever():
        while True:
            try:
                deps.db_query("INSERT INTO heartbeats (agent) VALUES (%s)", (AGENT,), fetch=False)
                state["last_ok"], state["last_error"] = time.monotonic(), None
                app.metrics.inc("phoenix_heartbeats_total", "Heartbeats written.")
            except Exception as e:  # noqa: BLE001
                state["last_error"] = str(e).strip()[:200] or type(e).__name__
                app.metrics.inc("phoenix_heartbeat_failures_total", "Heartbeats that failed.")
            time.sleep(INTERVAL)

    def check_heartbeat():
        last = state["last_ok"]
        if last is None:
            raise RuntimeError(state["last_error"])
        age = time.monotonic() - last
        if age > MAX_AGE:
            raise RuntimeError("last heartbeat %.1fs ago (max %.1fs): %s" % (age, MAX_AGE, state["last_error"]))
        return {"age_seconds": round(age, 3), "interval_seconds": INTERVAL, "max_age_seconds": MAX_AGE}

    app.check("db", deps.check_db)
    app.check("heartbeat", check_heartbeat)
    thread = threading.Thread(target=beat_forever, name="heartbeat", daemon=True)
    return app, thread


def main(name, port):
    app, thread = build(name)
    serve(app, port, on_start=thread.start)
