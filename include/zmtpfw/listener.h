/* listener: one per route. Accepts, applies the allowlist and the connection
 * limit before anything else happens, then hands the socket to conn. */
#ifndef ZMTPFW_LISTENER_H
#define ZMTPFW_LISTENER_H

#include <stdint.h>

#include "zmtpfw/config.h"
#include "zmtpfw/log.h"

struct event_base;
struct evconnlistener;
struct event;
struct conn;

/* Runtime state of a route; the config it points at outlives it. */
struct listener {
	const struct config_route *cfg; /* immutable snapshot entry */
	struct event_base *base;
	struct evconnlistener *lev;     /* NULL until listener_open */
	struct event *rl_timer;         /* flushes suppressed-log counts each second */
	uint32_t n_conns;               /* live connections, for max_connections */
	struct conn *conns;             /* their list, closed with the listener */
	struct log_ratelimit rl;        /* per-route log rate limiting */
};

/* Bind and listen; logs "listening". Returns 0 or -1 (logged). */
int listener_open(struct listener *l, const struct config_route *cfg, struct event_base *base)
	__attribute__((warn_unused_result));
void listener_close(struct listener *l);

#endif
