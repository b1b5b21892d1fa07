/* mem: libevent's allocations, counted by usable size, in all and for
 * the connection whose buffers are being worked on. */
#include "zmtpfw/mem.h"

#include <malloc.h>
#include <stdlib.h>

#include <event2/event.h>

static uint64_t mem_bytes;
static int64_t *mem_owner; /* also counted here: see mem_own */

static void mem_count(int64_t delta)
{
	mem_bytes += (uint64_t)delta;
	if (mem_owner)
		*mem_owner += delta;
}

static void *mem_malloc(size_t n)
{
	void *p = malloc(n);
	if (p)
		mem_count((int64_t)malloc_usable_size(p));
	return p;
}

static void mem_free(void *p)
{
	if (!p)
		return;
	mem_count(-(int64_t)malloc_usable_size(p));
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
		mem_count((int64_t)malloc_usable_size(q) - (int64_t)old);
	return q;
}

void mem_init(void)
{
	event_set_mem_functions(mem_malloc, mem_realloc, mem_free);
}

int64_t *mem_own(int64_t *owner)
{
	int64_t *prev = mem_owner;
	mem_owner = owner;
	return prev;
}

uint64_t mem_libevent_bytes(void)
{
	return mem_bytes;
}
