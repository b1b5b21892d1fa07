/* metrics: the registry of per-route series, their Prometheus text rendering
 * (exposition format 0.0.4) and the evhttp endpoint serving /metrics,
 * /healthz and /readyz.
 *
 * Counting is a plain add into the route entry (metrics_add, inline) or, for
 * series with a reason, a walk of a short per-route list. Nothing is
 * formatted until a scrape asks for it. Every metric is described once, by
 * METRICS_TABLE in the header; the tables below are generated from it.
 *
 * Route entries live as long as the process: a reload that removes a route
 * keeps its counters (Prometheus counters must be monotonic, and retired
 * listeners still count into the entry until their last connection ends). */
#include "zmtpfw/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "zmtpfw/log.h"

#ifndef ZMTPFW_VERSION
#define ZMTPFW_VERSION "unknown"
#endif

#define METRICS_HTTP_TIMEOUT_S 10
#define METRICS_HTTP_MAX_HEADERS 4096 /* a scrape request is a few hundred bytes */
#define METRICS_HTTP_MAX_BODY 1024    /* GET has none; small POSTs still get 405 */
#define METRICS_HTTP_BACKLOG 64
/* Open connections at most: scrapers and probes need a handful, and every
 * one is a descriptor the routes may need (an endpoint that takes them all
 * makes the routes' accept() and dials fail). Beyond it accepting pauses
 * until one closes; idle ones close after METRICS_HTTP_TIMEOUT_S. */
#define METRICS_HTTP_MAX_CONNS 32
#define METRICS_OTHER_REASON "other"

enum metrics_type { METRICS_T_counter, METRICS_T_gauge };

/* One row of METRICS_TABLE. */
struct metrics_def {
	const char *name;  /* metric family name */
	const char *type;  /* "counter" or "gauge", for # TYPE */
	bool gauge;        /* rendered signed, only for live routes */
	unsigned labels;   /* METRICS_L_* */
	const char *help;  /* for # HELP */
};

static const struct metrics_def metrics_defs[METRICS_COUNT] = {
#define METRICS_DEF(id, type, name, labels, help) \
	[METRICS_##id] = { name, #type, METRICS_T_##type == METRICS_T_gauge, labels, help },
	METRICS_TABLE(METRICS_DEF)
#undef METRICS_DEF
};

struct metrics_reason_series {
	struct metrics_reason_series *_Atomic next; /* per-route list, in first-use order */
	enum metrics_id id;                 /* metric it belongs to */
	enum metrics_dir dir;               /* METRICS_DIR_NONE without a direction label */
	_Atomic uint64_t v;                 /* the count (one writer: the entry's loop) */
	char reason[METRICS_REASON_MAX_LEN]; /* a copy: callers' strings need not outlive us */
};

/* Registry: the first entry of every route name, in creation order
 * (rendering order); the other loops' entries hang off shard_next. Changed
 * under metrics_lock, walked by the scraper without it (release/acquire). */
static struct metrics_route *_Atomic metrics_head;
static struct metrics_route *_Atomic *metrics_tail = &metrics_head;
static unsigned metrics_n_routes; /* names, for the bound */
static bool metrics_full_logged; /* "registry full" is logged once */
static struct metrics_route metrics_global_entry; /* no route label; never in the list */
static _Atomic metrics_gauge_fn metrics_gauge_fns[METRICS_COUNT]; /* read at scrape */
static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local unsigned metrics_shard; /* this thread's loop */

#define METRICS_NEXT(p) atomic_load_explicit(&(p), memory_order_acquire)

void metrics_thread_shard(unsigned idx)
{
	metrics_shard = idx;
}

/* ---- registry ---- */

static struct metrics_route *metrics_route_new(const char *name)
{
	struct metrics_route *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->shard = metrics_shard;
	/* Live by default: entries are created for routes of the config being
	 * applied, so a caller that never calls begin_update still sees the
	 * active gauge. */
	r->live = true;
	return r;
}

/* The calling loop's entry among the shards of the name's first entry. */
static struct metrics_route *metrics_route_shard(struct metrics_route *first)
{
	struct metrics_route *r = first, *_Atomic *pp = &first->shard_next;
	if (r->shard == metrics_shard)
		return r;
	for (; (r = METRICS_NEXT(*pp)) != NULL; pp = &r->shard_next)
		if (r->shard == metrics_shard)
			return r;
	if ((r = metrics_route_new(first->name)) != NULL)
		atomic_store_explicit(pp, r, memory_order_release);
	return r;
}

struct metrics_route *metrics_route_get(const char *name)
{
	struct metrics_route *r;

	if (name == NULL)
		name = "";
	pthread_mutex_lock(&metrics_lock);
	for (r = metrics_head; r; r = r->next)
		if (strncmp(r->name, name, sizeof(r->name) - 1) == 0) {
			r = metrics_route_shard(r);
			goto out;
		}
	if (metrics_n_routes >= METRICS_MAX_ROUTES) {
		if (!metrics_full_logged) {
			log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "metrics-full"),
				  LOG_STR("route", name),
				  LOG_U64("limit", METRICS_MAX_ROUTES), LOG_END);
			metrics_full_logged = true;
		}
		goto out; /* r is NULL */
	}
	if ((r = metrics_route_new(name)) == NULL)
		goto out;
	atomic_store_explicit(metrics_tail, r, memory_order_release);
	metrics_tail = &r->next;
	metrics_n_routes++;
out:
	pthread_mutex_unlock(&metrics_lock);
	return r;
}

struct metrics_route *metrics_global(void)
{
	return &metrics_global_entry;
}

void metrics_routes_begin_update(void)
{
	pthread_mutex_lock(&metrics_lock);
	for (struct metrics_route *r = metrics_head; r; r = r->next)
		r->live = false;
	pthread_mutex_unlock(&metrics_lock);
}

void metrics_route_set_live(struct metrics_route *r)
{
	if (r == NULL)
		return;
	/* the name's first entry carries the flag for every shard */
	pthread_mutex_lock(&metrics_lock);
	for (struct metrics_route *f = metrics_head; f; f = f->next)
		if (strcmp(f->name, r->name) == 0)
			f->live = true;
	r->live = true;
	pthread_mutex_unlock(&metrics_lock);
}

/* The entry for (id, dir, reason), created when missing. Past
 * METRICS_MAX_REASONS entries, new reasons share (id, dir, "other"); those
 * extra entries are at most one per (id, dir), so the list stays bounded. */
static struct metrics_reason_series *metrics_reason_find(struct metrics_route *r,
							 enum metrics_id id, enum metrics_dir dir,
							 const char *reason)
{
	struct metrics_reason_series *_Atomic *pp, *s;

	for (;;) {
		for (pp = &r->reasons; (s = *pp) != NULL; pp = &s->next)
			if (s->id == id && s->dir == dir &&
			    strncmp(s->reason, reason, sizeof(s->reason) - 1) == 0)
				return s;
		if (r->n_reasons < METRICS_MAX_REASONS || strcmp(reason, METRICS_OTHER_REASON) == 0)
			break;
		reason = METRICS_OTHER_REASON; /* fold, then look again */
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->id = id;
	s->dir = dir;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	/* append: first-use order, stable across scrapes; published whole to
	 * a scraper walking the list */
	atomic_store_explicit(pp, s, memory_order_release);
	r->n_reasons++;
	return s;
}

void metrics_add_reason(struct metrics_route *r, enum metrics_id id, enum metrics_dir dir,
			const char *reason, uint64_t n)
{
	struct metrics_reason_series *s;

	if (r == NULL || (unsigned)id >= METRICS_COUNT)
		return;
	if ((unsigned)dir >= METRICS_DIR_COUNT || !(metrics_defs[id].labels & METRICS_L_DIR))
		dir = METRICS_DIR_NONE;
	if (!(metrics_defs[id].labels & (METRICS_L_REASON | METRICS_L_RESULT))) {
		metrics_add(r, id, dir, n);
		return;
	}
	if ((s = metrics_reason_find(r, id, dir, reason ? reason : "unknown")) != NULL)
		atomic_store_explicit(&s->v, atomic_load_explicit(&s->v, memory_order_relaxed) + n,
				      memory_order_relaxed);
}

static void metrics_route_clear_reasons(struct metrics_route *r)
{
	struct metrics_reason_series *s, *next;

	for (s = r->reasons; s; s = next) {
		next = s->next;
		free(s);
	}
	r->reasons = NULL;
	r->n_reasons = 0;
}

void metrics_free_all(void)
{
	struct metrics_route *r, *next;

	for (r = metrics_head; r; r = next) {
		next = r->next;
		for (struct metrics_route *sh = r->shard_next, *sn; sh; sh = sn) {
			sn = sh->shard_next;
			metrics_route_clear_reasons(sh);
			free(sh);
		}
		metrics_route_clear_reasons(r);
		free(r);
	}
	metrics_head = NULL;
	metrics_tail = &metrics_head;
	metrics_n_routes = 0;
	metrics_full_logged = false;
	metrics_route_clear_reasons(&metrics_global_entry);
	memset(&metrics_global_entry, 0, sizeof(metrics_global_entry));
}

/* ---- rendering ---- */

/* Label value escaping of the text format: \\, \" and \n. */
static int metrics_put_escaped(struct evbuffer *out, const char *s, bool quote)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = NULL;
		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote)
			esc = "\\\"";
		if (esc == NULL)
			continue;
		if (evbuffer_add(out, run, (size_t)(s - run)) < 0 || evbuffer_add(out, esc, 2) < 0)
			return -1;
		run = s + 1;
	}
	return evbuffer_add(out, run, (size_t)(s - run));
}

static const char *const metrics_dir_names[METRICS_DIR_COUNT] = {
	[METRICS_DIR_UP] = "client_to_worker",
	[METRICS_DIR_DOWN] = "worker_to_client",
};

/* Labels of one series; NULL members are left out. */
struct metrics_labels {
	const char *route;
	const char *direction;
	const char *reason_key; /* "reason" or "result" */
	const char *reason;
	const char *version;
};

static int metrics_put_label(struct evbuffer *out, bool *first, const char *key, const char *v)
{
	if (v == NULL)
		return 0;
	if (evbuffer_add_printf(out, "%s%s=\"", *first ? "{" : ",", key) < 0 ||
	    metrics_put_escaped(out, v, true) < 0 || evbuffer_add(out, "\"", 1) < 0)
		return -1;
	*first = false;
	return 0;
}

static int metrics_put_series(struct evbuffer *out, const struct metrics_def *d,
			      const struct metrics_labels *l, uint64_t v)
{
	bool first = true;

	if (evbuffer_add_printf(out, "%s", d->name) < 0 ||
	    metrics_put_label(out, &first, "route", l->route) < 0 ||
	    metrics_put_label(out, &first, "direction", l->direction) < 0 ||
	    metrics_put_label(out, &first, l->reason_key, l->reason) < 0 ||
	    metrics_put_label(out, &first, "version", l->version) < 0 ||
	    (!first && evbuffer_add(out, "}", 1) < 0))
		return -1;
	/* gauges wrap around 0 in uint64: the two's complement reading is right */
	if (d->gauge)
		return evbuffer_add_printf(out, " %" PRId64 "\n", (int64_t)v) < 0 ? -1 : 0;
	return evbuffer_add_printf(out, " %" PRIu64 "\n", v) < 0 ? -1 : 0;
}

/* Sums over the shards of a name (first and its shard_next chain). */
static uint64_t metrics_sum(const struct metrics_route *first, enum metrics_id id, int dir)
{
	uint64_t n = 0;
	for (const struct metrics_route *r = first; r; r = METRICS_NEXT(r->shard_next))
		n += atomic_load_explicit(&r->v[id][dir], memory_order_relaxed);
	return n;
}

static const struct metrics_reason_series *metrics_reason_in(const struct metrics_route *r,
							     enum metrics_id id, int dir,
							     const char *reason)
{
	for (const struct metrics_reason_series *s = METRICS_NEXT(r->reasons); s;
	     s = METRICS_NEXT(s->next))
		if (s->id == id && (dir < 0 || (int)s->dir == dir) && strcmp(s->reason, reason) == 0)
			return s;
	return NULL;
}

/* dir < 0: any direction (result series have none). */
static uint64_t metrics_reason_sum(const struct metrics_route *first, enum metrics_id id, int dir,
				   const char *reason)
{
	uint64_t n = 0;
	for (const struct metrics_route *r = first; r; r = METRICS_NEXT(r->shard_next)) {
		const struct metrics_reason_series *s = metrics_reason_in(r, id, dir, reason);
		if (s)
			n += atomic_load_explicit(&s->v, memory_order_relaxed);
	}
	return n;
}

/* Reason (or result) series of metric id, summed over the shards of
 * first: each series once, where it first appears (shard order, then
 * first-use order). */
static int metrics_put_reasons(struct evbuffer *out, const struct metrics_def *d,
			       enum metrics_id id, const struct metrics_route *first,
			       const char *route, const char *skip1, const char *skip2)
{
	const char *key = (d->labels & METRICS_L_RESULT) ? "result" : "reason";

	for (const struct metrics_route *r = first; r; r = METRICS_NEXT(r->shard_next))
		for (const struct metrics_reason_series *s = METRICS_NEXT(r->reasons); s;
		     s = METRICS_NEXT(s->next)) {
			bool seen = false;
			if (s->id != id || (skip1 && strcmp(s->reason, skip1) == 0) ||
			    (skip2 && strcmp(s->reason, skip2) == 0))
				continue;
			for (const struct metrics_route *e = first; e != r && !seen;
			     e = METRICS_NEXT(e->shard_next))
				seen = metrics_reason_in(e, id, (int)s->dir, s->reason) != NULL;
			if (seen)
				continue;
			struct metrics_labels l = {
				.route = route,
				.direction = (d->labels & METRICS_L_DIR) ? metrics_dir_names[s->dir]
									 : NULL,
				.reason_key = key,
				.reason = s->reason,
			};
			if (metrics_put_series(out, d, &l,
					       metrics_reason_sum(first, id, (int)s->dir, s->reason)) < 0)
				return -1;
		}
	/* Counted with metrics_add by mistake: show it rather than lose it. */
	for (int dir = 0; dir < METRICS_DIR_COUNT; dir++) {
		uint64_t v = metrics_sum(first, id, dir);
		if (v == 0)
			continue;
		struct metrics_labels l = {
			.route = route,
			.direction = (d->labels & METRICS_L_DIR) ? metrics_dir_names[dir] : NULL,
			.reason_key = key,
			.reason = "none",
		};
		if (metrics_put_series(out, d, &l, v) < 0)
			return -1;
	}
	return 0;
}

/* Series of one metric for one route name (all its shards). */
static int metrics_put_route(struct evbuffer *out, enum metrics_id id,
			     const struct metrics_route *r)
{
	const struct metrics_def *d = &metrics_defs[id];

	if (d->gauge && !r->live)
		return 0; /* a removed route has no current value */
	if (d->labels & METRICS_L_REASON)
		return metrics_put_reasons(out, d, id, r, r->name, NULL, NULL);
	if (d->labels & METRICS_L_DIR) {
		for (int dir = 0; dir < METRICS_DIR_COUNT; dir++) {
			struct metrics_labels l = { .route = r->name,
						    .direction = metrics_dir_names[dir] };
			if (metrics_put_series(out, d, &l, metrics_sum(r, id, dir)) < 0)
				return -1;
		}
		return 0;
	}
	struct metrics_labels l = { .route = r->name };
	return metrics_put_series(out, d, &l, metrics_sum(r, id, 0));
}

static int metrics_put_family(struct evbuffer *out, enum metrics_id id)
{
	const struct metrics_def *d = &metrics_defs[id];
	const struct metrics_route *g = &metrics_global_entry;

	if (evbuffer_add_printf(out, "# HELP %s ", d->name) < 0 ||
	    metrics_put_escaped(out, d->help, false) < 0 ||
	    evbuffer_add_printf(out, "\n# TYPE %s %s\n", d->name, d->type) < 0)
		return -1;
	if (d->labels & METRICS_L_VERSION) {
		struct metrics_labels l = { .version = ZMTPFW_VERSION };
		return metrics_put_series(out, d, &l, 1);
	}
	if (d->labels & METRICS_L_RESULT) {
		/* both results always, so rate() works from the first scrape */
		const char *res[] = { METRICS_RESULT_SUCCESS, METRICS_RESULT_FAILURE };
		for (size_t i = 0; i < 2; i++) {
			struct metrics_labels l = { .reason_key = "result", .reason = res[i] };
			if (metrics_put_series(out, d, &l, metrics_reason_sum(g, id, -1, res[i])) < 0)
				return -1;
		}
		return metrics_put_reasons(out, d, id, g, NULL, res[0], res[1]);
	}
	if (!(d->labels & METRICS_L_ROUTE)) {
		struct metrics_labels l = { 0 };
		metrics_gauge_fn fn = atomic_load_explicit(&metrics_gauge_fns[id], memory_order_acquire);
		return metrics_put_series(out, d, &l, fn ? fn() : metrics_sum(g, id, 0));
	}
	for (const struct metrics_route *r = METRICS_NEXT(metrics_head); r; r = METRICS_NEXT(r->next))
		if (metrics_put_route(out, id, r) < 0)
			return -1;
	return 0;
}

void metrics_gauge_source(enum metrics_id id, metrics_gauge_fn fn)
{
	atomic_store_explicit(&metrics_gauge_fns[id], fn, memory_order_release);
}

int metrics_render(struct evbuffer *out)
{
	for (int id = 0; id < METRICS_COUNT; id++)
		if (metrics_put_family(out, (enum metrics_id)id) < 0)
			return -1;
	return 0;
}

/* ---- HTTP endpoint ---- */

struct metrics_http {
	struct metrics_http *next;  /* live endpoints (two while a reload moves it) */
	struct evhttp *http;        /* the server; owns the bound listener */
	struct event *resume_timer; /* re-enables accepting after an accept error */
	struct evconnlistener *lev; /* the bound socket (owned by http); its callback
				       argument is evhttp's, not ours */
	metrics_ready_fn ready;     /* readiness callback, may be NULL */
	void *ready_arg;
	char listen_text[128];      /* for log lines */
	unsigned n_conns;           /* connections evhttp has open (counted at their
				       bufferevent's creation, uncounted by closecb) */
	bool full;                  /* accepting paused: n_conns reached the cap */
	bool error_paused;          /* accepting paused after accept() failed */
	bool stopping;              /* evhttp_free is closing everything: count nothing */
	struct event *track;        /* runs after evhttp's accept: sets the closecbs */
	struct bufferevent *pending[METRICS_HTTP_MAX_CONNS]; /* created, closecb not yet set */
	unsigned n_pending;
};

/* Every started endpoint: the listener's error callback only gets evhttp's
 * argument, so it finds its endpoint here by listener. */
static struct metrics_http *metrics_http_live;

static void metrics_http_reply(struct evhttp_request *req, int code, const char *reason,
			       const char *ctype, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		/* libevent 2.1 writes the body even for HEAD, which desynchronises
		 * a keep-alive client: announce the length, send nothing. */
		char len[24];
		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
		evhttp_add_header(h, "Content-Length", len);
		evbuffer_drain(body, evbuffer_get_length(body));
	}
	evhttp_send_reply(req, code, reason, body);
}

static void metrics_http_text(struct evhttp_request *req, int code, const char *reason,
			      const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (b && evbuffer_add(b, text, strlen(text)) == 0)
		metrics_http_reply(req, code, reason, "text/plain; charset=utf-8", b);
	else
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
	if (b)
		evbuffer_free(b);
}

static void metrics_http_on_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *b;

	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		return metrics_http_text(req, 405, "Method Not Allowed", "method not allowed\n");
	}
	if (path == NULL)
		return metrics_http_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
	if (strcmp(path, "/healthz") == 0)
		return metrics_http_text(req, HTTP_OK, "OK", "ok\n");
	if (strcmp(path, "/readyz") == 0) {
		if ((b = evbuffer_new()) == NULL)
			return evhttp_send_error(req, HTTP_INTERNAL, NULL);
		struct evbuffer *why = evbuffer_new();
		bool ok = why != NULL && (h->ready == NULL || h->ready(h->ready_arg, why));
		if (evbuffer_add_printf(b, "%s\n", ok ? "ready" : "not ready") < 0 ||
		    (why && evbuffer_add_buffer(b, why) < 0)) {
			evhttp_send_error(req, HTTP_INTERNAL, NULL);
		} else {
			metrics_http_reply(req, ok ? HTTP_OK : 503, ok ? "OK" : "Service Unavailable",
					   "text/plain; charset=utf-8", b);
		}
		if (why)
			evbuffer_free(why);
		evbuffer_free(b);
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		if ((b = evbuffer_new()) == NULL || metrics_render(b) < 0)
			evhttp_send_error(req, HTTP_INTERNAL, NULL);
		else
			metrics_http_reply(req, HTTP_OK, "OK",
					   "text/plain; version=0.0.4; charset=utf-8", b);
		if (b)
			evbuffer_free(b);
		return;
	}
	metrics_http_text(req, HTTP_NOTFOUND, "Not Found", "not found\n");
}

/* Accept while neither the cap nor an accept error pauses it. */
static void metrics_http_accepting(struct metrics_http *h)
{
	int rc = h->full || h->error_paused ? evconnlistener_disable(h->lev)
					    : evconnlistener_enable(h->lev);
	if (rc < 0)
		log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "metrics-accept"),
			  LOG_STR("listen", h->listen_text),
			  LOG_STR("detail", "cannot pause or resume accepting"), LOG_END);
}

static void metrics_http_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	h->error_paused = false;
	metrics_http_accepting(h);
}

static void metrics_http_on_close(struct evhttp_connection *evcon, void *arg)
{
	struct metrics_http *h = arg;

	if (h->stopping || h->n_conns == 0)
		return;
	h->n_conns--;
	if (h->full && h->n_conns < METRICS_HTTP_MAX_CONNS) {
		h->full = false;
		metrics_http_accepting(h);
	}
}

/* evhttp creates each accepted connection's bufferevent here (so each is
 * counted), then the connection around it; once evhttp's accept callback
 * has returned, the track event gives each connection a closecb. libevent
 * 2.1 has no evhttp_set_max_connections. */
static struct bufferevent *metrics_http_on_bev(struct event_base *base, void *arg)
{
	struct metrics_http *h = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

	if (bev == NULL || h->n_pending == METRICS_HTTP_MAX_CONNS)
		return bev; /* not counted: closes by evhttp's timeout like the rest */
	h->pending[h->n_pending++] = bev;
	event_active(h->track, EV_TIMEOUT, 1);
	if (++h->n_conns >= METRICS_HTTP_MAX_CONNS && !h->full) {
		h->full = true;
		log_event(LOG_WARN, NULL, NULL, "error", LOG_STR("reason", "metrics-busy"),
			  LOG_STR("listen", h->listen_text),
			  LOG_U64("connections", h->n_conns), LOG_END);
		metrics_http_accepting(h);
	}
	return bev;
}

static void metrics_http_on_track(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;

	for (unsigned i = 0; i < h->n_pending; i++) {
		void *evcon = NULL;
		bufferevent_getcb(h->pending[i], NULL, NULL, NULL, &evcon);
		if (evcon)
			evhttp_connection_set_closecb(evcon, metrics_http_on_close, h);
		else if (h->n_conns > 0)
			h->n_conns--; /* evhttp did not take it */
	}
	h->n_pending = 0;
}

/* accept() failing (EMFILE...) would fire again at once: pause briefly
 * instead of spinning, as the route listeners do. The argument is evhttp's
 * (evhttp_bind_listener replaced ours), so the endpoint is found by lev. */
static void metrics_http_on_accept_error(struct evconnlistener *lev, void *arg)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100 * 1000 };
	int err = errno;
	struct metrics_http *h = metrics_http_live;

	(void)arg;
	while (h && h->lev != lev)
		h = h->next;
	log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "metrics-accept"),
		  LOG_STR("listen", h ? h->listen_text : "?"), LOG_STR("detail", strerror(err)),
		  LOG_END);
	if (h == NULL) {
		(void)evconnlistener_disable(lev); /* cannot happen: every lev is listed */
		return;
	}
	h->error_paused = true;
	metrics_http_accepting(h);
	if (evtimer_add(h->resume_timer, &tv) < 0) {
		h->error_paused = false; /* never stay deaf: spin rather than stop serving */
		metrics_http_accepting(h);
	}
}

struct metrics_http *metrics_http_start(struct event_base *base, const struct config_addr *listen,
					metrics_ready_fn ready, void *arg)
{
	struct metrics_http *h = calloc(1, sizeof(*h));
	const char *detail = "out of memory";
	int err;

	if (h == NULL)
		goto fail;
	snprintf(h->listen_text, sizeof(h->listen_text), "%s", listen->text);
	h->ready = ready;
	h->ready_arg = arg;
	if (listen->sa.ss_family != AF_INET && listen->sa.ss_family != AF_INET6) {
		detail = "not a TCP address";
		goto fail;
	}
	if ((h->http = evhttp_new(base)) == NULL ||
	    (h->resume_timer = evtimer_new(base, metrics_http_on_resume, h)) == NULL ||
	    (h->track = event_new(base, -1, 0, metrics_http_on_track, h)) == NULL)
		goto fail;
	/* Bind ourselves (the address is already resolved) and hand the
	 * listener to evhttp, which sets its accept callback. */
	h->lev = evconnlistener_new_bind(base, NULL, NULL,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						 LEV_OPT_CLOSE_ON_EXEC,
					 METRICS_HTTP_BACKLOG, (const struct sockaddr *)&listen->sa,
					 (int)listen->len);
	if (h->lev == NULL) {
		err = errno;
		detail = strerror(err);
		goto fail;
	}
	if (evhttp_bind_listener(h->http, h->lev) == NULL) {
		evconnlistener_free(h->lev);
		h->lev = NULL;
		goto fail;
	}
	evconnlistener_set_error_cb(h->lev, metrics_http_on_accept_error);
	evhttp_set_bevcb(h->http, metrics_http_on_bev, h);
	h->next = metrics_http_live;
	metrics_http_live = h;
	/* Every method reaches our callback, which answers 405 itself
	 * (evhttp's own refusal is 501). */
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_headers_size(h->http, METRICS_HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(h->http, METRICS_HTTP_MAX_BODY);
	evhttp_set_timeout(h->http, METRICS_HTTP_TIMEOUT_S);
	evhttp_set_gencb(h->http, metrics_http_on_request, h);
	log_event(LOG_INFO, NULL, NULL, "metrics-listening", LOG_STR("listen", h->listen_text),
		  LOG_END);
	return h;

fail:
	log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "metrics-listen"),
		  LOG_STR("listen", listen->text), LOG_STR("detail", detail), LOG_END);
	metrics_http_stop(h);
	return NULL;
}

void metrics_http_stop(struct metrics_http *h)
{
	if (h == NULL)
		return;
	for (struct metrics_http **pp = &metrics_http_live; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	h->stopping = true;
	if (h->track)
		event_free(h->track);
	if (h->http)
		evhttp_free(h->http); /* frees the bound listener and open connections */
	else if (h->lev)
		evconnlistener_free(h->lev);
	if (h->resume_timer)
		event_free(h->resume_timer);
	free(h);
}
