/* listener: accept loop of one route. The allowlist and the connection
 * limits are applied here, on the address alone, before the worker is
 * dialled and before a byte is read from the peer. */
#include "zmtpfw/listener.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "zmtpfw/cidr.h"
#include "zmtpfw/conn.h"
#include "zmtpfw/log.h"
#include "zmtpfw/metrics.h"
#include "zmtpfw/route.h"

#define LISTENER_BACKLOG 1024
#define LISTENER_PROBE_EVERY_MS 2000 /* upstream reachability, for /readyz */
#define LISTENER_PROBE_TIMEOUT_MS 1000

/* Live connections of one source address (port ignored). */
struct listener_peer {
	struct listener_peer *next;
	uint8_t addr[16]; /* IPv4 as mapped IPv6, as cidr does */
	uint32_t n;
};

static struct log_ctx listener_ctx(const struct listener *l)
{
	return (struct log_ctx){ .route = l->cfg->name };
}

static void listener_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

/* Under sh->lock. */
static struct listener_peer **listener_peer_slot(struct listener_share *sh, const uint8_t key[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	struct listener_peer **pp = &sh->peers[h % LISTENER_PEER_BUCKETS];
	while (*pp && memcmp((*pp)->addr, key, 16) != 0)
		pp = &(*pp)->next;
	return pp;
}

/* A connection of this source ended (or never started). */
static void listener_peer_release(struct listener *l, const struct sockaddr *sa)
{
	struct listener_share *sh = l->share;
	uint8_t key[16];
	listener_key(sa, key);
	pthread_mutex_lock(&sh->lock);
	struct listener_peer **pp = listener_peer_slot(sh, key), *p = *pp;
	if (p && --p->n == 0) {
		*pp = p->next;
		free(p);
	}
	atomic_fetch_sub_explicit(&sh->n_conns, 1, memory_order_relaxed);
	pthread_mutex_unlock(&sh->lock);
}

/* Count a connection from key against the route's limits, across event
 * loops: both checks and both counts are one step under the share's lock,
 * so concurrent accepts on several loops neither overshoot nor refuse a
 * connection under the limit (a refused one never held a slot). NULL, or
 * the reason refused with *limit. */
static const char *listener_admit(struct listener *l, const uint8_t key[16], uint64_t *limit)
{
	const struct config_route *cfg = l->cfg;
	struct listener_share *sh = l->share;
	const char *why = NULL;

	pthread_mutex_lock(&sh->lock);
	struct listener_peer **pp = listener_peer_slot(sh, key);
	if (atomic_load_explicit(&sh->n_conns, memory_order_relaxed) >= cfg->max_connections) {
		*limit = cfg->max_connections;
		why = "max-connections";
	} else if (cfg->max_connections_per_peer && *pp && (*pp)->n >= cfg->max_connections_per_peer) {
		*limit = cfg->max_connections_per_peer;
		why = "max-connections-per-peer";
	} else if (*pp == NULL && (*pp = calloc(1, sizeof(**pp))) == NULL) {
		/* bounded: one entry per live connection at most */
		why = "out-of-memory";
	} else {
		memcpy((*pp)->addr, key, 16);
		(*pp)->n++;
		atomic_fetch_add_explicit(&sh->n_conns, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&sh->lock);
	return why;
}

struct listener_share *listener_share_new(void)
{
	struct listener_share *sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		return NULL;
	if (pthread_mutex_init(&sh->lock, NULL) != 0) {
		free(sh);
		return NULL;
	}
	if (pthread_mutex_init(&sh->rl_lock, NULL) != 0) {
		pthread_mutex_destroy(&sh->lock);
		free(sh);
		return NULL;
	}
	sh->rl.lock = &sh->rl_lock;
	sh->refs = 1;
	return sh;
}

void listener_share_put(struct listener_share *sh)
{
	if (sh == NULL || atomic_fetch_sub_explicit(&sh->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < LISTENER_PEER_BUCKETS; i++)
		while (sh->peers[i]) {
			struct listener_peer *p = sh->peers[i];
			sh->peers[i] = p->next;
			free(p);
		}
	pthread_mutex_destroy(&sh->rl_lock);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

/* The route's conn_gone: a connection closed (conn_close). */
static void listener_conn_gone(void *arg, struct conn *c)
{
	struct listener *l = arg;
	TAILQ_REMOVE(&l->conns, c, link);
	l->n_conns--;
	listener_peer_release(l, (const struct sockaddr *)&c->peer_sa);
}

static void listener_reject(struct listener *l, struct log_ctx *ctx, int fd, const char *reason,
			    uint64_t limit)
{
	/* counted before the line, closed after: whoever reads it sees both */
	metrics_add_reason(l->route->m, METRICS_CONN_REJECTED, METRICS_DIR_NONE, reason, 1);
	log_event(LOG_WARN, ctx, l->route->rl, "reject", LOG_STR("reason", reason),
		  limit ? LOG_U64("limit", limit) : LOG_STR("limit", NULL),
		  l->thread >= 0 ? LOG_U64("thread", l->thread) : LOG_STR("thread", NULL), LOG_END);
	close(fd);
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
	uint8_t key[16];
	uint64_t limit = 0;
	const char *why;

	conn_format_peer(sa, peer, sizeof(peer));
	if (!allowed && cfg->mode != CONFIG_MODE_LOG_ONLY)
		return listener_reject(l, &ctx, fd, "not-allowed", 0);
	listener_key(sa, key);
	if ((why = listener_admit(l, key, &limit)) != NULL)
		return listener_reject(l, &ctx, fd, why, limit);
	struct conn *c = conn_new(l->route, id, fd, sa, (socklen_t)salen);
	if (!c) {
		listener_peer_release(l, sa);
		close(fd);
		return;
	}
	/* linked before it starts: starting may already close it */
	TAILQ_INSERT_HEAD(&l->conns, c, link);
	l->n_conns++;
	conn_start(c, !allowed);
}

/* A libevent call of the listener failed: say so, once per failure. */
static void listener_ev_failed(struct listener *l, const char *detail)
{
	struct log_ctx ctx = listener_ctx(l);
	log_event(LOG_ERROR, &ctx, NULL, "error", LOG_STR("reason", "listen"),
		  LOG_STR("detail", detail), LOG_END);
}

static void listener_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100 * 1000 };

	if (l->lev && evconnlistener_enable(l->lev) < 0) {
		/* still paused: try again rather than stay deaf */
		listener_ev_failed(l, "cannot resume accepting: retrying in 100 ms");
		if (evtimer_add(l->resume_timer, &tv) < 0)
			listener_ev_failed(l, "cannot schedule resuming: the route no longer accepts");
	}
}

/* accept() failing (EMFILE, ENFILE, ENOMEM) would fire again at once: pause
 * the listener briefly instead of spinning. */
static void listener_on_error(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;
	struct log_ctx ctx = listener_ctx(l);
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100 * 1000 };
	int err = errno;

	log_event(LOG_ERROR, &ctx, l->route->rl, "error", LOG_STR("reason", "accept"),
		  LOG_STR("detail", strerror(err)), LOG_END);
	if (evconnlistener_disable(lev) < 0)
		listener_ev_failed(l, "cannot pause accepting");
	else if (evtimer_add(l->resume_timer, &tv) < 0)
		listener_ev_failed(l, "cannot schedule resuming: the route no longer accepts");
}

/* ---- upstream probe: a bare connect, closed at once ---- */

static void listener_probe_end(struct listener *l, bool up)
{
	if (l->probe_ev)
		event_free(l->probe_ev);
	if (l->probe_fd >= 0)
		close(l->probe_fd);
	l->probe_ev = NULL;
	l->probe_fd = -1;
	if (l->probe != LISTENER_PROBE_OFF) {
		enum listener_probe was = l->probe;
		l->probe = up ? LISTENER_PROBE_UP : LISTENER_PROBE_DOWN;
		if (was != l->probe) {
			struct log_ctx ctx = listener_ctx(l);
			log_event(up ? LOG_INFO : LOG_WARN, &ctx, NULL, "upstream",
				  LOG_STR("state", up ? "up" : "down"),
				  LOG_STR("upstream", l->cfg->upstream.text), LOG_END);
		}
	}
}

static void listener_on_probe(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	int err = ETIMEDOUT;
	socklen_t len = sizeof(err);

	if ((what & EV_WRITE) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	listener_probe_end(l, err == 0);
}

static void listener_on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	const struct config_addr *up = &l->cfg->upstream;
	struct timeval every = { LISTENER_PROBE_EVERY_MS / 1000, 0 };
	struct timeval tmo = { 0, LISTENER_PROBE_TIMEOUT_MS * 1000 };

	if (l->probe == LISTENER_PROBE_OFF)
		return;
	if (evtimer_add(l->probe_timer, &every) < 0) {
		/* no further probes: /readyz must not go on trusting the last one */
		listener_ev_failed(l, "cannot schedule the upstream probe: reporting down");
		l->probe = LISTENER_PROBE_DOWN;
		return;
	}
	if (l->probe_fd >= 0)
		return;
	l->probe_fd = socket(up->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->probe_fd < 0)
		return listener_probe_end(l, false);
	if (connect(l->probe_fd, (const struct sockaddr *)&up->sa, up->len) < 0 &&
	    errno != EINPROGRESS)
		return listener_probe_end(l, false);
	l->probe_ev = event_new(l->route->base, l->probe_fd, EV_WRITE, listener_on_probe, l);
	if (!l->probe_ev || event_add(l->probe_ev, &tmo) < 0)
		listener_probe_end(l, false);
}

static void listener_probe_config(struct listener *l, bool on)
{
	l->probe = LISTENER_PROBE_OFF; /* no state change logged for a stopped probe */
	listener_probe_end(l, false);
	if (!on)
		return;
	l->probe = LISTENER_PROBE_UNKNOWN;
	event_active(l->probe_timer, EV_TIMEOUT, 0); /* probe now */
}

/* ---- lifecycle ---- */

/* A socket bound to the route's address, or -1 with errno set. */
static int listener_socket(const struct config_addr *a, bool reuseport)
{
	int one = 1, fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	/* what evconnlistener_new_bind with LEV_OPT_REUSEABLE does, plus
	 * SO_REUSEPORT: every loop binds the address, the kernel spreads */
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int listener_bind(const struct config_route *cfg, bool reuseport)
{
	struct log_ctx ctx = { .route = cfg->name };
	const struct config_addr *a = &cfg->listen;
	int fd = -1;

	/* SO_REUSEPORT would let the bind succeed where a plain one fails:
	 * beside a listening socket of another process of this user (the
	 * kernel would then split the connections with it), or of a route a
	 * loop has not yet let go. A plain bind first, closed at once, gets
	 * the answer threads = 1 gets. */
	if (reuseport) {
		int probe = listener_socket(a, false);
		if (probe >= 0)
			close(probe);
		else
			goto fail;
	}
	if ((fd = listener_socket(a, reuseport)) >= 0)
		return fd;
fail:
	log_event(LOG_ERROR, &ctx, NULL, "error", LOG_STR("reason", "listen"),
		  LOG_STR("listen", a->text), LOG_STR("detail", strerror(errno)), LOG_END);
	return -1;
}

struct listener *listener_open(const struct config_route *cfg, struct config *owner,
			       struct event_base *base, bool probe_upstream, int fd,
			       struct listener_share *share, int thread)
{
	struct log_ctx ctx = { .route = cfg->name };
	struct listener *l = calloc(1, sizeof(*l));

	if (!l) {
		close(fd);
		return NULL;
	}
	l->cfg = cfg;
	l->owner = owner;
	config_ref(owner);
	l->share = share;
	atomic_fetch_add(&share->refs, 1);
	l->thread = thread;
	l->probe_fd = -1;
	TAILQ_INIT(&l->conns);
	if (!(l->route = route_new(cfg, base, thread, &share->rl, listener_conn_gone, l))) {
		close(fd);
		listener_free(l, "internal");
		return NULL;
	}
	l->lev = evconnlistener_new(base, listener_on_accept, l,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, LISTENER_BACKLOG, fd);
	if (!l->lev) {
		log_event(LOG_ERROR, &ctx, NULL, "error", LOG_STR("reason", "listen"),
			  LOG_STR("listen", cfg->listen.text), LOG_STR("detail", strerror(errno)),
			  LOG_END);
		close(fd);
		listener_free(l, "internal");
		return NULL;
	}
	evconnlistener_set_error_cb(l->lev, listener_on_error);
	l->probe_timer = evtimer_new(base, listener_on_probe_timer, l);
	l->resume_timer = evtimer_new(base, listener_on_resume, l);
	if (!l->probe_timer || !l->resume_timer) {
		listener_free(l, "internal");
		return NULL;
	}
	listener_probe_config(l, probe_upstream);
	log_event(LOG_INFO, &ctx, NULL, "listening", LOG_STR("listen", cfg->listen.text),
		  LOG_STR("upstream", cfg->upstream.text),
		  LOG_STR("mode", cfg->mode == CONFIG_MODE_LOG_ONLY ? "log-only" : "enforce"),
		  LOG_STR("pickle", cfg->pickle == CONFIG_PICKLE_ALLOW ? "allow" : "drop"),
		  thread >= 0 ? LOG_U64("thread", thread) : LOG_STR("thread", NULL), LOG_END);
	return l;
}

void listener_update(struct listener *l, const struct config_route *cfg,
		     struct config *owner, bool probe_upstream, bool close_disallowed)
{
	bool upstream_changed = l->cfg->upstream.len != cfg->upstream.len ||
				memcmp(&l->cfg->upstream.sa, &cfg->upstream.sa, cfg->upstream.len);

	l->cfg = cfg;
	config_ref(owner);
	config_unref(l->owner);
	l->owner = owner;
	route_update(l->route, cfg);
	if (upstream_changed || (l->probe != LISTENER_PROBE_OFF) != probe_upstream)
		listener_probe_config(l, probe_upstream);
	if (close_disallowed && cfg->mode != CONFIG_MODE_LOG_ONLY) {
		struct conn *c, *next;
		for (c = TAILQ_FIRST(&l->conns); c; c = next) {
			next = TAILQ_NEXT(c, link);
			if (!cidr_list_match(&cfg->allow, (const struct sockaddr *)&c->peer_sa))
				conn_close_why(c, "not-allowed", "allowlist changed by reload");
		}
	}
}

void listener_retire(struct listener *l)
{
	if (l->lev)
		evconnlistener_free(l->lev);
	l->lev = NULL;
	l->retired = true;
	listener_probe_config(l, false);
}

void listener_drain(struct listener *l)
{
	listener_retire(l);
	l->route->draining = true;
}

void listener_drain_tick(struct listener *l)
{
	struct conn *c, *next;
	for (c = TAILQ_FIRST(&l->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		(void)conn_drain_tick(c);
	}
}

uint64_t listener_close_all(struct listener *l, const char *reason)
{
	uint64_t n = 0;
	struct conn *c;
	while ((c = TAILQ_FIRST(&l->conns))) {
		c->close_reason = reason; /* a detail already set stays */
		conn_close(c);
		n++;
	}
	return n;
}

void listener_free(struct listener *l, const char *reason)
{
	(void)listener_close_all(l, reason);
	listener_retire(l);
	if (l->probe_timer)
		event_free(l->probe_timer);
	if (l->resume_timer)
		event_free(l->resume_timer);
	/* Counts still pending are reported now: this loop's timer goes with
	 * the route, and the share (with them) may go with this listener. */
	log_ratelimit_flush(&(struct log_ctx){ .route = l->cfg->name }, &l->share->rl);
	route_free(l->route);
	listener_share_put(l->share);
	config_unref(l->owner);
	free(l);
}
