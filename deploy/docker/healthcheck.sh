#!/bin/bash
# Container health probe for zmtpfw: GET /healthz (or /readyz) from zmtpfw's
# metrics listener; exit 0 on HTTP 200, 1 otherwise.
#
#   healthcheck.sh [healthz|readyz]
#
# ZMTPFW_METRICS   HOST:PORT of `metrics.listen` in the config
#                  (default 127.0.0.1:9464, the image's shipped config)
#                  "off": metrics are disabled in the mounted config; the
#                  probe then only checks that zmtpfw runs as PID 1.
# ZMTPFW_HEALTH_TIMEOUT  seconds (default 3)
#
# Needs nothing but bash (its /dev/tcp) and coreutils' timeout, so the image
# carries no HTTP client. Used by the Dockerfile's HEALTHCHECK and by the
# exec probes in deploy/kubernetes/*.yaml.
set -u
what=${1:-healthz}
case "$what" in
healthz | readyz) ;;
*) echo "usage: $0 [healthz|readyz]" >&2; exit 2 ;;
esac
addr=${ZMTPFW_METRICS:-127.0.0.1:9464}
if [ "$addr" = off ]; then
	[ "$(cat /proc/1/comm 2>/dev/null)" = zmtpfw ]
	exit
fi
host=${addr%:*}
port=${addr##*:}
host=${host#[}
host=${host%]}
# shellcheck disable=SC2016 # $1..$3 expand in the inner bash, not here
exec timeout "${ZMTPFW_HEALTH_TIMEOUT:-3}" bash -c '
	exec 3<>"/dev/tcp/$1/$2" || exit 1
	printf "GET /%s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3
	IFS= read -r status <&3 || exit 1
	case "$status" in
	"HTTP/1."[01]" 200"*) exit 0 ;;
	*) echo "zmtpfw /$3: ${status%$'\''\r'\''}" >&2; exit 1 ;;
	esac
' healthcheck "$host" "$port" "$what"
