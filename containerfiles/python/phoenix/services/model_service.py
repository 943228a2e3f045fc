"""model-service: linear model whose coefficients live in a volume, seeded once from a read-only fixture."""
import json
import os
import threading

from phoenix.web import App, HttpError, serve

MODEL_DIR = os.environ.get("MODEL_DIR", "/var/lib/model")
SEED_FILE = os.environ.get("MODEL_SEED_FILE", "/etc/phoenix/model/coefficients.json")
FILE_NAME = "coefficients.json"


def validate(model):
    if not isinstance(model, dict):
        raise ValueError("model must be a JSON object")
    coef = model.get("coefficients")
    if not isinstance(coef, list) or not coef or not all(isinstance(c, (int, float)) for c in coef):
        raise ValueError("coefficients must be a non-empty list of numbers")
    if not isinstance(model.get("intercept", 0), (int, float)):
        raise ValueError("intercept must be a number")
    return model


def load_or_seed():
    """Load the volume's copy; when the volume is empty, copy the seed in first (atomically)."""
    path = os.path.join(MODEL_DIR, FILE_NAME)
    source = "volume"
    if not os.path.exists(path):
        with open(SEED_FILE, "rb") as f:
            raw = f.read()
        validate(json.loads(raw))
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        source = "seeded"
    with open(path) as f:
        return validate(json.load(f)), source, path


def build(name):
    app = App(name)
    state = {"model": None, "source": None, "path": None, "error": "not loaded yet"}
    lock = threading.Lock()

    def ensure_loaded():
        with lock:
            if state["model"] is None:
                try:
                    state["model"], state["source"], state["path"] = load_or_seed()
                    state["error"] = None
                    print("model loaded from %s (%s)" % (state["path"], state["source"]), flush=True)
                except Exception as e:  # noqa: BLE001 - retried on the next health check
                    state["error"] = "%s: %s" % (type(e).__name__, e)
            return state["model"]

    def check_model():
        if ensure_loaded() is None:
            raise RuntimeError(state["error"])
        if not os.path.exists(state["path"]):
            raise RuntimeError("%s vanished from the volume" % state["path"])
        return {"source": state["source"], "version": state["model"].get("version")}

    app.check("model", check_model)

    def predict(body):
        model = ensure_loaded()
        if model is None:
            raise HttpError(503, "model not loaded: %s" % state["error"])
        x = body.get("x") if isinstance(body, dict) else None
        coef = model["coefficients"]
        if not isinstance(x, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x):
            raise HttpError(400, 'expected {"x": [numbers]}')
        if len(x) != len(coef):
            raise HttpError(400, "x has %d features, the model expects %d" % (len(x), len(coef)))
        y = float(model.get("intercept", 0)) + sum(c * v for c, v in zip(coef, x))
        app.metrics.inc("phoenix_predictions_total", "Predictions served.")
        return 200, {"y": y, "model_version": model.get("version"), "features": model.get("features")}

    app.route("POST", "/predict", predict)
    return app, ensure_loaded


def main(name, port):
    app, ensure_loaded = build(name)
    serve(app, port, on_start=ensure_loaded)
