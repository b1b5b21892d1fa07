/* listener: one per route. Accepts, applies the allowlist and the connection
 * limits before anything else happens, then hands the socket to conn. A
 * listener outlives its socket: after a reload removes its route it stops
 * accepting ("retired") and is freed once its last connection closes. */
#ifndef ZMTPFW_LISTENER_H
#define ZMTPFW_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "zmtpfw/config.h"

struct event_base;
struct evconnlistener;
struct event;
struct conn;
struct listener_peer;
struct route;

/* Result of the last upstream probe (for /readyz). */
enum listener_probe {
	LISTENER_PROBE_OFF = 0,  /* not probing: readiness ignores the upstream */
	LISTENER_PROBE_UNKNOWN,  /* first probe not finished yet */
	LISTENER_PROBE_UP,       /* last dial succeeded */
	LISTENER_PROBE_DOWN,     /* last dial failed or timed out */
};

#define LISTENER_PEER_BUCKETS 256

/* The accepting side of a route; what its connections see is `route`. */
struct listener {
	struct listener *next;          /* the server's list */
	const struct config_route *cfg; /* entry of the config snapshot in force for it
					   (= route->cfg, read by the server) */
	const struct config *owner;     /* that snapshot (kept alive while referenced) */
	struct route *route;            /* handed to each connection; outlives them */
	struct evconnlistener *lev;     /* NULL once retired */
	struct event *resume_timer;     /* re-enables accepting after an accept error */
	struct event *probe_timer;      /* next upstream probe */
	struct event *probe_ev;         /* probe connect in progress */
	int probe_fd;                   /* -1 when no probe runs */
	enum listener_probe probe;      /* upstream reachability for /readyz */
	uint32_t n_conns;               /* live connections, for max_connections */
	TAILQ_HEAD(listener_conns, conn) conns; /* their list: only listener.c walks it */
	struct listener_peer *peers[LISTENER_PEER_BUCKETS]; /* live connections per source */
	bool retired;                   /* route gone from the config: no accepts */
};

/* Allocate, bind and listen; logs "listening". NULL on failure (logged). */
struct listener *listener_open(const struct config_route *cfg, const struct config *owner,
			       struct event_base *base, bool probe_upstream)
	__attribute__((warn_unused_result));

/* Take over a new snapshot's entry for the same listen address. Existing
 * connections keep their sockets; the new limits and policy apply to what
 * they do next (the route's generation tells them), the allowlist to new
 * connections (and, with close_disallowed, to live ones as well). */
void listener_update(struct listener *l, const struct config_route *cfg,
		     const struct config *owner, bool probe_upstream, bool close_disallowed);

/* Stop accepting; connections continue. */
void listener_retire(struct listener *l);

/* Graceful shutdown: stop accepting, and have the connections take no new
 * client message once at a message boundary (the route drains). */
void listener_drain(struct listener *l);

/* While draining, every CONN_DRAIN_TICK_MS: close the connections that
 * finished (conn_drain_tick). */
void listener_drain_tick(struct listener *l);

/* Close every connection with `reason`; returns how many. */
uint64_t listener_close_all(struct listener *l, const char *reason);

/* Close every connection with `reason`, then free everything. */
void listener_free(struct listener *l, const char *reason);

#endif
