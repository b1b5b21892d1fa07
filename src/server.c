/* server: routes, metrics endpoint, reload and drain. */
#include "zmtpfw/server.h"

#include <errno.h>
#include <stdatomic.h>
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
#include "zmtpfw/loop.h"
#include "zmtpfw/metrics.h"

struct server {
	struct event_base *base;         /* the main thread's: loop 0, signals, /metrics */
	struct config *cfg;              /* in force (one config_ref hold) */
	struct loop *loops[CONFIG_MAX_THREADS]; /* loop 0 runs on the main thread */
	unsigned n_loops;
	struct metrics_http *http;       /* NULL when metrics are off */
	bool draining;
	bool stopped;                    /* a second signal cut the drain short */
	/* Every route's share (counts across loops) while any loop's listener
	 * holds it, retired routes' included: counts in the logs come from
	 * here, not from whatever loop 0 still has. */
	struct server_share *shares;
	size_t n_shares, cap_shares;
};
struct server_share {
	struct config_addr listen;
	struct listener_share *sh;       /* one hold, the server's */
	bool retired;                    /* its route left the config */
};

static bool server_same_addr(const struct config_addr *a, const struct config_addr *b)
{
	return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

static bool server_has(const struct config *c, const struct config_addr *listen)
{
	for (size_t i = 0; c && i < c->n_routes; i++)
		if (server_same_addr(&c->routes[i].listen, listen))
			return true;
	return false;
}

/* Drop shares no listener holds any more (theirs was the last hold). */
static void server_prune_shares(struct server *s)
{
	size_t k = 0;
	for (size_t i = 0; i < s->n_shares; i++) {
		if (atomic_load(&s->shares[i].sh->refs) == 1)
			listener_share_put(s->shares[i].sh);
		else
			s->shares[k++] = s->shares[i];
	}
	s->n_shares = k;
}

/* Every loop's connections, retired routes' included. */
static uint32_t server_conns(const struct server *s)
{
	uint32_t n = 0;
	for (size_t i = 0; i < s->n_shares; i++)
		n += atomic_load(&s->shares[i].sh->n_conns);
	return n;
}

/* A reload removed these routes: one line each, with the connections
 * they still have on every loop. */
static void server_log_removed(struct server *s, const struct config *nc)
{
	for (size_t i = 0; i < s->cfg->n_routes; i++) {
		const struct config_route *r = &s->cfg->routes[i];
		if (server_has(nc, &r->listen))
			continue;
		uint32_t n = 0;
		for (size_t k = 0; k < s->n_shares; k++) {
			struct server_share *x = &s->shares[k];
			if (!x->retired && server_same_addr(&x->listen, &r->listen)) {
				x->retired = true;
				n = atomic_load(&x->sh->n_conns);
			}
		}
		struct log_ctx ctx = { .route = r->name };
		log_event(LOG_INFO, &ctx, NULL, "route-removed", LOG_STR("listen", r->listen.text),
			  LOG_U64("connections", n), LOG_END);
	}
}

/* /readyz: loop 0's listeners (this thread's) stand for every loop's. */
static bool server_ready(void *arg, struct evbuffer *why)
{
	struct server *s = arg;
	bool ok = true;

	if (s->draining) {
		evbuffer_add_printf(why, "draining\n");
		return false;
	}
	for (const struct listener *l = loop_listeners(s->loops[0]); l; l = l->next) {
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

unsigned server_threads(const struct config *cfg)
{
	long n = cfg->threads ? (long)cfg->threads : sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > CONFIG_MAX_THREADS ? CONFIG_MAX_THREADS : (unsigned)n;
}

static void server_free_applies(struct loop_apply **a, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		loop_apply_free(a[i]);
		a[i] = NULL;
	}
}

/* One apply per loop for nc: every route whose address no loop listens on
 * yet is bound here, once per loop (SO_REUSEPORT when several), so a bind
 * failure is known before anything changes. 0, or -1 with err written. */
static int server_prepare(struct server *s, struct config *nc, struct loop_apply **a, char *err,
			  size_t errlen)
{
	size_t n_new = 0;
	for (size_t i = 0; i < nc->n_routes; i++)
		n_new += !server_has(s->cfg, &nc->routes[i].listen);
	server_prune_shares(s);
	if (s->n_shares + n_new > s->cap_shares) { /* room now: the commit cannot fail */
		size_t cap = s->n_shares + n_new;
		struct server_share *x = realloc(s->shares, cap * sizeof(*x));
		if (!x) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		s->shares = x;
		s->cap_shares = cap;
	}
	for (unsigned t = 0; t < s->n_loops; t++) {
		a[t] = calloc(1, sizeof(*a[t]) + n_new * sizeof(a[t]->new_routes[0]));
		if (!a[t]) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		a[t]->cfg = nc;
		config_ref(nc);
		a[t]->probe = t == 0 && server_probe(nc);
		a[t]->close_disallowed = nc->reload_closes_disallowed;
	}
	for (size_t i = 0; i < nc->n_routes; i++) {
		const struct config_route *r = &nc->routes[i];
		if (server_has(s->cfg, &r->listen))
			continue;
		struct listener_share *sh = listener_share_new();
		for (unsigned t = 0; t < s->n_loops; t++) {
			struct loop_route *lr = &a[t]->new_routes[a[t]->n_new++];
			lr->cfg = r;
			lr->fd = sh ? listener_bind(r, s->n_loops > 1) : -1;
			lr->share = sh;
			if (sh)
				atomic_fetch_add(&sh->refs, 1);
			if (lr->fd < 0) {
				listener_share_put(sh);
				snprintf(err, errlen, "%s:%d: route '%s': cannot listen on %s",
					 nc->path, r->line, r->name, r->listen.text);
				return -1;
			}
		}
		listener_share_put(sh);
	}
	return 0;
}

/* Hand each loop its apply (loop 0 now, on this thread); keep a hold on
 * each new route's share (room was made by server_prepare). */
static void server_commit(struct server *s, struct loop_apply **a)
{
	for (size_t k = 0; k < a[0]->n_new; k++) {
		struct listener_share *sh = a[0]->new_routes[k].share;
		atomic_fetch_add(&sh->refs, 1);
		s->shares[s->n_shares++] = (struct server_share){ .listen = a[0]->new_routes[k].cfg->listen,
								  .sh = sh };
	}
	for (unsigned t = 0; t < s->n_loops; t++) {
		loop_post_apply(s->loops[t], a[t]);
		a[t] = NULL;
	}
}

struct server *server_start(struct event_base *base, struct config *cfg, unsigned n_loops)
{
	struct server *s = calloc(1, sizeof(*s));
	struct loop_apply *a[CONFIG_MAX_THREADS] = { NULL };
	char err[1024];

	if (!s) {
		config_free(cfg);
		return NULL;
	}
	config_ref(cfg); /* the server's hold, first: a failed prepare drops only the applies' */
	s->base = base;
	s->n_loops = n_loops < 1 ? 1 : n_loops > CONFIG_MAX_THREADS ? CONFIG_MAX_THREADS : n_loops;
	for (unsigned t = 0; t < s->n_loops; t++)
		if (!(s->loops[t] = loop_new(t, t == 0 ? base : NULL, s->n_loops == 1))) {
			log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "threads"),
				  LOG_U64("thread", t),
				  LOG_STR("detail", "cannot make the event loop (out of memory)"), LOG_END);
			goto fail;
		}
	conn_set_max_memory(cfg->max_memory);
	server_mark_live(cfg);
	if (server_prepare(s, cfg, a, err, sizeof(err)) < 0)
		goto fail;
	s->cfg = cfg;
	cfg = NULL;
	if (loop_start(s->loops[0]) < 0) /* logged */
		goto fail;
	server_commit(s, a);
	if (s->cfg->metrics_enabled &&
	    !(s->http = metrics_http_start(base, &s->cfg->metrics_listen, server_ready, s)))
		goto fail;
	/* every socket is bound: drop privileges before any other thread runs */
	if (server_drop_privileges(s->cfg) < 0)
		goto fail;
	for (unsigned t = 1; t < s->n_loops; t++)
		if (loop_start(s->loops[t]) < 0) /* logged */
			goto fail;
	return s;
fail:
	server_free_applies(a, s->n_loops);
	config_unref(cfg); /* NULL once the server holds it */
	server_free(s);
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
	struct loop_apply *a[CONFIG_MAX_THREADS] = { NULL };
	struct metrics_http *http = s->http;
	size_t kept = 0, opened = 0, retired = 0;

	if (s->draining)
		return server_reload_fail("draining");
	if (s->cfg->path[0] == '\0')
		return server_reload_fail("running from command-line flags: nothing to reload");
	nc = config_load_file(s->cfg->path, err, sizeof(err));
	if (!nc)
		return server_reload_fail(err);
	config_ref(nc); /* the server's hold */

	/* Restart-only keys first: kept routes take their running values with
	 * the rest of the new snapshot. */
	config_kw_keep_restart_only(nc, s->cfg, server_restart_only, NULL);
	/* Bind everything new first: a failure leaves the running set as is. */
	if (server_prepare(s, nc, a, err, sizeof(err)) < 0)
		goto fail;
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

	/* Commit. */
	for (size_t i = 0; i < nc->n_routes; i++)
		server_has(s->cfg, &nc->routes[i].listen) ? kept++ : opened++;
	for (size_t i = 0; i < s->cfg->n_routes; i++)
		retired += !server_has(nc, &s->cfg->routes[i].listen);
	server_log_removed(s, nc);
	server_commit(s, a);
	if (metrics_moved) {
		if (s->http)
			metrics_http_stop(s->http);
		s->http = nc->metrics_enabled ? http : NULL;
	}
	log_setup(nc->log_level, nc->log_format);
	config_unref(s->cfg);
	s->cfg = nc;
	conn_set_max_memory(nc->max_memory);
	server_mark_live(nc);
	log_event(LOG_INFO, NULL, NULL, "reload", LOG_STR("result", "ok"),
		  LOG_STR("file", nc->path), LOG_U64("routes", nc->n_routes), LOG_U64("kept", kept),
		  LOG_U64("added", opened), LOG_U64("removed", retired), LOG_END);
	metrics_add_reason(metrics_global(), METRICS_RELOADS, METRICS_DIR_NONE, "success", 1);
	return 0;
fail:
	server_free_applies(a, s->n_loops);
	if (http && http != s->http)
		metrics_http_stop(http);
	config_unref(nc);
	return server_reload_fail(err);
}

/* ---- drain ---- */

void server_drain(struct server *s)
{
	if (s->draining) { /* a second signal: stop now */
		s->stopped = true;
		event_base_loopexit(s->base, NULL);
		for (unsigned t = 1; t < s->n_loops; t++)
			event_base_loopexit(loop_base(s->loops[t]), NULL);
		return;
	}
	s->draining = true;
	log_event(LOG_INFO, NULL, NULL, "drain", LOG_STR("result", "started"),
		  LOG_U64("connections", server_conns(s)),
		  LOG_U64("timeout_ms", s->cfg->drain_timeout_ms), LOG_END);
	/* each loop drains its own connections and leaves its event loop;
	 * loop 0 leaving ends main's dispatch, server_free waits for the rest */
	for (unsigned t = s->n_loops; t-- > 0;)
		loop_post_drain(s->loops[t], s->cfg->drain_timeout_ms);
}

void server_free(struct server *s)
{
	uint64_t forced = 0;
	if (!s)
		return;
	for (unsigned t = s->n_loops; t-- > 0;)
		forced += loop_stop(s->loops[t]);
	if (s->draining && !s->stopped)
		log_event(LOG_INFO, NULL, NULL, "drain", LOG_STR("result", "done"),
			  LOG_U64("forced", forced), LOG_END);
	if (s->http)
		metrics_http_stop(s->http);
	for (size_t i = 0; i < s->n_shares; i++)
		listener_share_put(s->shares[i].sh);
	free(s->shares);
	config_unref(s->cfg);
	free(s);
}
