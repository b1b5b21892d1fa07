/* route: what a connection sees of the route it was accepted on (nginx's
 * srv_conf in ngx_stream_session_t): the config in force, the metrics
 * entry, the log rate limiter (one per route, shared by its event loops),
 * the event loop and whether the process is
 * draining. conn and relay reach their route only through it, never the
 * listener. The listener owns it and keeps it until its last connection
 * ended (a listener is freed only once empty, or after closing them), so
 * connections hold a plain pointer. A reload swaps `cfg` and bumps `gen`;
 * each connection notices the new generation itself. */
#ifndef ZMTPFW_ROUTE_H
#define ZMTPFW_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "zmtpfw/config.h"
#include "zmtpfw/log.h"

struct conn;
struct event;
struct event_base;
struct metrics_route;

struct route {
	const struct config_route *cfg; /* entry of the config snapshot in force */
	struct metrics_route *m;        /* counters of cfg->name (accept, reject) */
	struct event_base *base;        /* the loop its connections run on */
	int thread;                     /* that loop's index, for the logs; -1 when alone */
	struct log_ratelimit *rl;       /* the route's log rate limiter (every loop's) */
	struct event *rl_timer;         /* flushes suppressed-log counts each second
					   (every loop's: the first to come reports them) */
	uint64_t gen;                   /* bumped by each reload: connections compare */
	bool draining;                  /* SIGTERM: client messages stop at a boundary
					   (one flag per loop, not a global) */
	/* The owner (listener) is told when a connection ended: its list and
	 * per-peer counts are its own. An upcall, so conn never sees it. */
	void (*conn_gone)(void *owner, struct conn *c);
	void *owner;
};

/* Make the runtime of a route on one loop (thread, -1 when alone): rl is
 * the route's limiter, kept by the caller for the route's life. Starts the
 * log flush timer on base. NULL when out of memory. */
struct route *route_new(const struct config_route *cfg, struct event_base *base, int thread,
			struct log_ratelimit *rl,
			void (*conn_gone)(void *owner, struct conn *c), void *owner)
	__attribute__((warn_unused_result));

/* A reload: the new config entry applies to what connections do next
 * (frame limits from the next header, mode, trust and scanning from the
 * next client message). */
void route_update(struct route *r, const struct config_route *cfg);

void route_free(struct route *r);

#endif
