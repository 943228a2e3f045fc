"""Phoenix Hydra reference services: one package, one image per service.

The image is built with ``--build-arg SERVICE=<name>``; ``python3 -m phoenix``
reads ``PHOENIX_SERVICE`` and runs that service's module on its port.
"""

# service name -> (module under phoenix.services, default container port)
SERVICES = {
    "gap-detector": ("gap_detector", 5000),
    "recurrent-processor": ("recurrent_processor", 8000),
    "analysis-engine": ("analysis_engine", 3000),
    "model-service": ("model_service", 8081),
    "rubik-agent": ("rubik_agent", 9000),
}


def resolve(name):
    """Return (module name, port) for a service name, or raise SystemExit."""
    if name not in SERVICES:
        raise SystemExit(
            "unknown service %r (PHOENIX_SERVICE / build arg SERVICE); expected one of: %s"
            % (name, ", ".join(sorted(SERVICES)))
        )
    return SERVICES[name]


def current():
    """(service name, module, port) of the service this process runs."""
    import os

    name = os.environ.get("PHOENIX_SERVICE", "")
    module, port = resolve(name)
    port = int(os.environ.get("PHOENIX_PORT", port))
    return name, module, port
