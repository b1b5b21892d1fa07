/* splice: kernel-side moves of judged frame bodies, and the pipe pool. */
#define _GNU_SOURCE
#include "zmtpfw/splice.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* Per thread: a pipe is used and pooled by one event loop, no locking. */
static _Thread_local struct splice_pipe splice_pool[SPLICE_POOL_MAX];
static _Thread_local size_t splice_pool_n;

bool splice_pipe_get(struct splice_pipe *p)
{
	int fds[2];

	if (splice_pool_n > 0) {
		*p = splice_pool[--splice_pool_n];
		p->len = 0;
		p->left = 0;
		return true;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return false;
	/* A larger pipe means fewer syscalls per MiB. Refused (a non-root user
	 * over its pipe quota), the pipe keeps the kernel's size, 64 KiB or
	 * even 8 KiB: slower, still correct. */
	(void)fcntl(fds[1], F_SETPIPE_SZ, (int)SPLICE_PIPE_SIZE);
	int cap = fcntl(fds[1], F_GETPIPE_SZ);
	*p = (struct splice_pipe){ .r = fds[0], .w = fds[1], .cap = cap > 0 ? (size_t)cap : 65536 };
	return true;
}

void splice_pipe_put(struct splice_pipe *p)
{
	if (p->r < 0)
		return;
	if (p->len == 0 && splice_pool_n < SPLICE_POOL_MAX) {
		splice_pool[splice_pool_n++] = *p;
	} else {
		close(p->r);
		close(p->w);
	}
	p->r = p->w = -1;
	p->len = 0;
	p->left = 0;
}

void splice_pool_free(void)
{
	while (splice_pool_n > 0) {
		struct splice_pipe *p = &splice_pool[--splice_pool_n];
		close(p->r);
		close(p->w);
	}
}

ssize_t splice_in(struct splice_pipe *p, int fd)
{
	size_t room = p->cap > p->len ? p->cap - p->len : 0;
	size_t want = p->left < room ? (size_t)p->left : room;

	if (want == 0) {
		errno = EAGAIN;
		return -1;
	}
	ssize_t n;
	do
		n = splice(fd, NULL, p->w, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		p->len += (size_t)n;
		p->left -= (uint64_t)n;
	}
	return n;
}

ssize_t splice_out(struct splice_pipe *p, int fd)
{
	ssize_t n;

	if (p->len == 0)
		return 0;
	do
		n = splice(p->r, NULL, fd, NULL, p->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		p->len -= (size_t)n;
	return n;
}
