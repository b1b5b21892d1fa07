/* mem_budget: the process memory budget (max_memory) across event loops.
 * Each connection is a holder: what its buffers hold in bytes and what
 * libevent allocated for it (mem_own). Each loop keeps its own holders and
 * sums them in its own slot; over the budget, the process's biggest holder
 * is the victim, found on whichever loop holds it. The module picks; its
 * caller (conn) closes. */
#ifndef ZMTPFW_MEM_BUDGET_H
#define ZMTPFW_MEM_BUDGET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct event_base;

struct mem_holder {
	TAILQ_ENTRY(mem_holder) link; /* its loop's holders */
	uint64_t bytes;               /* in its buffers when last counted */
	int64_t alloc;                /* libevent's allocations for it, net (mem_own) */
};

/* The calling thread runs loop idx (< CONFIG_MAX_THREADS): its holders
 * count in slot idx, and another loop over the budget wakes it through
 * base (thread-safe when there are several loops) to run on_wake, which
 * should call mem_budget_victim until it returns NULL. Call before its
 * first holder; mem_budget_thread_stop at its end. A lone main loop may
 * skip both (slot 0, never woken). */
int mem_budget_thread_start(unsigned idx, struct event_base *base, void (*on_wake)(void))
	__attribute__((warn_unused_result));
void mem_budget_thread_stop(void);

void mem_budget_set_limit(uint64_t bytes);

/* Start and stop counting h on the calling thread's loop (h zeroed before add). */
void mem_budget_add(struct mem_holder *h);
void mem_budget_remove(struct mem_holder *h);

/* h now holds bytes in its buffers. */
void mem_budget_update(struct mem_holder *h, uint64_t bytes);

/* What freeing h would give back: its chains as allocated, or its bytes
 * when that is more (libevent outside mem_init). */
uint64_t mem_budget_held(const struct mem_holder *h, uint64_t bytes);

/* What the process holds against the budget: what libevent allocated
 * (mem.c), never less than the holders' bytes. */
uint64_t mem_budget_used(void);

/* Over the budget: this loop's holder to close (the process's biggest), or
 * NULL when within it, when another loop may hold a bigger one of at
 * least min (that loop is woken and looks itself), or when the biggest
 * holds less than min (a close would free nothing worth a peer). */
struct mem_holder *mem_budget_victim(uint64_t min);

#endif
