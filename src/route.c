/* route: the runtime state of one route that its connections share. */
#include "zmtpfw/route.h"

#include <stdlib.h>

#include <event2/event.h>

#include "zmtpfw/metrics.h"

/* A burst that stops must still be accounted for: flush each second. */
static void route_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct route *r = arg;
	struct log_ctx ctx = { .route = r->cfg->name };
	log_ratelimit_flush(&ctx, r->rl);
}

struct route *route_new(const struct config_route *cfg, struct event_base *base, int thread,
			struct log_ratelimit *rl,
			void (*conn_gone)(void *owner, struct conn *c), void *owner)
{
	struct timeval sec = { .tv_sec = 1, .tv_usec = 0 };
	struct route *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->cfg = cfg;
	r->m = metrics_route_get(cfg->name);
	r->base = base;
	r->thread = thread;
	r->rl = rl;
	r->conn_gone = conn_gone;
	r->owner = owner;
	r->rl_timer = event_new(base, -1, EV_PERSIST, route_on_tick, r);
	if (!r->rl_timer || event_add(r->rl_timer, &sec) < 0) {
		route_free(r);
		return NULL;
	}
	return r;
}

void route_update(struct route *r, const struct config_route *cfg)
{
	r->cfg = cfg;
	r->m = metrics_route_get(cfg->name);
	r->gen++;
}

void route_free(struct route *r)
{
	if (!r)
		return;
	if (r->rl_timer)
		event_free(r->rl_timer);
	free(r);
}
