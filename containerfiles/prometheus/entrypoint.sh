#!/bin/sh
# Writes the scrape configuration the harness passed in the environment, then runs Prometheus.
# The root filesystem is read-only: configuration and data go to the /tmp tmpfs.
set -eu
if [ -z "${HYDRA_PROMETHEUS_CONFIG:-}" ]; then
  echo "hydra-prometheus: HYDRA_PROMETHEUS_CONFIG is empty: nothing to scrape" >&2
  exit 2
fi
umask 077
printf '%s\n' "$HYDRA_PROMETHEUS_CONFIG" > /tmp/prometheus.yml
exec /usr/bin/prometheus \
  --config.file=/tmp/prometheus.yml \
  --storage.tsdb.path=/tmp/tsdb \
  --storage.tsdb.retention.time=1h \
  --web.listen-address=0.0.0.0:9090 \
  "$@"
