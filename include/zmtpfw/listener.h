/* listener: one per route. Accepts, applies the allowlist and the connection
 * limits before anything else happens, then hands the socket to conn. A
 * listener outlives its socket: after a reload removes its route it stops
 * accepting ("retired") and is freed once its last connection closes. */
#ifndef ZMTPFW_LISTENER_H
#define ZMTPFW_LISTENER_H

#include <stdbool.h>
#include <stdint.h>

#include "zmtpfw/config.h"
#include "zmtpfw/log.h"

struct event_base;
struct evconnlistener;
struct event;
struct conn;
struct metrics_route;
struct listener_peer;

/* Result of the last upstream probe (for /readyz). */
enum listener_probe {
	LISTENER_PROBE_OFF = 0,  /* not probing: readiness ignores the upstream */
	LISTENER_PROBE_UNKNOWN,  /* first probe not finished yet */
	LISTENER_PROBE_UP,       /* last dial succeeded */
	LISTENER_PROBE_DOWN,     /* last dial failed or timed out */
};

#define LISTENER_PEER_BUCKETS 256

/* Runtime state of a route. */
struct listener {
	struct listener *next;          /* the server's list */
	const struct config_route *cfg; /* entry of the config snapshot in force for it */
	const struct config *owner;     /* that snapshot (kept alive while referenced) */
	struct event_base *base;
	struct evconnlistener *lev;     /* NULL once retired */
	struct event *rl_timer;         /* flushes suppressed-log counts each second */
	struct event *resume_timer;     /* re-enables accepting after an accept error */
	struct event *probe_timer;      /* next upstream probe */
	struct event *probe_ev;         /* probe connect in progress */
	int probe_fd;                   /* -1 when no probe runs */
	enum listener_probe probe;      /* upstream reachability for /readyz */
	uint32_t n_conns;               /* live connections, for max_connections */
	struct conn *conns;             /* their list */
	struct listener_peer *peers[LISTENER_PEER_BUCKETS]; /* live connections per source */
	struct log_ratelimit rl;        /* per-route log rate limiting */
	struct metrics_route *m;        /* counters of the route name */
	bool retired;                   /* route gone from the config: no accepts */
};

/* Allocate, bind and listen; logs "listening". NULL on failure (logged). */
struct listener *listener_open(const struct config_route *cfg, const struct config *owner,
			       struct event_base *base, bool probe_upstream)
	__attribute__((warn_unused_result));

/* Take over a new snapshot's entry for the same listen address. Existing
 * connections keep their sockets; the new limits and policy apply to what
 * they do next, the allowlist to new connections (and, with close_disallowed,
 * to live ones as well). */
void listener_update(struct listener *l, const struct config_route *cfg,
		     const struct config *owner, bool probe_upstream, bool close_disallowed);

/* Stop accepting; connections continue. */
void listener_retire(struct listener *l);

/* Close every connection with `reason`, then free everything. */
void listener_free(struct listener *l, const char *reason);

/* A connection closed: release its per-peer slot. */
void listener_conn_gone(struct listener *l, const struct sockaddr_storage *peer);

#endif
