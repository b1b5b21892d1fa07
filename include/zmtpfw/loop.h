/* loop: one event loop (threads = N runs N of them). Each has its own
 * event base, its own listener on every route (SO_REUSEPORT when there are
 * several), so its connections, their route objects, metrics shard and
 * splice pool are its own; what it shares with the others (route limits,
 * memory budget, config snapshot) is atomic or locked below it. Loop 0 is
 * the main thread's loop (with signals, reload and /metrics); the others
 * run on their own threads and receive work from the main thread as
 * posted commands (a mutex-protected queue and event_active). */
#ifndef ZMTPFW_LOOP_H
#define ZMTPFW_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zmtpfw/config.h"

struct event_base;
struct listener;
struct listener_share;
struct loop;

/* A route new to the loops: its bound socket for this loop and the share. */
struct loop_route {
	const struct config_route *cfg;
	int fd;                      /* from listener_bind; the loop owns it */
	struct listener_share *share; /* one hold, the loop's */
};

/* A config snapshot for one loop to take over (start and each reload). */
struct loop_apply {
	struct loop_apply *next; /* the loop's queue of posted applies */
	struct config *cfg;      /* one config_ref hold, the loop's */
	bool probe;              /* probe upstreams (loop 0 only) */
	bool close_disallowed;   /* reload_closes_disallowed */
	size_t n_new;
	struct loop_route new_routes[]; /* routes whose address no listener has yet */
};

/* Loop idx; base NULL: a new base, and a thread at loop_start. alone: the
 * only loop (logs carry no thread field). NULL when out of memory. */
struct loop *loop_new(unsigned idx, struct event_base *base, bool alone)
	__attribute__((warn_unused_result));
int loop_start(struct loop *l) __attribute__((warn_unused_result));

/* Make l take over a snapshot (frees a), on l's thread: now when l is the
 * caller's own loop (loop 0 on the main thread), else posted. Posting
 * allocates nothing, so it cannot fail. */
void loop_post_apply(struct loop *l, struct loop_apply *a);
/* Release what an apply holds (config hold, bound fds, shares): one that
 * never ran. NULL is a no-op. */
void loop_apply_free(struct loop_apply *a);

/* Make l stop accepting and drain, on its thread (as loop_post_apply);
 * when its last connection ended or the deadline passed, it leaves its
 * event loop. Posted after every apply (reloads stop once draining). */
void loop_post_drain(struct loop *l, uint64_t timeout_ms);

/* Loop 0's listeners, for /readyz on the main thread only. */
struct listener *loop_listeners(struct loop *l);
unsigned loop_index(const struct loop *l);
struct event_base *loop_base(const struct loop *l);

/* Leave the event loop now (any thread; also the second SIGTERM), wait for
 * the thread, then free everything (connections closed "shutdown").
 * Returns the connections the drain deadline cut. */
uint64_t loop_stop(struct loop *l);

#endif
