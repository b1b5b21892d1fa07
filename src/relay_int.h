/* relay_int.h: what the relay's two layers share. Internal to the relay:
 * not under include/, so conn sees only the opaque struct relay.
 *
 *   relay.c          the connection's session: greeting, handshake, the
 *                    public interface (process, splice offers, drain)
 *     -> relay_frames.c  frames after the handshake: the walk over the
 *                        input, commands, messages, verdicts, policy
 */
#ifndef ZMTPFW_RELAY_INT_H
#define ZMTPFW_RELAY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zmtpfw/inspect.h"
#include "zmtpfw/log.h"
#include "zmtpfw/relay.h"
#include "zmtpfw/route.h"
#include "zmtpfw/zmtp.h"

enum relay_phase {
	RELAY_GREETING = 0, /* relaying and validating the 64-byte greeting */
	RELAY_HANDSHAKE,    /* the first frame: READY or ERROR */
	RELAY_TRAFFIC,      /* frames */
	RELAY_ERRORED,      /* sent ERROR: nothing more may follow */
};

/* Where the frames of the message being parsed go. */
enum relay_msg {
	MSG_IDLE = 0, /* between messages, or forwarding a judged last frame */
	MSG_HOLD,     /* frames kept in `hold` until the last one is judged */
	MSG_DROP,     /* a frame was a pickle: drain the rest of the message */
};

/* Where the current frame's bytes go. */
enum relay_dest {
	FRAME_FWD = 0,   /* straight to the other side */
	FRAME_PENDING,   /* kept in `in` until judged (data) or complete (command) */
	FRAME_HOLD,      /* judged clean, not last: appended to `hold` */
	FRAME_DRAIN,     /* part of a dropped message */
};

/* Parse state of one direction. */
struct dir {
	enum relay_phase phase;
	bool from_client;          /* client->worker: the direction that is scanned */
	bool scan;                 /* inspect data frames for pickle */
	uint8_t greet[ZMTP_GREETING_LEN]; /* greeting bytes validated so far */
	uint8_t greet_have;
	struct zmtp_dec dec;       /* frame decoder */
	size_t parsed;             /* bytes at the front of the input the decoder has
				      seen whose destination is not applied yet */
	enum relay_dest dest;      /* of the current frame */
	bool frame_more;           /* current frame has MORE */
	bool frame_cmd;            /* current frame is a command */
	enum relay_msg msg;
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

/* Both directions and what they answer to. */
struct relay {
	struct route *route;       /* config in force, rate limiter, draining, generation */
	struct metrics_route *m;   /* the route's entry at accept */
	struct log_ctx ctx;        /* identity on every line (strings owned by conn) */
	const struct sockaddr *sa; /* the client's address, for allow_pickle_from */
	uint64_t gen;              /* route generation the limits were taken from */
	bool log_only;             /* route mode */
	bool repolicy;             /* reloaded: re-derive policy at the next client message */
	struct dir up, down;       /* up: client->worker, down: worker->client */
	struct relay_action close; /* set by whoever decides to close */
};

static inline struct dir *relay_dir(struct relay *r, enum relay_way w)
{
	return w == RELAY_UP ? &r->up : &r->down;
}


/* Record why the connection must close and return -1 for the caller. The
 * close line carries reason and detail; a refusal during the greeting or
 * handshake of the client is a "reject" as well. */
static inline int relay_fail(struct relay *r, const struct dir *d, const char *reason, const char *detail)
{
	if (d->from_client && d->phase < RELAY_TRAFFIC)
		log_event(LOG_WARN, &r->ctx, r->route->rl, "reject", LOG_STR("reason", reason),
			  LOG_STR("detail", detail), LOG_END);
	r->close = (struct relay_action){ .act = RELAY_CLOSE, .reason = reason, .detail = detail,
					  .from = d->from_client ? "client" : "worker" };
	return -1;
}


/* Derive the connection's policy (mode, trust, scanning, frame limits)
 * from the route's config in force. -1 when out of memory. */
int relay_frames_policy(struct relay *r) __attribute__((warn_unused_result));

/* Walk the frames in `in` for d, moving what may pass to `out`. 0, or -1
 * to close (r->close says why). */
int relay_frames_walk(struct relay *r, struct dir *d, struct evbuffer *in, struct evbuffer *out)
	__attribute__((warn_unused_result));

/* d's current frame ended (parsed, or its body spliced). */
void relay_frames_done(struct relay *r, struct dir *d);

#endif
