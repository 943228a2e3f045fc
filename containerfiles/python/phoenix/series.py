"""Validation of the time series that travel between services."""
from datetime import datetime

from phoenix.web import HttpError


def parse_time(t):
    if isinstance(t, bool):
        raise ValueError("boolean is not a timestamp")
    if isinstance(t, (int, float)):
        return float(t)
    if isinstance(t, str):
        s = t.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        return datetime.fromisoformat(s).timestamp()
    raise ValueError("timestamp must be a number (epoch seconds) or an ISO-8601 string")


def parse_series(body, require_values=True):
    """Return [(t_seconds, v)] sorted by time, from {"series": [{"t":..,"v":..}, ...]}."""
    if not isinstance(body, dict) or not isinstance(body.get("series"), list):
        raise HttpError(400, 'expected a JSON object with a "series" list')
    points = []
    for i, p in enumerate(body["series"]):
        if not isinstance(p, dict) or "t" not in p:
            raise HttpError(400, "series[%d]: expected an object with t and v" % i)
        try:
            t = parse_time(p["t"])
        except ValueError as e:
            raise HttpError(400, "series[%d].t: %s" % (i, e))
        v = p.get("v")
        if require_values and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise HttpError(400, "series[%d].v: expected a number" % i)
        points.append((t, v))
    points.sort(key=lambda tv: tv[0])
    return points


def positive_number(body, key, default):
    v = body.get(key, default) if isinstance(body, dict) else default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise HttpError(400, "%s must be a positive number" % key)
    return float(v)
