/* mem: libevent's allocations, counted by usable size. */
#include "zmtpfw/mem.h"

#include <malloc.h>
#include <stdlib.h>

#include <event2/event.h>

static uint64_t mem_bytes;

static void *mem_malloc(size_t n)
{
	void *p = malloc(n);
	if (p)
		mem_bytes += malloc_usable_size(p);
	return p;
}

static void mem_free(void *p)
{
	if (!p)
		return;
	mem_bytes -= malloc_usable_size(p);
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
		mem_bytes = mem_bytes - old + malloc_usable_size(q);
	return q;
}

void mem_init(void)
{
	event_set_mem_functions(mem_malloc, mem_realloc, mem_free);
}

uint64_t mem_libevent_bytes(void)
{
	return mem_bytes;
}
