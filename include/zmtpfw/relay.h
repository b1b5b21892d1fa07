/* relay: the protocol side of a connection. For each direction it takes
 * what the I/O layer read, asks the ZMTP parser what the bytes are and the
 * inspector whether data frames may pass, moves them to the other side's
 * output (frame bodies move between evbuffers without copying), and says
 * what the I/O layer should do next (pgbouncer's sbuf/proto split). It
 * sees the connection's route and identity, never sockets or the listener;
 * its parse state is its own. */
#ifndef ZMTPFW_RELAY_H
#define ZMTPFW_RELAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "zmtpfw/log.h"

struct evbuffer;
struct metrics_route;
struct route;
struct relay;

/* Which way bytes go. */
enum relay_way {
	RELAY_UP = 0, /* client -> worker: the direction that is scanned */
	RELAY_DOWN,   /* worker -> client */
};

/* What the relay knows of its connection, fixed for its life. The strings
 * and the address belong to the connection, which outlives the relay. */
struct relay_peer {
	struct route *route;        /* config, rate limiter, draining, generation */
	struct metrics_route *m;    /* the route's entry at accept */
	struct log_ctx ctx;         /* route name at accept, connection id, "ip:port" */
	const struct sockaddr *sa;  /* the client's address, for allow_pickle_from */
};

/* What the I/O layer does next with a direction. */
enum relay_act {
	RELAY_CONTINUE = 0, /* keep reading into the buffer and calling relay_process */
	RELAY_SPLICE,       /* the next `splice` bytes of the input may move socket to
			       socket unseen (then report them with relay_spliced) */
	RELAY_CLOSE,        /* close the connection: reason, detail, from */
};

struct relay_action {
	enum relay_act act;
	uint64_t splice;    /* RELAY_SPLICE: bytes of the current frame still to come */
	const char *reason; /* RELAY_CLOSE: for the close line and metrics */
	const char *detail;
	const char *from;   /* "client"/"worker" whose bytes broke the rules, or NULL */
};

/* Both directions' parse state for a new connection; NULL when out of
 * memory. */
struct relay *relay_new(const struct relay_peer *p) __attribute__((warn_unused_result));
void relay_free(struct relay *r);

/* Process what was read into `in` for direction w, moving what may pass
 * to `out`. On RELAY_CLOSE, what was judged before the violation is in
 * `out` already and a client refused at its handshake was logged. */
struct relay_action relay_process(struct relay *r, enum relay_way w, struct evbuffer *in,
				  struct evbuffer *out) __attribute__((warn_unused_result));

/* The output w feeds has drained (pgbouncer's SBUF_EV_FLUSH): a splice
 * that waited for it may start. RELAY_SPLICE when the rest of the current
 * frame may bypass the buffers now, RELAY_CONTINUE otherwise. */
struct relay_action relay_drained(const struct relay *r, enum relay_way w,
				  const struct evbuffer *in);

/* n bytes that relay_process or relay_drained let bypass were moved in the
 * kernel: advance past them (finishing the frame, maybe the message, on
 * the last). Returns what may still bypass (RELAY_SPLICE) or CONTINUE. */
struct relay_action relay_spliced(struct relay *r, enum relay_way w, uint64_t n);

/* Both handshake frames have been relayed (or refused with ERROR). */
bool relay_handshake_done(const struct relay *r);

/* Direction w is between messages, with nothing of one in `in` (for the
 * client direction once stopped by a drain, what waits in `in` is never
 * parsed). */
bool relay_at_boundary(const struct relay *r, enum relay_way w, const struct evbuffer *in);

/* Draining: take no new client message. Called at a boundary; the relay
 * also stops by itself at the end of each client message while the route
 * drains. */
void relay_stop_client(struct relay *r);
bool relay_client_stopped(const struct relay *r);

/* Bytes the relay holds itself (frames of a message awaiting its last
 * verdict), for the memory budget. */
uint64_t relay_held(const struct relay *r);

/* Client messages relayed and dropped, for the close line. */
uint64_t relay_msgs(const struct relay *r);
uint64_t relay_dropped(const struct relay *r);

#endif
