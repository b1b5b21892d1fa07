/* loop: an event loop's listeners, commands from the main thread, drain. */
#include "zmtpfw/loop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "zmtpfw/conn.h"
#include "zmtpfw/listener.h"
#include "zmtpfw/log.h"
#include "zmtpfw/mem.h"
#include "zmtpfw/metrics.h"
#include "zmtpfw/splice.h"

struct loop {
	unsigned idx;
	bool alone;                  /* the only loop: logs carry no thread */
	bool own_thread;             /* runs on a thread of its own (idx > 0) */
	bool started;                /* that thread runs */
	pthread_t tid;
	struct event_base *base;
	struct listener *listeners;  /* live and retired */
	struct event *sweep;         /* frees retired listeners once empty (1 s) */
	struct event *cmd_ev;        /* runs what the main thread posted */
	/* Posted by the main thread, taken under lock. Posting allocates
	 * nothing, so it cannot fail: an apply carries its own link, a drain
	 * is a flag (reloads are refused once draining: applies come first). */
	pthread_mutex_t lock;
	struct loop_apply *applies, **applies_tail;
	bool drain_posted;
	uint64_t drain_ms;
	struct event *drain_tick;    /* CONN_DRAIN_TICK_MS while draining */
	struct event *drain_deadline;
	_Atomic uint64_t forced;     /* connections the drain deadline cut */
	_Atomic bool drained;        /* its drain ended, or its thread did */
	unsigned late_ticks;         /* main loop: ticks past its deadline, waiting */
};

static _Thread_local struct loop *loop_self; /* the loop running on this thread */
/* The loops on threads of their own, for the main loop's drain: it leaves
 * last, since its leaving ends the process. Written by the main thread. */
static struct loop *_Atomic loop_threads[CONFIG_MAX_THREADS];
/* After its own deadline the main loop waits this long for the others
 * (their deadlines are the same), then leaves anyway: a loop that never
 * got the drain (its command lost) is cut by loop_stop. */
#define LOOP_LATE_TICKS (2000 / CONN_DRAIN_TICK_MS)

static bool loop_same_addr(const struct config_addr *a, const struct config_addr *b)
{
	return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

static int loop_thread_id(const struct loop *l)
{
	return l->alone ? -1 : (int)l->idx;
}

/* Free retired listeners without connections. */
static void loop_collect(struct loop *l)
{
	for (struct listener **pp = &l->listeners; *pp;) {
		struct listener *x = *pp;
		if (x->retired && x->n_conns == 0) {
			*pp = x->next;
			listener_free(x, "shutdown");
		} else {
			pp = &x->next;
		}
	}
}

static void loop_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	loop_collect(arg);
}

static void loop_apply(struct loop *l, struct loop_apply *a);
static void loop_drain(struct loop *l, uint64_t ms);

static void loop_on_cmd(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	bool drain;
	uint64_t ms;
	pthread_mutex_lock(&l->lock);
	struct loop_apply *a = l->applies;
	l->applies = NULL;
	l->applies_tail = &l->applies;
	drain = l->drain_posted;
	l->drain_posted = false;
	ms = l->drain_ms;
	pthread_mutex_unlock(&l->lock);
	while (a) {
		struct loop_apply *next = a->next;
		loop_apply(l, a);
		a = next;
	}
	if (drain)
		loop_drain(l, ms);
}

struct loop *loop_new(unsigned idx, struct event_base *base, bool alone)
{
	struct timeval sec = { 1, 0 };
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->idx = idx;
	l->alone = alone;
	l->own_thread = base == NULL;
	l->applies_tail = &l->applies;
	pthread_mutex_init(&l->lock, NULL);
	l->base = base ? base : event_base_new();
	if (!l->base)
		goto fail;
	l->sweep = event_new(l->base, -1, EV_PERSIST, loop_on_sweep, l);
	l->cmd_ev = event_new(l->base, -1, 0, loop_on_cmd, l);
	if (!l->sweep || !l->cmd_ev || event_add(l->sweep, &sec) < 0)
		goto fail;
	if (!l->own_thread)
		loop_self = l;
	else if (idx < CONFIG_MAX_THREADS)
		atomic_store(&loop_threads[idx], l);
	return l;
fail:
	(void)loop_stop(l);
	return NULL;
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	loop_self = l;
	mem_thread_slot(l->idx);
	metrics_thread_shard(l->idx);
	if (conn_thread_start(l->idx, l->base) < 0) {
		log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "internal"),
			  LOG_U64("thread", l->idx), LOG_STR("detail", "loop setup failed"), LOG_END);
		atomic_store(&l->drained, true);
		return NULL;
	}
	loop_on_cmd(-1, 0, l); /* what was posted before the thread ran */
	event_base_dispatch(l->base);
	/* everything of this loop is freed on its own thread */
	while (l->listeners) {
		struct listener *x = l->listeners;
		l->listeners = x->next;
		listener_free(x, "shutdown");
	}
	conn_thread_stop();
	splice_pool_free();
	atomic_store(&l->drained, true);
	return NULL;
}

/* Startup cannot go on without loop l: say why (main exits 1 next, and
 * other loops may already have logged "listening"). */
static void loop_start_failed(const struct loop *l, const char *detail)
{
	log_event(LOG_ERROR, NULL, NULL, "error", LOG_STR("reason", "threads"),
		  LOG_U64("thread", l->idx), LOG_STR("detail", detail), LOG_END);
}

int loop_start(struct loop *l)
{
	int rc;
	if (!l->own_thread) {
		if (conn_thread_start(l->idx, l->base) < 0) {
			loop_start_failed(l, "loop setup failed");
			return -1;
		}
		return 0;
	}
	if ((rc = pthread_create(&l->tid, NULL, loop_main, l)) != 0) {
		char detail[160];
		snprintf(detail, sizeof(detail), "cannot create the event loop's thread: %s "
			 "(a limit on processes or threads, such as RLIMIT_NPROC, a container's pids "
			 "limit or TasksMax, counts each loop)", strerror(rc));
		loop_start_failed(l, detail);
		return -1;
	}
	l->started = true;
	return 0;
}

void loop_post_apply(struct loop *l, struct loop_apply *a)
{
	if (l == loop_self || !l->own_thread) {
		loop_apply(l, a);
		return;
	}
	a->next = NULL;
	pthread_mutex_lock(&l->lock);
	*l->applies_tail = a;
	l->applies_tail = &a->next;
	pthread_mutex_unlock(&l->lock);
	event_active(l->cmd_ev, EV_TIMEOUT, 1); /* thread-safe: evthread_use_pthreads */
}

void loop_post_drain(struct loop *l, uint64_t timeout_ms)
{
	if (l == loop_self || !l->own_thread) {
		loop_drain(l, timeout_ms);
		return;
	}
	pthread_mutex_lock(&l->lock);
	l->drain_posted = true;
	l->drain_ms = timeout_ms;
	pthread_mutex_unlock(&l->lock);
	event_active(l->cmd_ev, EV_TIMEOUT, 1);
}

void loop_apply_free(struct loop_apply *a)
{
	if (!a)
		return;
	for (size_t k = 0; k < a->n_new; k++) {
		if (a->new_routes[k].fd >= 0)
			close(a->new_routes[k].fd);
		listener_share_put(a->new_routes[k].share);
	}
	config_unref(a->cfg);
	free(a);
}

static void loop_apply(struct loop *l, struct loop_apply *a)
{
	const struct config *nc = a->cfg;

	for (struct listener *x = l->listeners; x; x = x->next) {
		if (x->retired)
			continue;
		const struct config_route *r = NULL;
		for (size_t i = 0; i < nc->n_routes && !r; i++)
			if (loop_same_addr(&nc->routes[i].listen, &x->cfg->listen))
				r = &nc->routes[i];
		if (r) {
			listener_update(x, r, a->cfg, a->probe, a->close_disallowed);
			continue;
		}
		listener_retire(x); /* the server logged route-removed */
	}
	for (size_t i = 0; i < a->n_new; i++) {
		struct loop_route *nr = &a->new_routes[i];
		struct listener *x = listener_open(nr->cfg, a->cfg, l->base, a->probe, nr->fd,
						   nr->share, loop_thread_id(l));
		listener_share_put(nr->share);
		if (x) {
			x->next = l->listeners;
			l->listeners = x;
		}
	}
	config_unref(a->cfg);
	free(a);
	loop_collect(l);
}

/* ---- drain ---- */

static uint32_t loop_conns(const struct loop *l)
{
	uint32_t n = 0;
	for (const struct listener *x = l->listeners; x; x = x->next)
		n += x->n_conns;
	return n;
}

/* Every loop on a thread of its own has drained (or never ran). */
static bool loop_others_drained(void)
{
	for (unsigned i = 0; i < CONFIG_MAX_THREADS; i++) {
		struct loop *x = atomic_load(&loop_threads[i]);
		if (x && x->started && !atomic_load(&x->drained))
			return false;
	}
	return true;
}

/* This loop's connections are gone (or cut): leave its event loop. The
 * main loop leaves last, as its leaving ends the process (and cuts the
 * loops still running); its tick keeps checking the others meanwhile. */
static void loop_drain_done(struct loop *l)
{
	atomic_store(&l->drained, true);
	if (!l->own_thread && !loop_others_drained() && l->late_ticks <= LOOP_LATE_TICKS) {
		if (!event_pending(l->drain_deadline, EV_TIMEOUT, NULL))
			l->late_ticks++;
		return;
	}
	event_del(l->drain_tick);
	event_del(l->drain_deadline);
	event_base_loopexit(l->base, NULL);
}

static void loop_on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	for (struct listener *x = l->listeners; x; x = x->next)
		listener_drain_tick(x);
	if (loop_conns(l) == 0)
		loop_drain_done(l);
}

static void loop_on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	for (struct listener *x = l->listeners; x; x = x->next)
		l->forced += listener_close_all(x, "drain-timeout");
	loop_drain_done(l);
}

static void loop_drain(struct loop *l, uint64_t ms)
{
	struct timeval tick = { 0, CONN_DRAIN_TICK_MS * 1000 };
	struct timeval deadline = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	for (struct listener *x = l->listeners; x; x = x->next)
		listener_drain(x);
	l->drain_tick = event_new(l->base, -1, EV_PERSIST, loop_on_drain_tick, l);
	l->drain_deadline = evtimer_new(l->base, loop_on_drain_deadline, l);
	if (!l->drain_tick || !l->drain_deadline || event_add(l->drain_tick, &tick) < 0 ||
	    event_add(l->drain_deadline, &deadline) < 0) {
		event_base_loopexit(l->base, NULL);
		return;
	}
	loop_on_drain_tick(-1, 0, l); /* idle connections go at once */
}

struct listener *loop_listeners(struct loop *l)
{
	return l->listeners;
}

struct event_base *loop_base(const struct loop *l)
{
	return l->base;
}

unsigned loop_index(const struct loop *l)
{
	return l->idx;
}

uint64_t loop_stop(struct loop *l)
{
	uint64_t forced;
	if (!l)
		return 0;
	if (l->started) {
		/* a loop still running (no drain, or a second signal) stops now */
		event_base_loopexit(l->base, NULL);
		pthread_join(l->tid, NULL);
	}
	while (l->listeners) {
		struct listener *x = l->listeners;
		l->listeners = x->next;
		listener_free(x, "shutdown");
	}
	if (!l->own_thread)
		conn_thread_stop();
	while (l->applies) { /* never ran: an apply still owns its holds and fds */
		struct loop_apply *a = l->applies;
		l->applies = a->next;
		loop_apply_free(a);
	}
	if (l->sweep)
		event_free(l->sweep);
	if (l->cmd_ev)
		event_free(l->cmd_ev);
	if (l->drain_tick)
		event_free(l->drain_tick);
	if (l->drain_deadline)
		event_free(l->drain_deadline);
	if (l->own_thread && l->idx < CONFIG_MAX_THREADS)
		atomic_store(&loop_threads[l->idx], NULL);
	if (l->own_thread && l->base)
		event_base_free(l->base);
	pthread_mutex_destroy(&l->lock);
	forced = l->forced;
	free(l);
	return forced;
}
