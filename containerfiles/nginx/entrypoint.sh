#!/bin/sh
# Render nginx.conf with the resolver(s) this container was given, then run nginx in the foreground.
set -eu

RUNDIR=/tmp/nginx
TEMPLATE=/etc/phoenix/nginx.conf.template

mkdir -p "$RUNDIR"
# Only the FIRST nameserver: Podman lists aardvark-dns (gateway) first and then the host's
# upstream servers, and nginx round-robins over all resolvers it is given, so the upstream
# servers would answer NXDOMAIN for service names half of the time. Docker has 127.0.0.11 only.
# IPv6 addresses go in brackets, a zone id is dropped.
resolvers=$(awk '$1 == "nameserver" {
    ns = $2; sub(/%.*/, "", ns)
    if (ns ~ /:/) ns = "[" ns "]"
    print ns; exit
}' /etc/resolv.conf)
if [ -z "$resolvers" ]; then
    echo "phoenix-nginx: no nameserver in /etc/resolv.conf" >&2
    exit 1
fi
sed "s|__RESOLVERS__|$resolvers|" "$TEMPLATE" > "$RUNDIR/nginx.conf"
echo "phoenix-nginx: resolver $resolvers" >&2

# -e: the compiled-in error log path (/var/log/nginx) is not writable for us.
nginx -e stderr -p "$RUNDIR" -c "$RUNDIR/nginx.conf" -t -q
exec nginx -e stderr -p "$RUNDIR" -c "$RUNDIR/nginx.conf" -g 'daemon off;'
