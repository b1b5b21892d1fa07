/* splice: moves judged frame bodies socket -> pipe -> socket inside the
 * kernel, so the bytes of a long frame never enter user space. A small pool
 * keeps emptied pipes for the next long frame. No libevent in here: conn
 * decides when to pump and which events to arm. */
#ifndef ZMTPFW_SPLICE_H
#define ZMTPFW_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPLICE_PIPE_SIZE (1u << 20) /* asked of F_SETPIPE_SZ; the kernel may give less */
#define SPLICE_POOL_MAX 16          /* idle pipes kept for reuse, per event loop */

/* One pipe in use by one direction of one connection. */
struct splice_pipe {
	int r, w;      /* -1 when none */
	size_t cap;    /* capacity the kernel granted */
	size_t len;    /* bytes in the pipe, not yet written out */
	uint64_t left; /* bytes still to pull from the source for this run */
};

/* Take a pipe from the pool or make one. Returns false (errno set) when no
 * pipe can be had: the caller keeps relaying through user space. */
bool splice_pipe_get(struct splice_pipe *p);

/* Give the pipe back: kept for reuse when empty and the pool has room,
 * closed otherwise (a pipe with bytes left in it is never reused). */
void splice_pipe_put(struct splice_pipe *p);

/* Close every pipe pooled by the calling thread (each event loop's thread
 * at its end; the pool is per thread). */
void splice_pool_free(void);

/* Pull up to min(left, room in the pipe) bytes from fd into the pipe.
 * Returns bytes moved, 0 at EOF, -1 with errno (EAGAIN: nothing to take now,
 * or the pipe is full). */
ssize_t splice_in(struct splice_pipe *p, int fd);

/* Write what the pipe holds to fd. Returns bytes moved or -1 with errno
 * (EAGAIN: fd is full). */
ssize_t splice_out(struct splice_pipe *p, int fd);

#endif
