/* mem: what libevent really holds. Buffer chains are allocated in powers
 * of two and a chain partly moved on stays whole until drained, so the
 * bytes in buffers understate the memory behind them (about 2x for held
 * messages). Every libevent allocation goes through these counters. */
#ifndef ZMTPFW_MEM_H
#define ZMTPFW_MEM_H

#include <stdint.h>

/* Route libevent's allocations through the counters. Call before any other
 * libevent function (main does, first thing). */
void mem_init(void);

/* The calling thread counts into slot idx (< CONFIG_MAX_THREADS; one per
 * event loop) from now on; threads that never call it use slot 0. */
void mem_thread_slot(unsigned idx);

/* Bytes libevent has allocated now (usable sizes), 0 before mem_init,
 * summed over every thread's slot. */
uint64_t mem_libevent_bytes(void);

/* From now on also add the calling thread's libevent allocations and frees to *owner (NULL:
 * nobody); returns the previous owner, to restore. A connection owns its
 * buffer work (reads, relaying, writes, close), so *owner is what its
 * chains really occupy: a chain moved with one byte in it still holds its
 * whole allocation. Signed: a few structures allocated outside (at
 * accept) are freed at close. The owner must be reset before it is freed. */
int64_t *mem_own(int64_t *owner);

#endif
