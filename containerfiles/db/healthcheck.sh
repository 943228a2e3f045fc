#!/bin/sh
# Healthy when the server accepts TCP connections on the container's network port, i.e. after
# first-start initialisation is over (the init-time server listens on the socket only).
exec pg_isready -q -h 127.0.0.1 -p 5432 -U "${POSTGRES_USER:-phoenix}" -d "${POSTGRES_DB:-phoenix}" -t 3
