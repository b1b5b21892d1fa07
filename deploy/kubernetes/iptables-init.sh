#!/bin/sh
# zmtpfw sidecar: redirect inbound TCP for an unpatched worker's ports to zmtpfw.
#
#   iptables-init.sh [--check | --delete] WORKER_PORT:ZMTPFW_PORT ...
#   ZMTPFW_REDIRECTS="5555:15555 30001:31001" iptables-init.sh
#
# Run once per pod, in the pod's network namespace, before the worker starts
# (the Kubernetes init container in sidecar-pod.yaml does; so does the netns
# end-to-end test, which is what proves these exact rules).
#
# What it installs, in the nat table of the pod's network namespace (IPv4, and
# IPv6 too when the namespace has IPv6):
#
#   PREROUTING ! -i lo -p tcp -j ZMTPFW_REDIRECT
#   ZMTPFW_REDIRECT -p tcp --dport WORKER_PORT -j REDIRECT --to-ports ZMTPFW_PORT
#
# - PREROUTING sees only packets that arrive on an interface, i.e. from outside
#   the pod. Connections made inside the pod (zmtpfw dialling the worker on
#   127.0.0.1, or the worker's own processes talking to each other) go through
#   OUTPUT and are never redirected, so zmtpfw does not loop back to itself.
#   "! -i lo" states that explicitly.
# - REDIRECT rewrites only the destination: zmtpfw sees the real client
#   address and port, so its allow / allow_pickle_from lists work unchanged.
# - Only new connections are NATed. Run it before the worker accepts anything.
# - Idempotent: the chain is flushed and refilled, the jump added once, so an
#   init container that is restarted leaves exactly one set of rules.
#
# Needs CAP_NET_ADMIN in the pod's network namespace, nothing else, with the
# nf_tables backend of iptables (Debian 12's default, what the image ships).
# --check exits 0 if the rules are in place, 1 if not; --delete removes them.
set -eu

CHAIN=ZMTPFW_REDIRECT
MODE=install

usage() {
	sed -n '2,5p' "$0" >&2
	exit 2
}

case "${1:-}" in
--check) MODE=check; shift ;;
--delete) MODE=delete; shift ;;
-h | --help) usage ;;
esac

# Port mappings come from the arguments, else from $ZMTPFW_REDIRECTS.
if [ "$#" -eq 0 ]; then
	# shellcheck disable=SC2086 # word splitting of the list is intended
	set -- ${ZMTPFW_REDIRECTS:-}
fi
[ "$#" -gt 0 ] || { echo "iptables-init: no WORKER_PORT:ZMTPFW_PORT mapping given" >&2; usage; }

is_port() {
	case "$1" in
	'' | *[!0-9]*) return 1 ;;
	esac
	[ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

seen=" "
for m in "$@"; do
	w=${m%%:*}
	f=${m#*:}
	if [ "$w" = "$m" ] || ! is_port "$w" || ! is_port "$f"; then
		echo "iptables-init: bad mapping '$m' (want WORKER_PORT:ZMTPFW_PORT, 1..65535)" >&2
		exit 2
	fi
	if [ "$w" = "$f" ]; then
		echo "iptables-init: '$m': zmtpfw must listen on a port other than the worker's" >&2
		exit 2
	fi
	case "$seen" in
	*" $w "*) echo "iptables-init: worker port $w mapped twice" >&2; exit 2 ;;
	esac
	seen="$seen$w "
done

# IPv6 rules too when the namespace has IPv6 at all (a pod of a dual-stack
# cluster, or any pod whose kernel did not disable it): otherwise a worker
# that also binds [::] would stay reachable over IPv6.
families="iptables"
if [ -e /proc/net/if_inet6 ] && [ "${ZMTPFW_IPV6:-auto}" != off ]; then
	families="iptables ip6tables"
fi

for ipt in $families; do
	command -v "$ipt" >/dev/null 2>&1 || { echo "iptables-init: $ipt not found" >&2; exit 1; }
	case "$MODE" in
	install)
		"$ipt" -w -t nat -N "$CHAIN" 2>/dev/null || true
		"$ipt" -w -t nat -F "$CHAIN"
		for m in "$@"; do
			"$ipt" -w -t nat -A "$CHAIN" -p tcp --dport "${m%%:*}" -j REDIRECT --to-ports "${m#*:}"
		done
		"$ipt" -w -t nat -C PREROUTING ! -i lo -p tcp -j "$CHAIN" 2>/dev/null ||
			"$ipt" -w -t nat -A PREROUTING ! -i lo -p tcp -j "$CHAIN"
		echo "iptables-init: $ipt: redirecting $*"
		;;
	check)
		"$ipt" -w -t nat -C PREROUTING ! -i lo -p tcp -j "$CHAIN" 2>/dev/null ||
			{ echo "iptables-init: $ipt: PREROUTING jump to $CHAIN missing" >&2; exit 1; }
		for m in "$@"; do
			"$ipt" -w -t nat -C "$CHAIN" -p tcp --dport "${m%%:*}" -j REDIRECT --to-ports "${m#*:}" 2>/dev/null ||
				{ echo "iptables-init: $ipt: no redirect for $m" >&2; exit 1; }
		done
		;;
	delete)
		while "$ipt" -w -t nat -D PREROUTING ! -i lo -p tcp -j "$CHAIN" 2>/dev/null; do :; done
		"$ipt" -w -t nat -F "$CHAIN" 2>/dev/null || true
		"$ipt" -w -t nat -X "$CHAIN" 2>/dev/null || true
		;;
	esac
done
