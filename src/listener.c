/* listener: accept loop of one route. The allowlist and the connection limit
 * are applied here, on the address alone, before the worker is dialled and
 * before a byte is read from the peer. */
#include "zmtpfw/listener.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "zmtpfw/cidr.h"
#include "zmtpfw/conn.h"

#define LISTENER_BACKLOG 1024

static struct log_ctx listener_ctx(const struct listener *l)
{
	return (struct log_ctx){ .route = l->cfg->name };
}

static void listener_on_accept(struct evconnlistener *lev, evutil_socket_t fd,
			       struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	const struct config_route *cfg = l->cfg;
	uint64_t id = conn_next_id();
	char peer[64];
	bool allowed = cidr_list_match(&cfg->allow, sa);
	struct log_ctx ctx = { .route = cfg->name, .conn = id, .peer = peer };

	conn_format_peer(sa, peer, sizeof(peer));
	if (!allowed && cfg->mode != CONFIG_MODE_LOG_ONLY) {
		log_event(LOG_WARN, &ctx, &l->rl, "reject", LOG_STR("reason", "not-allowed"), LOG_END);
		close(fd);
		return;
	}
	if (l->n_conns >= cfg->max_connections) {
		log_event(LOG_WARN, &ctx, &l->rl, "reject", LOG_STR("reason", "max-connections"),
			  LOG_U64("limit", cfg->max_connections), LOG_END);
		close(fd);
		return;
	}
	conn_start(l, id, fd, sa, (socklen_t)salen, !allowed);
}

static void listener_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	evconnlistener_enable(l->lev);
}

/* accept() failing (EMFILE, ENFILE, ENOMEM) would fire again at once: pause
 * the listener briefly instead of spinning. */
static void listener_on_error(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	struct log_ctx ctx = listener_ctx(l);
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100 * 1000 };
	int err = errno;

	log_event(LOG_ERROR, &ctx, &l->rl, "error", LOG_STR("reason", "accept"),
		  LOG_STR("detail", strerror(err)), LOG_END);
	evconnlistener_disable(lev);
	event_base_once(l->base, -1, EV_TIMEOUT, listener_on_resume, l, &tv);
}

static void listener_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	struct log_ctx ctx = listener_ctx(l);
	log_ratelimit_flush(&ctx, &l->rl);
}

int listener_open(struct listener *l, const struct config_route *cfg, struct event_base *base)
{
	struct log_ctx ctx = { .route = cfg->name };
	struct timeval sec = { .tv_sec = 1, .tv_usec = 0 };

	memset(l, 0, sizeof(*l));
	l->cfg = cfg;
	l->base = base;
	l->lev = evconnlistener_new_bind(base, listener_on_accept, l,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						 LEV_OPT_CLOSE_ON_EXEC,
					 LISTENER_BACKLOG, (const struct sockaddr *)&cfg->listen.sa,
					 (int)cfg->listen.len);
	if (!l->lev) {
		log_event(LOG_ERROR, &ctx, NULL, "error", LOG_STR("reason", "listen"),
			  LOG_STR("listen", cfg->listen.text), LOG_STR("detail", strerror(errno)),
			  LOG_END);
		return -1;
	}
	evconnlistener_set_error_cb(l->lev, listener_on_error);
	l->rl_timer = event_new(base, -1, EV_PERSIST, listener_on_tick, l);
	if (!l->rl_timer || event_add(l->rl_timer, &sec) < 0)
		return -1;
	log_event(LOG_INFO, &ctx, NULL, "listening", LOG_STR("listen", cfg->listen.text),
		  LOG_STR("upstream", cfg->upstream.text),
		  LOG_STR("mode", cfg->mode == CONFIG_MODE_LOG_ONLY ? "log-only" : "enforce"),
		  LOG_STR("pickle", cfg->pickle == CONFIG_PICKLE_ALLOW ? "allow" : "drop"), LOG_END);
	return 0;
}

void listener_close(struct listener *l)
{
	while (l->conns) {
		l->conns->close_reason = "shutdown";
		conn_close(l->conns);
	}
	if (l->lev)
		evconnlistener_free(l->lev);
	if (l->rl_timer)
		event_free(l->rl_timer);
	l->lev = NULL;
	l->rl_timer = NULL;
}
