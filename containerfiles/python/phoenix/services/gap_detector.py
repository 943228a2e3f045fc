"""gap-detector: finds gaps longer than max_gap in a timestamped series and stores them."""
from datetime import datetime, timezone

from phoenix import deps
from phoenix.series import parse_series, positive_number
from phoenix.web import App, HttpError, serve


def find_gaps(points, max_gap):
    """Gaps between consecutive (sorted) points whose distance exceeds max_gap seconds."""
    gaps = []
    for (t0, _), (t1, _) in zip(points, points[1:]):
        if t1 - t0 > max_gap:
            gaps.append({"start": t0, "end": t1, "duration": t1 - t0})
    return gaps


def iso(t):
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def build(name):
    app = App(name)
    app.check("db", deps.check_db)

    def detect(body):
        points = parse_series(body, require_values=False)
        max_gap = positive_number(body, "max_gap", 60)
        gaps = find_gaps(points, max_gap)
        try:
            conn = deps.db_connect()
            try:
                with conn, conn.cursor() as cur:
                    for g in gaps:
                        cur.execute(
                            "INSERT INTO detections (gap_start, gap_end, duration_seconds, max_gap_seconds)"
                            " VALUES (to_timestamp(%s), to_timestamp(%s), %s, %s) RETURNING id",
                            (g["start"], g["end"], g["duration"], max_gap),
                        )
                        g["id"] = cur.fetchone()[0]
            finally:
                conn.close()
        except Exception as e:  # noqa: BLE001
            raise HttpError(503, "database unavailable: %s" % str(e).strip()[:200])
        app.metrics.inc("phoenix_gaps_detected_total", "Gaps found and stored.", len(gaps))
        for g in gaps:
            g["start_iso"], g["end_iso"] = iso(g["start"]), iso(g["end"])
        return 200, {"points": len(points), "max_gap": max_gap, "count": len(gaps), "gaps": gaps}

    app.route("POST", "/detect", detect)
    return app


def main(name, port):
    serve(build(name), port)
