/* listener: one per route. Accepts, applies the allowlist and the connection
 * limits before anything else happens, then hands the socket to conn. A
 * listener outlives its socket: after a reload removes its route it stops
 * accepting ("retired") and is freed once its last connection closes. */
#ifndef ZMTPFW_LISTENER_H
#define ZMTPFW_LISTENER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "zmtpfw/config.h"
#include "zmtpfw/log.h"

struct event_base;
struct evconnlistener;
struct event;
struct conn;
struct listener_peer;
struct listener_share;
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
	struct config *owner;           /* that snapshot (a config_ref hold while referenced) */
	struct route *route;            /* handed to each connection; outlives them */
	struct evconnlistener *lev;     /* NULL once retired */
	struct event *resume_timer;     /* re-enables accepting after an accept error */
	struct event *probe_timer;      /* next upstream probe */
	struct event *probe_ev;         /* probe connect in progress */
	int probe_fd;                   /* -1 when no probe runs */
	enum listener_probe probe;      /* upstream reachability for /readyz */
	uint32_t n_conns;               /* this loop's live connections of the route */
	TAILQ_HEAD(listener_conns, conn) conns; /* their list: only listener.c walks it */
	struct listener_share *share;   /* the route's counts across event loops */
	bool retired;                   /* route gone from the config: no accepts */
	int thread;                     /* event loop, for the logs; -1 when alone */
};

/* What every event loop's listener of one route shares, so the limits are
 * exact across loops: the live connections (max_connections), the
 * per-source counts (max_connections_per_peer) and the log rate limiter
 * (its rates are the route's, however many loops). Reference-counted: each
 * listener holds one, the creator one until it lets go. */
struct listener_share {
	_Atomic uint32_t refs;
	_Atomic uint32_t n_conns;       /* every loop's live connections of the route */
	pthread_mutex_t lock;           /* peers */
	struct listener_peer *peers[LISTENER_PEER_BUCKETS]; /* live connections per source */
	pthread_mutex_t rl_lock;        /* rl */
	struct log_ratelimit rl;        /* the route's log lines, every loop's */
};
struct listener_share *listener_share_new(void) __attribute__((warn_unused_result));
void listener_share_put(struct listener_share *sh);

/* A bound, not yet listening, socket for a route's address (SO_REUSEADDR,
 * SO_KEEPALIVE; SO_REUSEPORT when several event loops each bind it), or
 * -1 (logged). */
int listener_bind(const struct config_route *cfg, bool reuseport)
	__attribute__((warn_unused_result));

/* Listen on fd (from listener_bind; closed on failure) on base and take a
 * hold on owner and share; logs "listening" (with thread when thread >= 0).
 * NULL on failure (logged). */
struct listener *listener_open(const struct config_route *cfg, struct config *owner,
			       struct event_base *base, bool probe_upstream, int fd,
			       struct listener_share *share, int thread)
	__attribute__((warn_unused_result));

/* Take over a new snapshot's entry for the same listen address. Existing
 * connections keep their sockets; the new limits and policy apply to what
 * they do next (the route's generation tells them), the allowlist to new
 * connections (and, with close_disallowed, to live ones as well). */
void listener_update(struct listener *l, const struct config_route *cfg,
		     struct config *owner, bool probe_upstream, bool close_disallowed);

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
