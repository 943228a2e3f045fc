#!/bin/bash
# Healthy when nginx's own /health answers 200 (no curl in the image: bash /dev/tcp).
exec timeout 3 bash -c '
exec 3<>/dev/tcp/127.0.0.1/8080 || exit 1
printf "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
IFS= read -r status <&3 || exit 1
case "$status" in "HTTP/1."?" 200 "*) exit 0 ;; *) echo "$status"; exit 1 ;; esac
'
