/* zmtp: the ZMTP 3.x wire format as libzmq 4.3 speaks it (see shared ZMTP.md).
 * Pure: no libevent, no I/O, no allocation. The relay feeds it bytes and acts
 * on what it reports; it never decides anything from a byte it was not shown. */
#ifndef ZMTPFW_ZMTP_H
#define ZMTPFW_ZMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZMTP_GREETING_LEN 64
#define ZMTP_SIG_LEN 10   /* 0xFF, 8 padding bytes, 0x7F */
#define ZMTP_MECH_LEN 20  /* NUL-padded ASCII mechanism name */
#define ZMTP_HDR_MAX 9    /* flags + 8-byte size */
#define ZMTP_CMD_MAX 8192 /* largest command body parsed (READY, SUBSCRIBE...) */

/* Frame flags byte. Anything else is refused: libzmq ignores bits 3-7, so a
 * peer could hide meaning in them that other parsers read differently. */
#define ZMTP_FLAG_MORE 0x01
#define ZMTP_FLAG_LONG 0x02
#define ZMTP_FLAG_COMMAND 0x04

enum zmtp_result { ZMTP_OK = 0, ZMTP_NEED_MORE, ZMTP_ERR };

/* One frame header. The decoder, the handshake and the relay's fast path
 * all read headers with zmtp_hdr_parse: one parser, one set of rules. */
struct zmtp_hdr {
	uint8_t flags; /* MORE, LONG, COMMAND */
	uint8_t len;   /* header bytes: 2, or 9 in the long form */
	uint64_t size; /* declared body size */
};

/* Header bytes a flags byte announces. */
static inline uint8_t zmtp_hdr_len(uint8_t flags)
{
	return (flags & ZMTP_FLAG_LONG) ? 9 : 2;
}

/* Parse the header at p[0..n). The flags are judged from the first byte
 * (so a bad one fails however the header is split), the size once the
 * header is whole. ZMTP_NEED_MORE until then; ZMTP_ERR with *why
 * ("reserved-flags", "command-more", "frame-too-large"). Inline: the
 * relay's fast path calls it for every short frame. The long form for a
 * small size is legal (libzmq accepts it). */
static inline enum zmtp_result zmtp_hdr_parse(const uint8_t *p, size_t n, uint64_t max_frame,
					      struct zmtp_hdr *h, const char **why)
{
	if (n == 0)
		return ZMTP_NEED_MORE;
	uint8_t f = p[0];
	if (f & ~(ZMTP_FLAG_MORE | ZMTP_FLAG_LONG | ZMTP_FLAG_COMMAND)) {
		*why = "reserved-flags";
		return ZMTP_ERR;
	}
	if ((f & ZMTP_FLAG_COMMAND) && (f & ZMTP_FLAG_MORE)) {
		*why = "command-more";
		return ZMTP_ERR;
	}
	h->flags = f;
	h->len = zmtp_hdr_len(f);
	if (n < h->len)
		return ZMTP_NEED_MORE;
	if (h->len == 2) {
		h->size = p[1];
	} else {
		h->size = 0;
		for (int i = 1; i < 9; i++)
			h->size = (h->size << 8) | p[i];
	}
	if (h->size > max_frame) {
		*why = "frame-too-large";
		return ZMTP_ERR;
	}
	return ZMTP_OK;
}

/* Validate the first `have` (<= 64) bytes of a peer's greeting. Returns OK if
 * that prefix is acceptable so far (the caller forwards it), ERR with a static
 * reason in *why otherwise. Only revision 3 (minor 0 or 1) and a mechanism in
 * `mechs` (n entries of 20 wire bytes) are accepted. */
enum zmtp_result zmtp_greeting_check(const uint8_t *g, size_t have,
				     const char (*mechs)[ZMTP_MECH_LEN], size_t n_mechs,
				     const char **why);

/* Resumable frame decoder, one per direction. */
enum zmtp_dec_state {
	ZMTP_DEC_HEADER = 0, /* collecting flags and size bytes */
	ZMTP_DEC_BODY,       /* `left` body bytes still to come */
	ZMTP_DEC_FAILED,     /* sticky after an error */
};

struct zmtp_dec {
	enum zmtp_dec_state state;
	uint8_t hdr[ZMTP_HDR_MAX]; /* header bytes gathered so far */
	uint8_t hdr_have;          /* how many of them */
	uint8_t flags;             /* current frame's flags byte */
	uint8_t hdr_len;           /* 2 (short) or 9 (long form) */
	uint64_t size;             /* current frame's declared body size */
	uint64_t left;             /* body bytes not yet delivered */
	uint64_t max_frame;        /* refuse larger frames at the header */
};

enum zmtp_ev_kind {
	ZMTP_EV_NEED_MORE = 0, /* input exhausted, no event */
	ZMTP_EV_HEADER,        /* header complete: d->flags, d->size valid */
	ZMTP_EV_BODY,          /* body bytes: ev->p, ev->n (a span of the input) */
	ZMTP_EV_ERROR,         /* ev->why; the decoder is now FAILED */
};

struct zmtp_ev {
	enum zmtp_ev_kind kind;
	bool frame_end;   /* HEADER of an empty frame, or BODY ending the frame */
	const uint8_t *p; /* BODY span */
	size_t n;
	const char *why; /* ERROR reason: "reserved-flags", "command-more", "frame-too-large" */
};

void zmtp_dec_init(struct zmtp_dec *d, uint64_t max_frame);

/* Between frames: no byte of a header gathered, no body pending. */
static inline bool zmtp_dec_idle(const struct zmtp_dec *d)
{
	return d->state == ZMTP_DEC_HEADER && d->hdr_have == 0;
}

/* Consume bytes from p[0..n) up to and including one event; returns how many
 * were consumed (0 only with NEED_MORE on empty input or on ERROR). */
size_t zmtp_dec_step(struct zmtp_dec *d, const uint8_t *p, size_t n, struct zmtp_ev *ev);

/* Account for n body bytes of the current frame that moved without being
 * shown (spliced in the kernel once the frame's verdict was known). Only in
 * BODY state and n <= left; anything else fails the decoder and returns
 * false. Sets *frame_end when they were the frame's last bytes. */
bool zmtp_dec_skip(struct zmtp_dec *d, uint64_t n, bool *frame_end);

/* Commands, parsed from a whole body (<= ZMTP_CMD_MAX bytes). */
enum zmtp_cmd {
	ZMTP_CMD_READY = 0,
	ZMTP_CMD_ERROR,
	ZMTP_CMD_PING,
	ZMTP_CMD_PONG,
	ZMTP_CMD_SUBSCRIBE,
	ZMTP_CMD_CANCEL,
};

/* What the handshake tells about a peer. */
struct zmtp_ready {
	char socket_type[16]; /* "" when the property is absent */
	bool subscriber;      /* SUB or XSUB: may send SUBSCRIBE and CANCEL */
	bool has_identity;
	uint8_t identity_len;
};

/* Parse the handshake frame (READY or ERROR only) strictly: property names
 * are 1..255 RFC name-chars, each value length fits, no duplicate names
 * (case-insensitive), Socket-Type/Identity spelled exactly as libzmq reads
 * them, Socket-Type a known type. */
enum zmtp_result zmtp_handshake_parse(const uint8_t *body, size_t n, enum zmtp_cmd *cmd,
				      struct zmtp_ready *r, const char **why);

/* Parse a command after the handshake: PING, PONG, SUBSCRIBE or CANCEL. */
enum zmtp_result zmtp_command_parse(const uint8_t *body, size_t n, enum zmtp_cmd *cmd,
				    const char **why);

/* The socket types libzmq knows ("PUSH", "ROUTER", ...), as peers send
 * them in Socket-Type; NULL-terminated. The one table: config checks
 * socket_types against it too. */
extern const char *const zmtp_socket_types[];

/* Is `name` in zmtp_socket_types? */
bool zmtp_socket_type_valid(const char *name);

#endif
