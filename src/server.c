/* server: routes, metrics endpoint, reload and drain. */
#include "zmtpfw/server.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "zmtpfw/config_kw.h"
#include "zmtpfw/conn.h"
#include "zmtpfw/listener.h"
#include "zmtpfw/log.h"
#include "zmtpfw/metrics.h"

/* A config snapshot kept alive while a listener still points into it. */
struct server_snapshot {
	struct server_snapshot *next;
	struct config *cfg;
};

struct server {
	struct event_base *base;
	struct config *cfg;              /* in force */
	struct server_snapshot *old;     /* earlier snapshots still referenced */
	struct listener *listeners;      /* live and retired */
	struct metrics_http *http;       /* NULL when metrics are off */
	struct event *sweep;             /* frees retired listeners once empty (1 s) */
	struct event *drain_tick;        /* CONN_DRAIN_TICK_MS while draining */
	struct event *drain_deadline;    /* drain_timeout_ms */
	bool draining;
	uint64_t drain_forced;           /* connections cut by the deadline */
};

static uint32_t server_conns(const struct server *s)
{
	uint32_t n = 0;
	for (const struct listener *l = s->listeners; l; l = l->next)
		n += l->n_conns;
	return n;
}

static bool server_referenced(const struct server *s, const struct config *c)
{
	for (const struct listener *l = s->listeners; l; l = l->next)
		if (l->owner == c)
			return true;
	return false;
}

/* Free retired listeners without connections, then unreferenced snapshots. */
static void server_collect(struct server *s)
{
	for (struct listener **pp = &s->listeners; *pp;) {
		struct listener *l = *pp;
		if (l->retired && l->n_conns == 0) {
			*pp = l->next;
			listener_free(l, "shutdown");
		} else {
			pp = &l->next;
		}
	}
	for (struct server_snapshot **pp = &s->old; *pp;) {
		struct server_snapshot *o = *pp;
		if (!server_referenced(s, o->cfg)) {
			*pp = o->next;
			config_free(o->cfg);
			free(o);
		} else {
			pp = &o->next;
		}
	}
}

static void server_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	server_collect(arg);
}

static bool server_ready(void *arg, struct evbuffer *why)
{
	struct server *s = arg;
	bool ok = true;

	if (s->draining) {
		evbuffer_add_printf(why, "draining\n");
		return false;
	}
	for (const struct listener *l = s->listeners; l; l = l->next) {
		if (l->retired)
			continue;
		if (!l->lev) {
			evbuffer_add_printf(why, "route %s: not listening\n", l->cfg->name);
			ok = false;
		}
		if (l->probe == LISTENER_PROBE_UNKNOWN || l->probe == LISTENER_PROBE_DOWN) {
			evbuffer_add_printf(why, "route %s: upstream %s %s\n", l->cfg->name,
					    l->cfg->upstream.text,
					    l->probe == LISTENER_PROBE_DOWN ? "unreachable"
									     : "not probed yet");
			ok = false;
		}
	}
	return ok;
}

static bool server_same_addr(const struct config_addr *a, const struct config_addr *b)
{
	return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

static void server_mark_live(const struct config *c)
{
	metrics_routes_begin_update();
	for (size_t i = 0; i < c->n_routes; i++) {
		struct metrics_route *m = metrics_route_get(c->routes[i].name);
		if (m)
			metrics_route_set_live(m);
	}
}

static bool server_probe(const struct config *c)
{
	return c->metrics_enabled && c->metrics_probe_upstream;
}

/* user = "NAME": after every socket is bound, never regain root. */
static int server_drop_privileges(const struct config *c)
{
	if (c->user[0] == '\0')
		return 0;
	if (geteuid() != 0) {
		log_event(LOG_INFO, NULL, NULL, "privileges", LOG_STR("user", c->user),
			  LOG_STR("detail", "not started as root: user ignored"), LOG_END);
		return 0;
	}
	errno = 0;
	struct passwd *pw = getpwnam(c->user);
	if (pw == NULL) {
		log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "user"),
			  LOG_STR("user", c->user),
			  LOG_STR("detail", errno ? strerror(errno) : "no such user"), LOG_END);
		return -1;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "user"),
			  LOG_STR("user", c->user), LOG_STR("detail", strerror(errno)), LOG_END);
		return -1;
	}
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "user"),
			  LOG_STR("detail", "root could be regained"), LOG_END);
		return -1;
	}
	log_event(LOG_INFO, NULL, NULL, "privileges", LOG_STR("user", c->user),
		  LOG_U64("uid", pw->pw_uid), LOG_U64("gid", pw->pw_gid), LOG_END);
	return 0;
}

struct server *server_start(struct event_base *base, struct config *cfg)
{
	struct server *s = calloc(1, sizeof(*s));
	struct timeval sec = { 1, 0 };

	if (!s) {
		config_free(cfg);
		return NULL;
	}
	s->base = base;
	s->cfg = cfg;
	conn_set_max_memory(cfg->max_memory);
	server_mark_live(cfg);
	for (size_t i = 0; i < cfg->n_routes; i++) {
		struct listener *l = listener_open(&cfg->routes[i], cfg, base, server_probe(cfg));
		if (!l)
			goto fail;
		l->next = s->listeners;
		s->listeners = l;
	}
	if (cfg->metrics_enabled &&
	    !(s->http = metrics_http_start(base, &cfg->metrics_listen, server_ready, s)))
		goto fail;
	s->sweep = event_new(base, -1, EV_PERSIST, server_on_sweep, s);
	if (!s->sweep || event_add(s->sweep, &sec) < 0)
		goto fail;
	if (server_drop_privileges(cfg) < 0)
		goto fail;
	return s;
fail:
	server_free(s);
	return NULL;
}

/* ---- reload ---- */

static struct listener *server_find(struct server *s, const struct config_addr *listen)
{
	for (struct listener *l = s->listeners; l; l = l->next)
		if (!l->retired && server_same_addr(&l->cfg->listen, listen))
			return l;
	return NULL;
}

/* A key the table marks restart-only changed in the file: say so, by
 * name; config_kw keeps the running value in the new snapshot. */
static void server_restart_only(void *arg, const char *key, const char *route)
{
	struct log_ctx ctx = { .route = route };
	char detail[160];
	snprintf(detail, sizeof(detail), "%s: a reload does not apply this key, restart to "
		 "change it; the running value stays in force", key);
	log_event(LOG_WARN, route ? &ctx : NULL, NULL, "reload", LOG_STR("result", "warning"),
		  LOG_STR("key", key), LOG_STR("detail", detail), LOG_END);
}

static int server_reload_fail(const char *detail)
{
	log_event(LOG_ERROR, NULL, NULL, "reload", LOG_STR("result", "failed"),
		  LOG_STR("detail", detail), LOG_END);
	metrics_add_reason(metrics_global(), METRICS_RELOADS, METRICS_DIR_NONE, "failure", 1);
	return -1;
}

int server_reload(struct server *s)
{
	char err[1024];
	struct config *nc;
	struct listener *added = NULL;
	struct metrics_http *http = s->http;
	size_t kept = 0, opened = 0, retired = 0;

	if (s->draining)
		return server_reload_fail("draining");
	if (s->cfg->path[0] == '\0')
		return server_reload_fail("running from command-line flags: nothing to reload");
	nc = config_load_file(s->cfg->path, err, sizeof(err));
	if (!nc)
		return server_reload_fail(err);

	/* Bind everything new first: a failure leaves the running set as is. */
	for (size_t i = 0; i < nc->n_routes; i++) {
		if (server_find(s, &nc->routes[i].listen))
			continue;
		struct listener *l = listener_open(&nc->routes[i], nc, s->base, server_probe(nc));
		if (!l) {
			snprintf(err, sizeof(err), "%s:%d: route '%s': cannot listen on %s",
				 nc->path, nc->routes[i].line, nc->routes[i].name,
				 nc->routes[i].listen.text);
			goto fail;
		}
		l->next = added;
		added = l;
		opened++;
	}
	bool metrics_moved = nc->metrics_enabled != s->cfg->metrics_enabled ||
			     (nc->metrics_enabled &&
			      !server_same_addr(&nc->metrics_listen, &s->cfg->metrics_listen));
	if (metrics_moved && nc->metrics_enabled) {
		http = metrics_http_start(s->base, &nc->metrics_listen, server_ready, s);
		if (!http) {
			snprintf(err, sizeof(err), "%s: metrics: cannot listen on %s", nc->path,
				 nc->metrics_listen.text);
			goto fail;
		}
	}

	/* Commit. Restart-only keys first: kept routes take their running
	 * values with the rest of the new snapshot. */
	config_kw_keep_restart_only(nc, s->cfg, server_restart_only, NULL);
	for (struct listener *l = s->listeners; l; l = l->next) {
		if (l->retired)
			continue;
		const struct config_route *r = NULL;
		for (size_t i = 0; i < nc->n_routes && !r; i++)
			if (server_same_addr(&nc->routes[i].listen, &l->cfg->listen))
				r = &nc->routes[i];
		if (r) {
			listener_update(l, r, nc, server_probe(nc), nc->reload_closes_disallowed);
			kept++;
		} else {
			struct log_ctx ctx = { .route = l->cfg->name };
			log_event(LOG_INFO, &ctx, NULL, "route-removed",
				  LOG_STR("listen", l->cfg->listen.text),
				  LOG_U64("connections", l->n_conns), LOG_END);
			listener_retire(l);
			retired++;
		}
	}
	while (added) {
		struct listener *l = added;
		added = l->next;
		l->next = s->listeners;
		s->listeners = l;
	}
	if (metrics_moved) {
		if (s->http)
			metrics_http_stop(s->http);
		s->http = nc->metrics_enabled ? http : NULL;
	}
	log_setup(nc->log_level, nc->log_format);
	struct server_snapshot *o = malloc(sizeof(*o));
	if (o) {
		o->cfg = s->cfg;
		o->next = s->old;
		s->old = o;
	} else if (!server_referenced(s, s->cfg)) {
		config_free(s->cfg);
	} /* else: leaks one snapshot rather than freeing one in use */
	s->cfg = nc;
	conn_set_max_memory(nc->max_memory);
	server_mark_live(nc);
	server_collect(s);
	log_event(LOG_INFO, NULL, NULL, "reload", LOG_STR("result", "ok"),
		  LOG_STR("file", nc->path), LOG_U64("routes", nc->n_routes), LOG_U64("kept", kept),
		  LOG_U64("added", opened), LOG_U64("removed", retired), LOG_END);
	metrics_add_reason(metrics_global(), METRICS_RELOADS, METRICS_DIR_NONE, "success", 1);
	return 0;
fail:
	while (added) {
		struct listener *l = added;
		added = l->next;
		listener_free(l, "shutdown");
	}
	if (http && http != s->http)
		metrics_http_stop(http);
	config_free(nc);
	return server_reload_fail(err);
}

/* ---- drain ---- */

static void server_drain_done(struct server *s)
{
	event_del(s->drain_tick);
	event_del(s->drain_deadline);
	log_event(LOG_INFO, NULL, NULL, "drain", LOG_STR("result", "done"),
		  LOG_U64("forced", s->drain_forced), LOG_END);
	event_base_loopexit(s->base, NULL);
}

static void server_on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	for (struct listener *l = s->listeners; l; l = l->next) {
		struct conn *c = l->conns, *next;
		for (; c; c = next) {
			next = c->next;
			conn_drain_tick(c);
		}
	}
	if (server_conns(s) == 0)
		server_drain_done(s);
}

static void server_on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	for (struct listener *l = s->listeners; l; l = l->next)
		while (l->conns) {
			l->conns->close_reason = "drain-timeout";
			conn_close(l->conns);
			s->drain_forced++;
		}
	server_drain_done(s);
}

void server_drain(struct server *s)
{
	struct timeval tick = { 0, CONN_DRAIN_TICK_MS * 1000 };
	struct timeval deadline = { s->cfg->drain_timeout_ms / 1000,
				    (s->cfg->drain_timeout_ms % 1000) * 1000 };

	if (s->draining) { /* a second signal: stop now */
		event_base_loopexit(s->base, NULL);
		return;
	}
	s->draining = true;
	log_event(LOG_INFO, NULL, NULL, "drain", LOG_STR("result", "started"),
		  LOG_U64("connections", server_conns(s)),
		  LOG_U64("timeout_ms", s->cfg->drain_timeout_ms), LOG_END);
	for (struct listener *l = s->listeners; l; l = l->next)
		listener_retire(l);
	conn_drain_begin();
	s->drain_tick = event_new(s->base, -1, EV_PERSIST, server_on_drain_tick, s);
	s->drain_deadline = evtimer_new(s->base, server_on_drain_deadline, s);
	if (!s->drain_tick || !s->drain_deadline || event_add(s->drain_tick, &tick) < 0 ||
	    event_add(s->drain_deadline, &deadline) < 0) {
		event_base_loopexit(s->base, NULL);
		return;
	}
	server_on_drain_tick(-1, 0, s); /* idle connections go at once */
}

void server_free(struct server *s)
{
	if (!s)
		return;
	while (s->listeners) {
		struct listener *l = s->listeners;
		s->listeners = l->next;
		listener_free(l, "shutdown");
	}
	if (s->http)
		metrics_http_stop(s->http);
	if (s->sweep)
		event_free(s->sweep);
	if (s->drain_tick)
		event_free(s->drain_tick);
	if (s->drain_deadline)
		event_free(s->drain_deadline);
	while (s->old) {
		struct server_snapshot *o = s->old;
		s->old = o->next;
		config_free(o->cfg);
		free(o);
	}
	config_free(s->cfg);
	free(s);
}
