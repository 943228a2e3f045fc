"""recurrent-processor: exponential smoothing of a series, gap detection via gap-detector, runs stored in db."""
import os

from phoenix import deps
from phoenix.series import parse_series, positive_number
from phoenix.web import App, HttpError, serve

GAP_DETECTOR_URL = os.environ.get("GAP_DETECTOR_URL", "http://gap-detector:5000")


def smooth(values, alpha):
    out = []
    for v in values:
        out.append(v if not out else alpha * v + (1 - alpha) * out[-1])
    return out


def build(name):
    app = App(name)
    app.check("db", deps.check_db)
    app.check("gap-detector", deps.check_http_health(GAP_DETECTOR_URL))

    def process(body):
        points = parse_series(body)
        alpha = positive_number(body, "alpha", 0.5)
        if alpha > 1:
            raise HttpError(400, "alpha must be in (0, 1]")
        max_gap = positive_number(body, "max_gap", 60)
        smoothed = smooth([v for _, v in points], alpha)
        try:
            status, detected = deps.http_json(
                GAP_DETECTOR_URL + "/detect",
                {"series": [{"t": t, "v": v} for t, v in points], "max_gap": max_gap},
            )
        except Exception as e:  # noqa: BLE001
            raise HttpError(502, "gap-detector unreachable: %s" % e)
        if status != 200:
            raise HttpError(502, "gap-detector answered %d: %s" % (status, detected))
        try:
            rows = deps.db_query(
                "INSERT INTO runs (alpha, max_gap_seconds, points, gaps, last_smoothed)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (alpha, max_gap, len(points), detected["count"], smoothed[-1] if smoothed else None),
            )
        except Exception as e:  # noqa: BLE001
            raise HttpError(503, "database unavailable: %s" % str(e).strip()[:200])
        app.metrics.inc("phoenix_runs_total", "Smoothing runs stored.")
        return 200, {
            "run_id": rows[0][0],
            "alpha": alpha,
            "points": len(points),
            "smoothed": [{"t": t, "v": s} for (t, _), s in zip(points, smoothed)],
            "gaps": detected["gaps"],
        }

    app.route("POST", "/process", process)
    return app


def main(name, port):
    serve(build(name), port)
