"""analysis-engine: summary of what the stack stored, plus a model-service prediction."""
import os

from phoenix import deps
from phoenix.web import App, HttpError, serve

RECURRENT_PROCESSOR_URL = os.environ.get("RECURRENT_PROCESSOR_URL", "http://recurrent-processor:8000")
MODEL_SERVICE_URL = os.environ.get("MODEL_SERVICE_URL", "http://model-service:8081")


def build(name):
    app = App(name)
    app.check("db", deps.check_db)
    app.check("recurrent-processor", deps.check_http_health(RECURRENT_PROCESSOR_URL))
    app.check("model-service", deps.check_http_health(MODEL_SERVICE_URL))

    def summary(_body):
        try:
            rows = deps.db_query(
                "SELECT detections, runs, heartbeats, last_heartbeat, avg_gap_seconds FROM activity_summary"
            )
        except Exception as e:  # noqa: BLE001
            raise HttpError(503, "database unavailable: %s" % str(e).strip()[:200])
        detections, runs, heartbeats, last_hb, avg_gap = rows[0]
        features = [float(detections), float(runs), float(heartbeats)]
        try:
            status, pred = deps.http_json(MODEL_SERVICE_URL + "/predict", {"x": features})
        except Exception as e:  # noqa: BLE001
            raise HttpError(502, "model-service unreachable: %s" % e)
        if status != 200:
            raise HttpError(502, "model-service answered %d: %s" % (status, pred))
        return 200, {
            "counts": {"detections": detections, "runs": runs, "heartbeats": heartbeats},
            "last_heartbeat": last_hb.isoformat() if last_hb else None,
            "avg_gap_seconds": float(avg_gap) if avg_gap is not None else None,
            "prediction": pred,
        }

    app.route("GET", "/summary", summary)
    return app


def main(name, port):
    serve(build(name), port)
