/* mem: libevent's allocations, counted by usable size, in all and for
 * the connection whose buffers are being worked on. */
#include "zmtpfw/mem.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <event2/event.h>

#include "zmtpfw/config.h" /* CONFIG_MAX_THREADS */

/* One counter per thread, each on its own cache line: an allocation is a
 * plain load and store on the thread's own line (no locked instruction, no
 * sharing), and the total is their sum. A block freed on another thread
 * than the one that allocated it makes one slot go down and another up;
 * the sum stays exact (wrapping arithmetic). */
struct mem_slot {
	_Atomic uint64_t bytes;
	char pad[64 - sizeof(uint64_t)];
};
static struct mem_slot mem_slots[CONFIG_MAX_THREADS];
static _Thread_local unsigned mem_self; /* 0: the main thread */
static _Atomic unsigned mem_n_slots = 1;   /* slots in use: the sum reads only these */

/* also counted here: see mem_own; per thread, as a loop works on its own
 * connections only */
static _Thread_local int64_t *mem_owner;

static inline void mem_count(uint64_t add, uint64_t sub)
{
	_Atomic uint64_t *b = &mem_slots[mem_self].bytes;
	atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + add - sub,
			      memory_order_relaxed);
	if (mem_owner)
		*mem_owner += (int64_t)add - (int64_t)sub;
}

static void *mem_malloc(size_t n)
{
	void *p = malloc(n);
	if (p)
		mem_count(malloc_usable_size(p), 0);
	return p;
}

static void mem_free(void *p)
{
	if (!p)
		return;
	mem_count(0, malloc_usable_size(p));
	free(p);
}

static void *mem_realloc(void *p, size_t n)
{
	if (!p)
		return mem_malloc(n);
	if (n == 0) { /* glibc frees here: count it as a free */
		mem_free(p);
		return NULL;
	}
	size_t old = malloc_usable_size(p);
	void *q = realloc(p, n);
	if (q) /* on failure p is untouched and still counted */
		mem_count(malloc_usable_size(q), old);
	return q;
}

void mem_init(void)
{
	event_set_mem_functions(mem_malloc, mem_realloc, mem_free);
}

void mem_thread_slot(unsigned idx)
{
	mem_self = idx < CONFIG_MAX_THREADS ? idx : 0;
	unsigned n = atomic_load(&mem_n_slots);
	while (n < mem_self + 1 && !atomic_compare_exchange_weak(&mem_n_slots, &n, mem_self + 1))
		;
}

int64_t *mem_own(int64_t *owner)
{
	int64_t *prev = mem_owner;
	mem_owner = owner;
	return prev;
}

uint64_t mem_libevent_bytes(void)
{
	uint64_t n = 0;
	unsigned slots = atomic_load_explicit(&mem_n_slots, memory_order_relaxed);
	for (unsigned i = 0; i < slots; i++)
		n += atomic_load_explicit(&mem_slots[i].bytes, memory_order_relaxed);
	return n;
}
