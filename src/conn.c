/* conn: socket I/O and lifecycle of one proxied connection. Reads go
 * straight into evbuffer chains (reserve/commit, large adaptive reads),
 * writes leave with writev over the chains, and a side stops being read
 * while the other side's output sits above the high watermark. */
#include "zmtpfw/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "zmtpfw/cidr.h"
#include "zmtpfw/config.h"
#include "zmtpfw/log.h"
#include "zmtpfw/mem.h"
#include "zmtpfw/metrics.h"
#include "zmtpfw/relay.h"
#include "zmtpfw/route.h"

#define CONN_READ_MIN (16u << 10)
#define CONN_READ_MAX (256u << 10)
#define CONN_READ_BUDGET (1u << 20) /* per callback, so one side cannot starve others */
#define CONN_HWM (4u << 20)         /* pause the source above this much queued output */
#define CONN_LWM (1u << 20)         /* and resume below this */
#define CONN_SPLICE_MIN (128u << 10) /* splice a judged body only when this much is still to come:
				      * a 64 KiB frame gains nothing from a pipe round trip */
#define CONN_SPLICE_BUDGET (4u << 20) /* per pump call, so one body cannot starve others */

static _Atomic uint64_t conn_id_seq; /* shared by every event loop */

uint64_t conn_next_id(void)
{
	return atomic_fetch_add_explicit(&conn_id_seq, 1, memory_order_relaxed) + 1;
}

void conn_format_peer(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(buf, len, "unknown");
	}
}

static struct log_ctx conn_ctx(const struct conn *c)
{
	return (struct log_ctx){ .route = c->route_name, .conn = c->id, .peer = c->peer };
}

static uint64_t conn_ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - t0->tv_sec) * 1000u +
	       (uint64_t)((now.tv_nsec - t0->tv_nsec) / 1000000);
}

static uint64_t conn_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &t); /* vDSO, no syscall: once per read */
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* A libevent call failed: c can no longer be driven as intended (a side
 * never read or written again, a deadline never firing). Fail closed: the
 * timer callback, activated here (activation cannot fail), closes c with
 * reason "internal" in this loop iteration; the caller may still be using
 * c, so it is not closed here. */
static void conn_ev_failed(struct conn *c, const char *what)
{
	if (c->ev_failed)
		return;
	c->ev_failed = true;
	c->close_reason = "internal";
	c->close_detail = what;
	event_active(c->timer, EV_TIMEOUT, 1);
}

static void conn_ev_add(struct conn *c, struct event *ev, const struct timeval *tv)
{
	if (event_add(ev, tv) < 0)
		conn_ev_failed(c, "event_add failed");
}

static void conn_ev_del(struct conn *c, struct event *ev)
{
	if (event_del(ev) < 0)
		conn_ev_failed(c, "event_del failed");
}

static void conn_timer_ms(struct conn *c, uint64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	conn_ev_add(c, c->timer, &tv);
}

static void conn_side_free(struct side *s)
{
	splice_pipe_put(&s->sp);
	if (s->rev)
		event_free(s->rev);
	if (s->wev)
		event_free(s->wev);
	if (s->in)
		evbuffer_free(s->in);
	if (s->out)
		evbuffer_free(s->out);
	if (s->fd >= 0)
		close(s->fd);
	s->rev = s->wev = NULL;
	s->in = s->out = NULL;
	s->fd = -1;
}

/* ---- memory budget (mem_budget picks, conn closes) ---- */

void conn_set_max_memory(uint64_t bytes)
{
	metrics_set(metrics_global(), METRICS_MEMORY_LIMIT, bytes);
	metrics_gauge_source(METRICS_MEMORY, mem_budget_used);
	mem_budget_set_limit(bytes);
}

/* Bytes c holds in user space: frames waiting for a verdict or a slot in
 * the output, held messages, output queues. A splice pipe is the kernel's,
 * one per moving body, and bounded by its size. */
static uint64_t conn_mem_of(const struct conn *c)
{
	const struct evbuffer *b[] = { c->client.in, c->client.out, c->upstream.in,
				       c->upstream.out };
	uint64_t n = c->relay ? relay_held(c->relay) : 0;
	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
		if (b[i])
			n += evbuffer_get_length(b[i]);
	return n;
}

/* While the process is over the budget, close its biggest holder if this
 * loop has it (else its loop is woken to). Returns false when c (may be
 * NULL) was closed. */
static bool conn_mem_enforce(struct conn *c)
{
	struct mem_holder *h;

	while ((h = mem_budget_victim(CONN_READ_MIN)) != NULL) {
		struct conn *big = (struct conn *)((char *)h - offsetof(struct conn, mem));
		big->close_reason = "memory";
		big->close_detail = "max_memory reached: closing the connection holding the most";
		conn_close(big);
		if (big == c)
			return false;
	}
	return true;
}

/* Only reads grow what buffers hold, so the check follows each read
 * callback; until then a read adds at most CONN_READ_BUDGET. Closes the
 * biggest holder by what its chains occupy (maybe c) until the total
 * fits: a few connections holding much lose them, not everyone; a peer
 * trickling bytes into chains it leaves mostly empty ranks by the chains,
 * not by its few bytes (below one read's chain, a close frees nothing
 * worth a peer). Returns false when c was closed. */
static bool conn_mem_check(struct conn *c)
{
	mem_budget_update(&c->mem, conn_mem_of(c));
	return conn_mem_enforce(c);
}

/* Another loop over the budget found that this one may hold the biggest. */
static void conn_on_mem_wake(void)
{
	(void)conn_mem_enforce(NULL);
}

int conn_thread_start(unsigned idx, struct event_base *base)
{
	return mem_budget_thread_start(idx, base, conn_on_mem_wake);
}

void conn_thread_stop(void)
{
	mem_budget_thread_stop();
}

void conn_close(struct conn *c)
{
	struct log_ctx ctx = conn_ctx(c);
	const char *reason = c->close_reason ? c->close_reason : "closed";
	bool warn = c->close_from || strcmp(reason, "memory") == 0;
	struct metrics_route *m = c->m;

	/* Slot and counters first, the line after: whoever reads the close
	 * line (another loop's accept, a scrape) sees them released. */
	c->route->conn_gone(c->route->owner, c);
	metrics_gauge(m, METRICS_CONN_ACTIVE, -1);
	metrics_add_reason(m, METRICS_CONN_CLOSED, METRICS_DIR_NONE, reason, 1);
	if (strncmp(reason, "upstream-", 9) == 0 && c->state == CONN_CONNECTING)
		metrics_add_reason(m, METRICS_UPSTREAM_FAILED, METRICS_DIR_NONE, reason, 1);
	else if (!c->handshake_done)
		metrics_add_reason(m, METRICS_HANDSHAKE_FAILED, METRICS_DIR_NONE, reason, 1);
	log_event(warn ? LOG_WARN : LOG_INFO, &ctx, c->route->rl, "close",
		  LOG_STR("reason", reason), LOG_STR("detail", c->close_detail),
		  LOG_STR("from", c->close_from), LOG_U64("held", mem_budget_held(&c->mem, conn_mem_of(c))),
		  LOG_U64("bytes_in", c->client.bytes_read),
		  LOG_U64("bytes_out", c->upstream.bytes_read),
		  LOG_U64("messages", c->relay ? relay_msgs(c->relay) : 0),
		  LOG_U64("dropped", c->relay ? relay_dropped(c->relay) : 0),
		  LOG_U64("duration_ms", conn_ms_since(&c->started)), LOG_END);
	int64_t *prev = mem_own(&c->mem.alloc);
	if (c->timer)
		event_free(c->timer);
	conn_side_free(&c->client);
	conn_side_free(&c->upstream);
	relay_free(c->relay);
	mem_own(prev == &c->mem.alloc ? NULL : prev); /* never left pointing into c */
	mem_budget_remove(&c->mem);
	free(c);
}

void conn_close_why(struct conn *c, const char *reason, const char *detail)
{
	c->close_reason = reason;
	c->close_detail = detail;
	conn_close(c);
}

static struct side *conn_other(struct conn *c, struct side *s)
{
	return s == &c->client ? &c->upstream : &c->client;
}

/* Bytes on their way out to s: its buffer, and the pipe spliced into it. */
static size_t conn_pending(struct conn *c, struct side *s)
{
	return evbuffer_get_length(s->out) + conn_other(c, s)->sp.len;
}

/* A socket call on s failed: close with its errno. */
static void conn_fail_io(struct conn *c, struct side *s, int err)
{
	c->close_reason = s == &c->client ? "client-error" : "upstream-error";
	c->close_detail = strerror(err);
	conn_close(c);
}

/* One read into reserved evbuffer space. Returns the bytes read, 0 when
 * nothing was waiting or at EOF (s->eof set), -1 on a socket error. *more
 * says the read filled its space: more may be waiting. */
static ssize_t conn_read_once(struct side *s, bool *more)
{
	struct evbuffer_iovec v[2];
	ssize_t n;

	*more = false;
	int nv = evbuffer_reserve_space(s->in, s->read_size, v, 2);
	if (nv <= 0)
		return -1;
	do
		n = readv(s->fd, (struct iovec *)v, nv);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		evbuffer_commit_space(s->in, v, 0);
		if (n == 0)
			s->eof = true;
		return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK ? -1 : 0;
	}
	/* Commit exactly what was read, across the two extents. */
	size_t left = (size_t)n;
	for (int i = 0; i < nv; i++) {
		if (v[i].iov_len > left)
			v[i].iov_len = left;
		left -= v[i].iov_len;
	}
	if (evbuffer_commit_space(s->in, v, nv) < 0)
		return -1;
	s->bytes_read += (uint64_t)n;
	if ((size_t)n >= s->read_size) {
		*more = true; /* a short read means drained: skip the EAGAIN round trip */
		if (s->read_size < CONN_READ_MAX)
			s->read_size *= 2;
	}
	return n;
}

/* Write what is queued; arm the write event for the rest. */
static int conn_write(struct conn *c, struct side *s)
{
	enum metrics_dir dir = s == &c->upstream ? METRICS_DIR_UP : METRICS_DIR_DOWN;
	while (evbuffer_get_length(s->out) > 0) {
		int n = evbuffer_write_atmost(s->out, s->fd, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		if (n == 0)
			break;
		metrics_add(c->m, METRICS_BYTES, dir, (uint64_t)n);
	}
	if (evbuffer_get_length(s->out) > 0)
		conn_ev_add(c, s->wev, NULL);
	else
		conn_ev_del(c, s->wev);
	return 0;
}

static void conn_set_reading(struct conn *c, struct side *s, bool on)
{
	/* a client stopped at a message boundary by a drain stays stopped */
	if (on && s == &c->client && relay_client_stopped(c->relay))
		return;
	if (s->reading == on || s->eof)
		return;
	s->reading = on;
	if (on)
		conn_ev_add(c, s->rev, NULL);
	else
		conn_ev_del(c, s->rev);
}

/* After the peer of `s` closed: finish once what it sent has been written. */
static bool conn_finish_if_done(struct conn *c, struct side *s)
{
	struct side *o = conn_other(c, s);
	if (!s->eof || conn_pending(c, o) > 0)
		return false;
	c->close_reason = s == &c->client ? "client-closed" : "upstream-closed";
	conn_close(c);
	return true;
}

/* Move a judged frame body from x to the other side through x's pipe, both
 * ways until neither moves. The pipe bounds what is in flight, so the
 * source is read only while the pipe is empty; the sink's write event
 * drains it. Returns false when c was closed. */
static bool conn_splice_pump(struct conn *c, struct side *x)
{
	struct side *y = conn_other(c, x);
	enum relay_way w = x == &c->client ? RELAY_UP : RELAY_DOWN;
	struct splice_pipe *p = &x->sp;
	enum metrics_dir dir = x == &c->client ? METRICS_DIR_UP : METRICS_DIR_DOWN;
	bool pulled = false, moved = true;
	uint64_t budget = CONN_SPLICE_BUDGET;

	/* Stopping early is safe: the events armed below bring us back. */
	while (moved && budget > 0) {
		moved = false;
		if (p->left > 0 && !x->eof) {
			ssize_t n = splice_in(p, x->fd);
			if (n > 0) {
				x->bytes_read += (uint64_t)n;
				x->offer = relay_spliced(c->relay, w, (uint64_t)n).splice;
				moved = pulled = true;
			} else if (n == 0) {
				x->eof = true;
				conn_ev_del(c, x->rev);
				x->reading = false;
			} else if (errno != EAGAIN) {
				conn_fail_io(c, x, errno);
				return false;
			}
		}
		if (p->len > 0) {
			ssize_t n = splice_out(p, y->fd);
			if (n > 0) {
				budget = (uint64_t)n < budget ? budget - (uint64_t)n : 0;
				metrics_add(c->m, METRICS_BYTES, dir, (uint64_t)n);
				metrics_add(c->m, METRICS_BYTES_SPLICED, dir, (uint64_t)n);
				moved = true;
			} else if (n < 0 && errno != EAGAIN) {
				conn_fail_io(c, y, errno);
				return false;
			}
		}
	}
	if (pulled) {
		c->last_active_ms = conn_now_ms();
		if (x == &c->upstream)
			c->worker_quiet = false;
	}
	if (p->len > 0) {
		conn_ev_add(c, y->wev, NULL);
		conn_set_reading(c, x, false);
		return true;
	}
	conn_ev_del(c, y->wev);
	if (p->left > 0 && !x->eof) {
		conn_set_reading(c, x, true);
		return true;
	}
	/* The run is over (or the source closed): back to the parser, with a
	 * small first read so the next long frame is spliced early too. */
	splice_pipe_put(p);
	x->read_size = CONN_READ_MIN;
	if (x->eof)
		return !conn_finish_if_done(c, x);
	conn_set_reading(c, x, !(x == &c->client && relay_client_stopped(c->relay)));
	return true;
}

/* How much of the current frame from s to splice: what the relay offers,
 * when the route splices and it is at least CONN_SPLICE_MIN. */
static uint64_t conn_splice_ready(struct conn *c, struct side *s)
{
	if (!c->route->cfg->splice || s->eof || s->sp.r >= 0 || s->offer < CONN_SPLICE_MIN)
		return 0;
	return s->offer;
}

/* After a read, and whenever the output s feeds drains: when the rest of
 * the current frame may bypass user space, hand it to the kernel once
 * nothing is queued ahead of it. Until then s is not read (the rest stays
 * in the socket), and conn_on_write asks again when the queue is empty
 * (pgbouncer's SBUF_EV_FLUSH): deciding only right after a read would
 * never splice towards a worker slower than its client. Returns false
 * when c was closed. */
static bool conn_splice_maybe(struct conn *c, struct side *s)
{
	struct side *o = conn_other(c, s);
	uint64_t n = conn_splice_ready(c, s);

	if (n == 0)
		return true;
	if (evbuffer_get_length(o->out) > 0) {
		conn_set_reading(c, s, false);
		return true;
	}
	if (!splice_pipe_get(&s->sp)) {
		conn_set_reading(c, s, true); /* no pipe: the buffered path it is */
		return true;
	}
	s->sp.left = n;
	return conn_splice_pump(c, s);
}

static void conn_read_event(struct conn *c, evutil_socket_t fd)
{
	struct side *s = fd == c->client.fd ? &c->client : &c->upstream;
	struct side *o = conn_other(c, s);
	enum relay_way w = s == &c->client ? RELAY_UP : RELAY_DOWN;

	metrics_add(c->m, METRICS_WAKEUPS, s == &c->client ? METRICS_DIR_UP : METRICS_DIR_DOWN, 1);
	if (s->sp.r >= 0) {
		uint64_t before = s->bytes_read;
		if (!conn_splice_pump(c, s))
			return;
		/* Readable, yet splice() took nothing into an empty pipe: TCP
		 * splicing stops at an urgent (MSG_OOB) mark, which readv() steps
		 * over as libzmq's recv() does. Finish this frame by reading. */
		if (s->sp.r < 0 || s->bytes_read != before || s->sp.len > 0 || s->eof)
			return;
		splice_pipe_put(&s->sp);
	}
	/* Parse after every read: once the rest of a frame may be spliced, the
	 * kernel moves it instead of the next read. */
	for (size_t total = 0;;) {
		bool more;
		ssize_t n = conn_read_once(s, &more);
		if (n < 0) {
			conn_fail_io(c, s, errno);
			return;
		}
		total += (size_t)n;
		struct relay_action a = relay_process(c->relay, w, s->in, o->out);
		if (a.act == RELAY_CLOSE) {
			c->close_reason = a.reason;
			c->close_detail = a.detail;
			c->close_from = a.from;
			(void)conn_write(c, o); /* messages judged before the violation */
			conn_close(c);
			return;
		}
		s->offer = a.splice;
		if (!more || total >= CONN_READ_BUDGET ||
		    (c->route->cfg->splice && s->offer >= CONN_SPLICE_MIN))
			break;
	}
	c->last_active_ms = conn_now_ms();
	if (s == &c->upstream)
		c->worker_quiet = false;
	if (!c->handshake_done && relay_handshake_done(c->relay)) {
		const struct config_route *cfg = c->route->cfg;
		c->handshake_done = true;
		if (cfg->idle_timeout_ms)
			conn_timer_ms(c, cfg->idle_timeout_ms);
		else
			conn_ev_del(c, c->timer);
	}
	if (relay_client_stopped(c->relay))
		conn_set_reading(c, &c->client, false);
	if (conn_write(c, o) < 0) {
		conn_fail_io(c, o, errno);
		return;
	}
	if (!conn_mem_check(c))
		return;
	if (s->eof) {
		conn_ev_del(c, s->rev);
		s->reading = false;
		conn_finish_if_done(c, s);
		return;
	}
	if (evbuffer_get_length(o->out) > CONN_HWM)
		conn_set_reading(c, s, false);
	else
		(void)conn_splice_maybe(c, s);
}

static void conn_write_event(struct conn *c, evutil_socket_t fd)
{
	struct side *s = fd == c->client.fd ? &c->client : &c->upstream;
	struct side *o = conn_other(c, s);

	metrics_add(c->m, METRICS_WAKEUPS, s == &c->upstream ? METRICS_DIR_UP : METRICS_DIR_DOWN, 1);
	if (o->sp.r >= 0) { /* s->out stays empty while o splices into s */
		(void)conn_splice_pump(c, o);
		return;
	}
	if (conn_write(c, s) < 0) {
		conn_fail_io(c, s, errno);
		return;
	}
	mem_budget_update(&c->mem, conn_mem_of(c));
	if (conn_finish_if_done(c, o))
		return;
	if (evbuffer_get_length(s->out) == 0) {
		/* drained: a splice waiting for it may start (the relay decides) */
		enum relay_way ow = o == &c->client ? RELAY_UP : RELAY_DOWN;
		o->offer = relay_drained(c->relay, ow, o->in).splice;
	}
	if (conn_splice_ready(c, o) > 0) {
		/* o waits for this queue to empty before splicing into s */
		if (evbuffer_get_length(s->out) == 0)
			(void)conn_splice_maybe(c, o);
		return;
	}
	if (evbuffer_get_length(s->out) < CONN_LWM)
		conn_set_reading(c, o, true);
}

/* One timer per connection, by phase: dialling, handshake, then idle. */
static void conn_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	const struct config_route *cfg = c->route->cfg;

	if (c->ev_failed) { /* close_reason and detail say which call */
		struct log_ctx ctx = conn_ctx(c);
		log_event(LOG_ERROR, &ctx, NULL, "error", LOG_STR("reason", "internal"),
			  LOG_STR("detail", c->close_detail), LOG_END);
		conn_close(c);
		return;
	}
	if (c->state == CONN_CONNECTING) {
		c->close_reason = "upstream-timeout";
		c->close_detail = "connect_timeout_ms";
	} else if (!c->handshake_done) {
		c->close_reason = "handshake-timeout";
		c->close_detail = "handshake_timeout_ms";
	} else {
		uint64_t quiet = conn_now_ms() - c->last_active_ms;
		if (cfg->idle_timeout_ms == 0)
			return; /* turned off by a reload */
		/* Waiting on backpressure or a slow socket is not idleness. */
		if (conn_pending(c, &c->client) || conn_pending(c, &c->upstream) ||
		    !c->client.reading || !c->upstream.reading)
			quiet = 0;
		if (quiet < cfg->idle_timeout_ms) {
			conn_timer_ms(c, cfg->idle_timeout_ms - quiet);
			return;
		}
		c->close_reason = "idle-timeout";
		c->close_detail = "idle_timeout_ms";
	}
	conn_close(c);
}

/* What libevent allocates or frees while a connection's bytes are read,
 * relayed or written is that connection's (mem_own): the budget's ranking. */
static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int64_t *prev = mem_own(&c->mem.alloc);

	(void)what;
	conn_read_event(c, fd);
	mem_own(prev);
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int64_t *prev = mem_own(&c->mem.alloc);

	(void)what;
	conn_write_event(c, fd);
	mem_own(prev);
}

static int conn_side_events(struct conn *c, struct side *s)
{
	struct event_base *base = c->route->base;
	s->rev = event_new(base, s->fd, EV_READ | EV_PERSIST, conn_on_read, c);
	s->wev = event_new(base, s->fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	if (!s->rev || !s->wev)
		return -1;
	s->reading = true;
	return event_add(s->rev, NULL);
}

static void conn_on_connect(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	event_free(c->upstream.wev);
	c->upstream.wev = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		c->close_reason = "upstream-unreachable";
		c->close_detail = strerror(err);
		conn_close(c);
		return;
	}
	c->state = CONN_RELAYING;
	/* The handshake deadline counts from accept. */
	uint64_t spent = conn_ms_since(&c->started), limit = c->route->cfg->handshake_timeout_ms;
	conn_timer_ms(c, spent < limit ? limit - spent : 0);
	if (conn_side_events(c, &c->client) < 0 || conn_side_events(c, &c->upstream) < 0) {
		c->close_reason = "internal";
		c->close_detail = "event setup failed";
		conn_close(c);
	}
}

static int conn_dial(struct conn *c)
{
	const struct config_addr *up = &c->route->cfg->upstream;
	int fd = socket(up->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	c->upstream.fd = fd;
	if (up->sa.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&up->sa, up->len) < 0 && errno != EINPROGRESS)
		return -1;
	/* Completion (or an immediate unix-socket connect) is seen as writable. */
	c->upstream.wev = event_new(c->route->base, fd, EV_WRITE, conn_on_connect, c);
	if (!c->upstream.wev)
		return -1;
	return event_add(c->upstream.wev, NULL);
}

struct conn *conn_new(struct route *r, uint64_t id, int fd, const struct sockaddr *sa,
		      socklen_t salen)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->id = id;
	c->route = r;
	c->m = r->m;
	snprintf(c->route_name, sizeof(c->route_name), "%s", r->cfg->name);
	memcpy(&c->peer_sa, sa, salen < sizeof(c->peer_sa) ? salen : sizeof(c->peer_sa));
	conn_format_peer(sa, c->peer, sizeof(c->peer));
	c->client.fd = fd;
	c->upstream.fd = -1;
	c->client.sp.r = c->client.sp.w = c->upstream.sp.r = c->upstream.sp.w = -1;
	return c;
}

void conn_start(struct conn *c, bool would_reject)
{
	struct route *r = c->route;
	const struct config_route *cfg = r->cfg;
	const struct sockaddr *sa = (const struct sockaddr *)&c->peer_sa;
	int one = 1;

	mem_budget_add(&c->mem);
	metrics_add(c->m, METRICS_CONN_ACCEPTED, METRICS_DIR_NONE, 1);
	metrics_gauge(c->m, METRICS_CONN_ACTIVE, 1);
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	c->last_active_ms = conn_now_ms();
	c->client.read_size = c->upstream.read_size = CONN_READ_MIN;
	setsockopt(c->client.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	/* for the accept line; the relay derives trust again at each reload */
	bool trusted = cfg->pickle == CONFIG_PICKLE_ALLOW ||
		       cidr_list_match(&cfg->allow_pickle_from, sa);
	struct log_ctx ctx = conn_ctx(c);
	if (would_reject)
		log_event(LOG_WARN, &ctx, r->rl, "would-reject", LOG_STR("reason", "not-allowed"),
			  LOG_END);
	log_event(LOG_INFO, &ctx, r->rl, "accept", LOG_BOOL("pickle_trusted", trusted),
		  r->thread >= 0 ? LOG_U64("thread", (uint64_t)r->thread) : LOG_STR("thread", NULL),
		  LOG_END);

	c->client.in = evbuffer_new();
	c->client.out = evbuffer_new();
	c->upstream.in = evbuffer_new();
	c->upstream.out = evbuffer_new();
	c->timer = evtimer_new(r->base, conn_on_timeout, c);
	struct relay_peer rp = { .route = r, .m = c->m, .ctx = ctx, .sa = sa };
	if (!c->client.in || !c->client.out || !c->upstream.in || !c->upstream.out || !c->timer ||
	    !(c->relay = relay_new(&rp))) {
		conn_close_why(c, "internal", "out of memory");
		return;
	}
	conn_timer_ms(c, cfg->connect_timeout_ms);
	if (conn_dial(c) < 0)
		conn_close_why(c, "upstream-unreachable", strerror(errno));
}

bool conn_drain_tick(struct conn *c)
{
	bool quiet = c->worker_quiet;

	c->worker_quiet = true;
	if (c->state == CONN_RELAYING && !relay_client_stopped(c->relay) &&
	    relay_at_boundary(c->relay, RELAY_UP, c->client.in)) {
		/* nothing of a client message is in flight: take no new one */
		relay_stop_client(c->relay);
		conn_set_reading(c, &c->client, false);
	}
	if (c->state == CONN_RELAYING &&
	    (!quiet || !relay_client_stopped(c->relay) ||
	     !relay_at_boundary(c->relay, RELAY_DOWN, c->upstream.in) ||
	     conn_pending(c, &c->client) > 0 || conn_pending(c, &c->upstream) > 0))
		return false;
	conn_close_why(c, "shutdown", "drained");
	return true;
}
