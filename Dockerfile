# syntax=docker/dockerfile:1
# zmtpfw container image: Debian 12 slim, non-root, runtime libraries only.
#
#   docker build -t zmtpfw:0.1.0 .                          # the proxy (default target)
#   docker build -t zmtpfw-iptables-init:0.1.0 --target iptables-init .
#
# Every RUN step is scripts/build-image.sh, which CI also runs on the host
# (scripts/build-image.sh --destdir DIR build check), so the steps are tested
# even where no Docker engine runs. Mount the real config at
# /etc/zmtpfw/zmtpfw.conf; the shipped one (deploy/docker/zmtpfw.conf) is a
# loopback-only placeholder.

ARG DEBIAN_IMAGE=debian:12-slim

# --- build-deps: compilers and -dev packages (a stage of its own so that
# scripts/image-test.sh can keep it tagged between runs) ----------------------
FROM ${DEBIAN_IMAGE} AS build-deps
WORKDIR /src
COPY scripts/build-image.sh scripts/
RUN scripts/build-image.sh build-deps

# --- build: unit tests, install into /out -------------------------------------
FROM build-deps AS build
COPY . .
RUN scripts/build-image.sh --destdir /out --build-dir /tmp/build build check

# --- iptables-init: the sidecar pod's init container (NET_ADMIN only) ---------
FROM ${DEBIAN_IMAGE} AS iptables-init
WORKDIR /tmp/zmtpfw
COPY scripts/build-image.sh scripts/
COPY deploy/kubernetes/iptables-init.sh deploy/kubernetes/
RUN scripts/build-image.sh iptables-init && rm -rf /tmp/zmtpfw
WORKDIR /
# Runs as root inside the pod's network namespace; the pod grants it only
# CAP_NET_ADMIN. Mappings: arguments or $ZMTPFW_REDIRECTS.
ENTRYPOINT ["/usr/local/bin/zmtpfw-iptables-init"]

# --- runtime (default target) --------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime
COPY scripts/build-image.sh /tmp/build-image.sh
COPY --from=build /out/ /
RUN /tmp/build-image.sh runtime-deps user check && rm /tmp/build-image.sh
USER 10001:10001
EXPOSE 15555 9464
# Reads /healthz from the metrics listener (metrics.listen in the config;
# ZMTPFW_METRICS=HOST:PORT if you moved it, =off if you disabled metrics).
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/libexec/zmtpfw/healthcheck", "healthz"]
# SIGTERM drains in-flight messages, then exits 0; SIGHUP reloads the config.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/zmtpfw"]
CMD ["-c", "/etc/zmtpfw/zmtpfw.conf"]
