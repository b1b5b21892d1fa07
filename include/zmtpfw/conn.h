/* conn: one proxied connection, client <-> worker. Owns both sockets, their
 * buffers and timers, and the per-direction parse state used by relay. */
#ifndef ZMTPFW_CONN_H
#define ZMTPFW_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "zmtpfw/inspect.h"
#include "zmtpfw/splice.h"
#include "zmtpfw/zmtp.h"

struct event;
struct evbuffer;
struct listener;
struct metrics_route;

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
};

enum dir_phase {
	DIR_GREETING = 0, /* relaying and validating the 64-byte greeting */
	DIR_HANDSHAKE,    /* the first frame: READY or ERROR */
	DIR_TRAFFIC,      /* frames */
	DIR_ERRORED,      /* sent ERROR: nothing more may follow */
};

/* Where the frames of the message being parsed go. */
enum msg_state {
	MSG_IDLE = 0, /* between messages, or forwarding a judged last frame */
	MSG_HOLD,     /* frames kept in `hold` until the last one is judged */
	MSG_DROP,     /* a frame was a pickle: drain the rest of the message */
};

/* Where the current frame's bytes go. */
enum frame_dest {
	FRAME_FWD = 0,   /* straight to the other side */
	FRAME_PENDING,   /* kept in `in` until judged (data) or complete (command) */
	FRAME_HOLD,      /* judged clean, not last: appended to `hold` */
	FRAME_DRAIN,     /* part of a dropped message */
};

/* Parse state of one direction. */
struct dir {
	enum dir_phase phase;
	bool from_client;          /* client->worker: the direction that is scanned */
	bool scan;                 /* inspect data frames for pickle */
	uint8_t greet[ZMTP_GREETING_LEN]; /* greeting bytes validated so far */
	uint8_t greet_have;
	struct zmtp_dec dec;       /* frame decoder */
	size_t parsed;             /* bytes at the front of src->in the decoder has
				      seen whose destination is not applied yet */
	enum frame_dest dest;      /* of the current frame */
	bool frame_more;           /* current frame has MORE */
	bool frame_cmd;            /* current frame is a command */
	bool frame_judged;         /* scanner verdict known for the current frame */
	enum msg_state msg;
	bool in_msg;               /* a data frame with MORE was seen: mid-message */
	bool would_drop;           /* log-only: the message being relayed has a pickle */
	bool drain_stop;           /* draining: parsing stopped at a message boundary */
	bool subscriber;           /* the sender's Socket-Type is SUB or XSUB: it may send
				      SUBSCRIBE and CANCEL */
	uint32_t frame_idx;        /* index of the current frame in its message */
	uint64_t msg_bytes;        /* declared bytes of the message so far */
	uint64_t frame_seen;       /* body bytes of the current frame seen */
	struct evbuffer *hold;     /* frames of a message awaiting its last verdict */
	struct inspect *ins;       /* frame inspector, allocated only when scanning */
	struct inspect_cfg icfg;   /* what this peer's frames are judged by */
	const char *drop_reason;   /* of the message being dropped, for metrics */
	uint64_t msgs, dropped;    /* counters for the close line */
};

enum conn_state {
	CONN_CONNECTING = 0, /* dialling the worker; client not read yet */
	CONN_RELAYING,       /* greeting, handshake, traffic */
	CONN_CLOSED,
};

struct conn {
	struct conn *prev, *next;     /* the listener's list of live connections */
	TAILQ_ENTRY(conn) all;        /* every live connection: the memory budget's */
	uint64_t mem;                 /* bytes its buffers held when last counted */
	uint64_t id;
	enum conn_state state;
	struct listener *lst;         /* route runtime */
	struct metrics_route *m;      /* the route's metrics entry at accept, and */
	char route[64];               /* its name at accept: a reload renaming the route
					 must not move this connection's gauge or labels */
	struct side client, upstream;
	struct dir up, down;          /* up: client->worker, down: worker->client */
	struct event *timer;          /* connect, then handshake deadline, then idle check */
	bool handshake_done;          /* both handshake frames relayed */
	bool state_was_connecting;    /* closed while dialling: an upstream failure */
	bool worker_quiet;            /* draining: no worker bytes since the last drain tick */
	bool ev_failed;               /* a libevent call failed: closing (see conn_ev_failed) */
	uint64_t last_active_ms;      /* monotonic ms of the last byte read, for idle_timeout */
	char peer[64];                /* "ip:port" for logs */
	struct sockaddr_storage peer_sa;
	bool log_only;                /* route mode */
	bool pickle_trusted;          /* peer in allow_pickle_from, or pickle = allow */
	bool repolicy;                /* reloaded: re-derive the three above at the next message */
	struct timespec started;      /* monotonic, for duration */
	const char *close_reason;     /* set by whoever decides to close */
	const char *close_detail;
	const char *close_from;       /* "client"/"worker": whose bytes broke the rules */
};

/* A fresh connection id (also used for peers rejected at accept). */
uint64_t conn_next_id(void);

/* "a.b.c.d:port" or "[v6]:port" */
void conn_format_peer(const struct sockaddr *sa, char *buf, size_t len);

/* Take over an accepted socket that passed the allowlist (or, in log-only
 * mode, would not have: would_reject). Dials the worker. */
void conn_start(struct listener *l, uint64_t id, int fd, const struct sockaddr *sa,
		socklen_t salen, bool would_reject);

/* Close both sockets, log "close", free. Safe to call once per conn. */
void conn_close(struct conn *c);

/* The process memory budget (max_memory): when the bytes held in every
 * connection's buffers exceed it after a read, the connection holding the
 * most is closed (reason "memory") until the total fits. Set at start and
 * by each reload. */
void conn_set_max_memory(uint64_t bytes);

/* Graceful shutdown (SIGTERM): from now on every connection stops taking new
 * client messages at a message boundary and closes once nothing is in
 * flight either way. */
void conn_drain_begin(void);
extern bool conn_draining; /* set by conn_drain_begin; read inline on the data path */

/* Called every CONN_DRAIN_TICK_MS while draining: closes c if it is at a
 * message boundary both ways, has nothing queued, and the worker has been
 * quiet since the previous tick (a reply may still be coming otherwise).
 * Returns true when it closed c. */
#define CONN_DRAIN_TICK_MS 100
bool conn_drain_tick(struct conn *c);

#endif
