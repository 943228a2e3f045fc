"""Container HEALTHCHECK probe: exit 0 when the service's own /health answers 200."""
import sys
import urllib.error
import urllib.request

from phoenix import current


def main():
    _, _, port = current()
    url = "http://127.0.0.1:%d/health" % port
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            ok = resp.status == 200
            body = resp.read(512)
    except urllib.error.HTTPError as e:
        ok, body = False, e.read(512)
    except Exception as e:  # connection refused, timeout, ...
        ok, body = False, str(e).encode()
    sys.stdout.write(body.decode("utf-8", "replace") + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
