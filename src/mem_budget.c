/* mem_budget: the biggest holder across event loops. Each loop (thread)
 * keeps its own holders' list and counts what they hold in its own slot
 * (single writer: plain load and store); the process total is the sum.
 * `biggest` is an upper bound of a loop's biggest holder (raised as a
 * holder grows, made exact when the loop looks): a loop over the budget
 * picks its own biggest only when no other loop may hold a bigger one,
 * and wakes that loop otherwise, which looks again. Each hop makes one
 * bound exact, so the biggest holder of the process is the one picked. */
#include "zmtpfw/mem_budget.h"

#include <pthread.h>
#include <stdatomic.h>

#include <event2/event.h>

#include "zmtpfw/config.h" /* CONFIG_MAX_THREADS, CONFIG_DEF_MAX_MEMORY */
#include "zmtpfw/mem.h"

struct mem_budget_loop {
	_Atomic uint64_t held;      /* bytes this loop's holders hold */
	_Atomic uint64_t biggest;   /* >= its biggest holder's mem_budget_held */
	struct event *_Atomic wake; /* runs on_wake on that loop; NULL: none */
	char pad[64 - 2 * sizeof(uint64_t) - sizeof(void *)];
};
static struct mem_budget_loop mem_budget_loops[CONFIG_MAX_THREADS];
static _Atomic unsigned mem_budget_n = 1; /* slots in use */
static _Atomic uint64_t mem_budget_limit = CONFIG_DEF_MAX_MEMORY;
static _Thread_local unsigned mem_budget_self; /* 0: the main loop */
/* This loop's holders (initialised on first use: a thread-local head has
 * no constant initialiser). */
static _Thread_local TAILQ_HEAD(mem_budget_list, mem_holder) mem_budget_all;
static _Thread_local void (*mem_budget_on_wake)(void);
/* Held to wake a loop and to retire a loop's wake event, so no loop wakes
 * one that is freeing it. Only taken over the budget, and at a loop's end. */
static pthread_mutex_t mem_budget_wake_lock = PTHREAD_MUTEX_INITIALIZER;

#define MB_LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define MB_STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

static void mem_budget_init_list(void)
{
	if (mem_budget_all.tqh_last == NULL)
		TAILQ_INIT(&mem_budget_all);
}

/* This loop's biggest holder, made exact in its slot's bound. */
static struct mem_holder *mem_budget_own_biggest(uint64_t *most)
{
	struct mem_holder *big = NULL, *x;
	*most = 0;
	mem_budget_init_list();
	TAILQ_FOREACH(x, &mem_budget_all, link) {
		uint64_t h = mem_budget_held(x, x->bytes);
		if (!big || h > *most) {
			big = x;
			*most = h;
		}
	}
	MB_STORE(mem_budget_loops[mem_budget_self].biggest, *most);
	return big;
}

static void mem_budget_woken(evutil_socket_t fd, short what, void *arg)
{
	uint64_t most;
	(void)fd;
	(void)what;
	(void)arg;
	/* Woken for a stale bound (its holder closed since): correct it even
	 * if the process is back under the budget, or it draws the next
	 * wake too. */
	(void)mem_budget_own_biggest(&most);
	if (mem_budget_on_wake)
		mem_budget_on_wake();
}

int mem_budget_thread_start(unsigned idx, struct event_base *base, void (*on_wake)(void))
{
	struct event *w;

	if (idx >= CONFIG_MAX_THREADS || (w = event_new(base, -1, 0, mem_budget_woken, NULL)) == NULL)
		return -1;
	mem_budget_self = idx;
	mem_budget_on_wake = on_wake;
	mem_budget_init_list();
	unsigned n = atomic_load(&mem_budget_n);
	while (n < idx + 1 && !atomic_compare_exchange_weak(&mem_budget_n, &n, idx + 1))
		;
	atomic_store(&mem_budget_loops[idx].wake, w);
	return 0;
}

void mem_budget_thread_stop(void)
{
	pthread_mutex_lock(&mem_budget_wake_lock);
	struct event *w = atomic_exchange(&mem_budget_loops[mem_budget_self].wake, NULL);
	pthread_mutex_unlock(&mem_budget_wake_lock);
	if (w)
		event_free(w);
}

void mem_budget_set_limit(uint64_t bytes)
{
	MB_STORE(mem_budget_limit, bytes);
}

void mem_budget_add(struct mem_holder *h)
{
	mem_budget_init_list();
	TAILQ_INSERT_TAIL(&mem_budget_all, h, link);
}

void mem_budget_remove(struct mem_holder *h)
{
	mem_budget_update(h, 0);
	TAILQ_REMOVE(&mem_budget_all, h, link);
}

uint64_t mem_budget_held(const struct mem_holder *h, uint64_t bytes)
{
	uint64_t a = h->alloc > 0 ? (uint64_t)h->alloc : 0;
	return a > bytes ? a : bytes;
}

void mem_budget_update(struct mem_holder *h, uint64_t bytes)
{
	struct mem_budget_loop *t = &mem_budget_loops[mem_budget_self];
	MB_STORE(t->held, MB_LOAD(t->held) - h->bytes + bytes);
	h->bytes = bytes;
	uint64_t held = mem_budget_held(h, bytes);
	if (held > MB_LOAD(t->biggest))
		MB_STORE(t->biggest, held); /* keep the bound */
}

uint64_t mem_budget_used(void)
{
	uint64_t used = mem_libevent_bytes(), total = 0;
	unsigned n = MB_LOAD(mem_budget_n);
	for (unsigned i = 0; i < n; i++)
		total += MB_LOAD(mem_budget_loops[i].held);
	return used > total ? used : total;
}

struct mem_holder *mem_budget_victim(uint64_t min)
{
	if (mem_budget_used() <= MB_LOAD(mem_budget_limit))
		return NULL;
	uint64_t most;
	struct mem_holder *big = mem_budget_own_biggest(&most);
	unsigned n = MB_LOAD(mem_budget_n), other = mem_budget_self;
	uint64_t best = most;
	/* A loop whose bound is under min has nothing to close: waking it
	 * would change no decision, and costs it a walk of its holders on
	 * every read here while the process stays over with small holders. */
	for (unsigned i = 0; i < n; i++) {
		struct event *w = atomic_load(&mem_budget_loops[i].wake);
		uint64_t b = MB_LOAD(mem_budget_loops[i].biggest);
		if (i != mem_budget_self && w && b >= min && b > best) {
			best = b;
			other = i;
		}
	}
	if (other != mem_budget_self) {
		pthread_mutex_lock(&mem_budget_wake_lock);
		struct event *w = atomic_load(&mem_budget_loops[other].wake);
		if (w)
			event_active(w, EV_TIMEOUT, 1);
		pthread_mutex_unlock(&mem_budget_wake_lock);
		return NULL;
	}
	return most < min ? NULL : big;
}
