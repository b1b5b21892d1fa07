/* conn: the I/O layer of one proxied connection, client <-> worker. Owns
 * both sockets, their buffers and timers; hands what it reads to the relay
 * and does what the relay answers (forward, splice, close). It sees its
 * route, never the listener. */
#ifndef ZMTPFW_CONN_H
#define ZMTPFW_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "zmtpfw/mem_budget.h"
#include "zmtpfw/splice.h"

struct event;
struct evbuffer;
struct metrics_route;
struct relay;
struct route;

/* One socket and the bytes queued on either side of it. */
struct side {
	int fd;                 /* -1 once closed */
	struct event *rev;      /* readable */
	struct event *wev;      /* writable (also: connect completion) */
	struct evbuffer *in;    /* read from fd, not yet parsed or moved on */
	struct evbuffer *out;   /* to be written to fd */
	bool reading;           /* rev is armed (false while backpressured) */
	bool eof;               /* the peer closed its end */
	uint32_t read_size;     /* adaptive read size: grows while reads fill it */
	uint64_t bytes_read;    /* for the close log line */
	struct splice_pipe sp;  /* splicing from fd to the other side (sp.r >= 0) */
	uint64_t offer;         /* bytes of the current frame the relay last let bypass
				   the buffers (its RELAY_SPLICE answer), 0 when none */
};

/* A connection is freed as it closes: there is no closed state. */
enum conn_state {
	CONN_CONNECTING = 0, /* dialling the worker; client not read yet */
	CONN_RELAYING,       /* greeting, handshake, traffic */
};

struct conn {
	TAILQ_ENTRY(conn) link;       /* the listener's list of its connections (listener.c
					 links and unlinks it; conn never touches it) */
	struct mem_holder mem;        /* its part of the memory budget */
	uint64_t id;
	enum conn_state state;
	struct route *route;          /* config in force, rate limiter, loop, draining */
	struct metrics_route *m;      /* the route's metrics entry at accept, and */
	char route_name[64];          /* its name at accept: a reload renaming the route
					 must not move this connection's gauge or labels */
	struct side client, upstream;
	struct relay *relay;          /* the protocol side: parse state of both directions */
	struct event *timer;          /* connect, then handshake deadline, then idle check */
	bool handshake_done;          /* both handshake frames relayed */
	bool worker_quiet;            /* draining: no worker bytes since the last drain tick */
	bool ev_failed;               /* a libevent call failed: closing (see conn_ev_failed) */
	uint64_t last_active_ms;      /* monotonic ms of the last byte read, for idle_timeout */
	char peer[64];                /* "ip:port" for logs */
	struct sockaddr_storage peer_sa;
	struct timespec started;      /* monotonic, for duration */
	const char *close_reason;     /* set by whoever decides to close */
	const char *close_detail;
	const char *close_from;       /* "client"/"worker": whose bytes broke the rules */
};

/* A fresh connection id (also used for peers rejected at accept). */
uint64_t conn_next_id(void);

/* "a.b.c.d:port" or "[v6]:port" */
void conn_format_peer(const struct sockaddr *sa, char *buf, size_t len);

/* A connection for an accepted socket, not started yet (nothing logged
 * or counted): the owner links it into its list first, because
 * conn_start may close it at once. NULL when out of memory (fd is left
 * to the caller). */
struct conn *conn_new(struct route *r, uint64_t id, int fd, const struct sockaddr *sa,
		      socklen_t salen) __attribute__((warn_unused_result));

/* Start c: the accepted socket passed the allowlist (or, in log-only mode,
 * would not have: would_reject). Dials the worker. May close c (the route's
 * conn_gone is told). */
void conn_start(struct conn *c, bool would_reject);

/* Close both sockets, log "close", tell the route's owner, free. */
void conn_close(struct conn *c);

/* The same, with the reason and detail of the close line. */
void conn_close_why(struct conn *c, const char *reason, const char *detail);

struct event_base;

/* The calling thread runs event loop idx (< CONFIG_MAX_THREADS) on base:
 * its connections count in slot idx of the memory budget, and a loop over
 * the budget wakes it through base to close its biggest holder (base must
 * be thread-safe when there are several loops). Call on that thread before
 * its first connection; conn_thread_stop at its end. The main loop, when
 * alone, may skip it (slot 0, never woken). */
int conn_thread_start(unsigned idx, struct event_base *base) __attribute__((warn_unused_result));
void conn_thread_stop(void);

/* The process memory budget (max_memory): when the bytes held in every
 * connection's buffers exceed it after a read, the connection holding the
 * most is closed (reason "memory") until the total fits, whichever event
 * loop holds it. Set at start and by each reload. */
void conn_set_max_memory(uint64_t bytes);

/* Called every CONN_DRAIN_TICK_MS while its route drains (the route's
 * `draining`: from then on it takes no new client message once at a
 * message boundary): closes c if it is at a
 * message boundary both ways, has nothing queued, and the worker has been
 * quiet since the previous tick (a reply may still be coming otherwise).
 * Returns true when it closed c. */
#define CONN_DRAIN_TICK_MS 100
bool conn_drain_tick(struct conn *c);

#endif
