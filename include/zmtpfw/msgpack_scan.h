/* msgpack_scan: a resumable walker that decides whether one ZMTP frame of
 * known size is exactly one msgpack object (as msgpack-python's unpackb
 * would accept it), and hands out the payloads in which pickles travel:
 * ext type 1 and 2 (vLLM: pickle, cloudpickle) and every bin 8/16/32
 * (SGLang's PickleWrapper). Pure: no allocation, no I/O; the same events
 * whatever way the bytes are split (the zmtp decoder's contract).
 *
 * The frame is msgpack only when one object spans it exactly: an object
 * that ends early (trailing bytes), a length running past the frame's end,
 * or 0xc1 make it NOT_MSGPACK, usually within the first bytes of anything
 * that is not msgpack. Nesting deeper than MPSCAN_MAX_DEPTH is TOO_DEEP:
 * the caller fails closed (it cannot tell what a decoder would do). */
#ifndef ZMTPFW_MSGPACK_SCAN_H
#define ZMTPFW_MSGPACK_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MPSCAN_MAX_DEPTH 64

enum mpscan_ev_kind {
	MPSCAN_EV_NEED_MORE = 0, /* all input used, frame not finished */
	MPSCAN_EV_PAYLOAD,       /* a payload of interest starts: ev.ext_type,
				    ev.len; its bytes follow as BYTES events */
	MPSCAN_EV_BYTES,         /* ev.p[0..ev.n) of the current payload */
	MPSCAN_EV_PAYLOAD_END,   /* the current payload is complete */
	MPSCAN_EV_MSGPACK,       /* final: the frame is one msgpack object */
	MPSCAN_EV_NOT_MSGPACK,   /* final: it is not (ev.why says why) */
	MPSCAN_EV_TOO_DEEP,      /* final: nesting beyond MPSCAN_MAX_DEPTH */
};

struct mpscan_ev {
	enum mpscan_ev_kind kind;
	int ext_type;       /* PAYLOAD: 1 or 2 for ext, -1000 for bin */
	uint64_t len;       /* PAYLOAD: payload length */
	const uint8_t *p;   /* BYTES */
	size_t n;           /* BYTES */
	const char *why;    /* NOT_MSGPACK: static string for logs */
};

#define MPSCAN_BIN (-1000)

struct mpscan {
	/* private: see msgpack_scan.c. Fixed size, no pointers into input. */
	uint64_t frame_left;   /* bytes of the frame not yet consumed */
	uint64_t skip;         /* bytes left of the current body */
	uint64_t due;          /* items of open containers not yet started:
				  each needs >= 1 byte, so due <= frame_left
				  always holds for a frame that can still be
				  msgpack (checked at every length) */
	uint64_t left[MPSCAN_MAX_DEPTH]; /* items not yet complete per open
					    container (maps count keys and
					    values, so a map32 needs 33 bits;
					    512 of the struct's ~560 bytes) */
	const char *why;       /* NOT_MSGPACK: reason, a static string */
	uint32_t depth;        /* open containers, 0 at top level */
	uint8_t state;         /* enum mpscan_state (msgpack_scan.c) */
	uint8_t final;         /* enum mpscan_ev_kind once state is final */
	uint8_t type;          /* type byte of the object being read */
	uint8_t hdr[5];        /* header bytes after it: length (<= 4), ext type */
	uint8_t hdr_have;      /* bytes in hdr */
	uint8_t hdr_need;      /* header size for this type */
	uint8_t len_bytes;     /* bytes of hdr that are the length or count */
};

/* Start a frame of frame_size bytes (0: the first step says NOT_MSGPACK). */
void mpscan_init(struct mpscan *m, uint64_t frame_size);

/* Consume from p[0..n) and report the next event. Returns the bytes used
 * (possibly 0 for PAYLOAD_END and final events). Call again with the rest
 * until NEED_MORE (all used) or a final event; after a final event every
 * call returns that event again with 0 used. n == 0 is allowed (p may then
 * be NULL) and reports any event that needs no bytes.
 *
 * Bytes past the frame's end are never used: once frame_size bytes went
 * in, the verdict is there without another byte. BYTES events point into
 * p (nothing is copied or kept). Payloads are reported as they pass, before
 * the verdict: when the verdict is NOT_MSGPACK (trailing bytes, a later
 * length past the end), the payload events already given meant nothing and
 * the frame must be judged as raw bytes. NOT_MSGPACK is never given to a
 * frame any msgpack-python options decode; MSGPACK may be given to frames
 * msgpack-python refuses (see msgpack_scan.c: we are the lenient side). */
size_t mpscan_step(struct mpscan *m, const uint8_t *p, size_t n, struct mpscan_ev *ev);

#endif
