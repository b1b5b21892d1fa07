#!/usr/bin/env bash
# Build the container images for real and prove the runtime image by running
# zmtpfw inside it against real peers (CI runs this; root, Debian 12).
#
#   scripts/image-test.sh
#
# 1. base: `debootstrap --variant=minbase bookworm` from the Debian mirror apt
#    is configured with (read from /etc/apt/sources.list*), imported with
#    `podman import` as localhost/debian:12-slim. The image is
#    kept in the image store in $ZMTPFW_IMAGE_CACHE (default
#    /var/cache/zmtpfw-image), labelled with a key of the mirror,
#    debootstrap's version and the ISO week: a machine rebuilds it at most
#    weekly, never from another mirror, and a new base drops every cached
#    layer built on the old one (so cached apt installs are at most a week old).
# 2. both Dockerfile targets with `buildah bud --layers --isolation chroot`,
#    vfs storage in that store (the build-deps and iptables layers are reused
#    while scripts/build-image.sh is unchanged), Docker format (OCI images
#    would drop the HEALTHCHECK).
# 3. in the runtime image (`buildah from` + `buildah run --isolation chroot`,
#    as the image's USER 10001): `zmtpfw -t` on the shipped config; then
#    scripts/demo.py with zmtpfw started from the image on the host network
#    in front of a pyzmq worker on the host (the exploit lands directly, is
#    dropped through zmtpfw, legitimate messages arrive, log and metrics
#    agree), during which the image's own HEALTHCHECK command must succeed.
# 4. the iptables-init image: its entrypoint run (chroot into the mounted
#    image) inside a new network namespace with NET_ADMIN as its only
#    capability (it must fail without); `--check` must then pass, the
#    namespace's nat table hold the REDIRECT rules, the host's be unchanged.
# `podman run` is not used: this sandbox refuses its setrlimit calls.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${ZMTPFW_IMAGE_CACHE:-/var/cache/zmtpfw-image}
PY=/usr/bin/python3
TAG=image-test
IMG=localhost/zmtpfw:$TAG
INIT_IMG=localhost/zmtpfw-iptables-init:$TAG
DEPS_IMG=localhost/zmtpfw-build-deps:$TAG
BASE=localhost/debian:12-slim
T0=$SECONDS

log() { echo "image-test: [$((SECONDS - T0))s] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

need=()
for p in buildah podman debootstrap iptables iproute2 python3-zmq python3-msgpack; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Debian mirror apt uses: the first "deb URL bookworm" line, or the
# URIs: of the deb822 stanza whose Suites: include bookworm.
mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk '$1 == "deb" { u = $2; if (u ~ /^\[/) u = $3; for (i = 2; i <= NF; i++) if ($i == "bookworm") { print u; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk 'BEGIN { RS = ""; FS = "\n" }
		{
			u = ""; s = 0
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
				if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) s = 1
			}
			if (u != "" && s) { print u; exit }
		}' "$f"
	done
}
MIRROR=$(mirror | head -1)
[ -n "$MIRROR" ] || die "no bookworm mirror in /etc/apt/sources.list*"

WORK=$(mktemp -d /var/tmp/zmtpfw-image-test.XXXXXX)
chmod 755 "$WORK"
NETNS=zmtpfw-imgtest-$$
# One persistent image store, one run at a time (flock): it holds the base
# image and buildah's layer cache (--layers: a layer is reused only when its
# parent and its instruction, COPY contents included, are the same).
STORE=$CACHE/storage
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9
B=(buildah --root "$STORE" --runroot "$CACHE/run" --storage-driver vfs)
P=(podman --root "$STORE" --runroot "$CACHE/run" --storage-driver vfs)
MOUNTS=()
cleanup() {
	local m
	for m in "${MOUNTS[@]}"; do umount -R "$m" 2>/dev/null || true; done
	ip netns del "$NETNS" 2>/dev/null || true
	"${B[@]}" rm --all >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

# The previous run's runtime image and build-stage layers change with every
# commit: drop them (slow on vfs, so here rather than at the end: a fresh CI
# machine has none). Kept: the base, build-deps and iptables-init images,
# whose layers this run reuses.
"${B[@]}" rm --all >/dev/null 2>&1 || true
"${B[@]}" rmi "$IMG" >/dev/null 2>&1 || true
"${B[@]}" rmi --prune >/dev/null 2>&1 || true

# --- 1. base image -----------------------------------------------------------
key=$(printf '%s\n' "$MIRROR" "$(dpkg-query -W -f='${Version}' debootstrap)" "$(dpkg --print-architecture)" \
	"$(date -u +%G-W%V)" | sha256sum | cut -c1-16)
# Each run leaves its own layers behind (vfs stores every layer whole):
# past 10 GiB, or with a base of another key, the store starts afresh.
have=$("${P[@]}" image inspect --format '{{index .Labels "zmtpfw.base-key"}}' "$BASE" 2>/dev/null || true)
if [ "$have" != "$key" ] || [ "$(du -s --block-size=1G "$STORE" 2>/dev/null | cut -f1)" -gt 10 ]; then
	[ -d "$STORE" ] && log "base: new key or store over 10 GiB: emptying $STORE"
	rm -rf "$STORE" "$CACHE/run" "$CACHE"/bookworm-minbase-*.tar
	log "base: debootstrap --variant=minbase bookworm (mirror from apt's sources)"
	debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
		{ tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap"; }
	# What the official slim image also leaves out; apt lists come back with
	# the Dockerfile's own apt-get update.
	rm -rf "$WORK/rootfs"/var/cache/apt/archives/*.deb "$WORK/rootfs"/var/lib/apt/lists/*
	tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/base.tar" .
	rm -rf "$WORK/rootfs"
	"${P[@]}" import --quiet --change "LABEL zmtpfw.base-key=$key" "$WORK/base.tar" "$BASE" >/dev/null
	rm -f "$WORK/base.tar"
	log "base: imported as $BASE (key $key)"
else
	log "base: $BASE (key $key) from $STORE"
fi

# --- 2. both targets ---------------------------------------------------------
bud() {
	"${B[@]}" bud --layers --isolation chroot --format docker --build-arg DEBIAN_IMAGE=$BASE "$@" . \
		>"$WORK/bud.log" 2>&1 || { tail -40 "$WORK/bud.log" >&2; die "buildah bud $*"; }
}
# The build-deps stage stays tagged, so neither the prune below nor the
# next run's build loses it.
log "building the build-deps stage (cached while scripts/build-image.sh is unchanged)"
bud --target build-deps -t "$DEPS_IMG"
log "building the runtime image (build stage: compile, unit tests)"
bud -t "$IMG"
log "building the iptables-init image"
bud --target iptables-init -t "$INIT_IMG"
"${B[@]}" images

# One field of an image's Docker config, as JSON.
config() {
	"${B[@]}" inspect --type image "$1" |
		"$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["Docker"]["config"].get(sys.argv[1])))' "$2"
}

# --- 3. the runtime image ----------------------------------------------------
ctr=$("${B[@]}" from --quiet "$IMG")
user=$(config "$IMG" User)
[ "$user" = '"10001:10001"' ] || die "image USER is $user, want 10001:10001"
health=$(config "$IMG" Healthcheck)
# {"Test": ["CMD", "/usr/local/libexec/zmtpfw/healthcheck", "healthz"], ...} -> the command
mapfile -t hc < <("$PY" -c 'import json, sys; t = json.loads(sys.argv[1])["Test"]; assert t[0] == "CMD", t
print("\n".join(t[1:]))' "$health") || die "the image has no HEALTHCHECK CMD: $health"
[ ${#hc[@]} -gt 0 ] || die "the image has no HEALTHCHECK CMD: $health"
log "HEALTHCHECK: ${hc[*]}"

RUN=("${B[@]}" run --isolation chroot --network host)
log "zmtpfw -t on the shipped config, inside the image as uid $("${RUN[@]}" "$ctr" -- id -u)"
"${RUN[@]}" "$ctr" -- /usr/local/bin/zmtpfw -t -c /etc/zmtpfw/zmtpfw.conf
[ "$("${RUN[@]}" "$ctr" -- id -u)" = 10001 ] || die "buildah run is not using the image's USER"

# zmtpfw from the image, on the host network, reading the demo's config
# through a bind mount of its scratch directory (same path inside).
demo=$WORK/demo
mkdir -p "$demo"
log "zmtpfw from the image in front of a pyzmq worker on the host (scripts/demo.py)"
"$PY" scripts/demo.py --dir "$demo" \
	--fw-cmd "${RUN[*]} -v $demo:$demo:ro $ctr -- /usr/local/bin/zmtpfw" \
	--health-cmd "${RUN[*]} --env ZMTPFW_METRICS={metrics} $ctr -- ${hc[*]}" ||
	die "demo against the image's zmtpfw"

# --- 4. the iptables-init image in a network namespace ----------------------
ictr=$("${B[@]}" from --quiet "$INIT_IMG")
mnt=$("${B[@]}" mount "$ictr")
entry=$(config "$INIT_IMG" Entrypoint)
[ "$entry" = '["/usr/local/bin/zmtpfw-iptables-init"]' ] || die "iptables-init entrypoint is $entry"
for d in proc dev sys; do
	mount --rbind "/$d" "$mnt/$d"
	mount --make-rslave "$mnt/$d"
	MOUNTS=("$mnt/$d" "${MOUNTS[@]}")
done
host_nat=$(iptables -w -t nat -S 2>&1)
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
log "iptables-init image: entrypoint in network namespace $NETNS"
# As the pod runs it: no capability but NET_ADMIN (and SYS_CHROOT, for the
# chroot into the image), no_new_privs. Without NET_ADMIN it must fail.
confined=(setpriv --inh-caps=-all --no-new-privs)
if ip netns exec "$NETNS" "${confined[@]}" --bounding-set=-all,+sys_chroot \
	chroot "$mnt" /usr/local/bin/zmtpfw-iptables-init 5555:15555 >/dev/null 2>&1; then
	die "iptables-init succeeded without NET_ADMIN"
fi
ip netns exec "$NETNS" "${confined[@]}" --bounding-set=-all,+net_admin,+sys_chroot \
	chroot "$mnt" /usr/local/bin/zmtpfw-iptables-init 5555:15555 30001:31001
ip netns exec "$NETNS" chroot "$mnt" /usr/local/bin/zmtpfw-iptables-init --check 5555:15555 30001:31001 ||
	die "iptables-init --check after install"
rules=$(ip netns exec "$NETNS" chroot "$mnt" iptables -w -t nat -S ZMTPFW_REDIRECT)
printf '    %s\n' "${rules//$'\n'/$'\n'    }"
grep -q -- '--dport 5555 -j REDIRECT --to-ports 15555' <<<"$rules" || die "REDIRECT rule missing"
# The host's own nat table must be as it was.
[ "$(iptables -w -t nat -S 2>&1)" = "$host_nat" ] || die "the host's nat table changed"
for m in "${MOUNTS[@]}"; do umount -R "$m"; done
MOUNTS=()
"${B[@]}" umount "$ictr" >/dev/null

log "ok: both images built; zmtpfw ran inside the runtime image; the init image's rules are in place"
