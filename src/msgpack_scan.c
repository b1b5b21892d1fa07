/* msgpack_scan: resumable walker deciding whether one frame is exactly one
 * msgpack object, handing out ext 1/2 and bin payloads as they stream past.
 * Pure, no allocation; the same events however the bytes are split.
 *
 * The walker never holds a body: str, other ext types and fixed-size
 * scalars are skipped by counting, payloads are handed out as BYTES events
 * pointing into the caller's buffer. Only headers (at most 5 bytes after the
 * type byte) are collected, so a header may be split anywhere.
 *
 * "Msgpack" means structurally valid: what msgpack-python accepts with its
 * most lenient options. Facts about msgpack-python 1.0.3 (Debian 12's
 * python3-msgpack, C extension _cmsgpack, checked by hand and by
 * tests/scanner/msgpack_difftest.py), and what the walker does with each:
 *
 * - Nesting: its parser has a fixed stack of 1024 containers. 1024 nested
 *   arrays decode; a container opened at level 1025 raises StackError (a
 *   ValueError), even an empty one (the check precedes the count). We stop
 *   at MPSCAN_MAX_DEPTH (64) with TOO_DEEP, empty containers included;
 *   frames nested 65..1024 deep would decode there, so the caller must
 *   fail closed on TOO_DEEP.
 * - str with invalid UTF-8: unpackb(raw=False), the default, raises
 *   UnicodeDecodeError, but raw=True or unicode_errors= accept it. We never
 *   look inside str bodies (more lenient, and O(1) per chunk).
 * - ext type -1 (timestamp) with a length other than 4/8/12, or
 *   nanoseconds above 999999999, raises whatever ext_hook is given. ext
 *   codes below -1 raise under the default ext_hook (ExtType wants 0..127)
 *   but reach a custom one. We accept every ext code and length.
 * - Map keys: strict_map_key=True (default) refuses keys other than str
 *   and bytes, and unhashable keys raise TypeError without
 *   object_pairs_hook. We accept any key and report payloads in keys too.
 * - Duplicate keys: the dict keeps one value; we report the payloads of
 *   every entry (what object_pairs_hook or another decoder would see).
 * - Length limits: unpackb's max_{str,bin,ext,array}_len default to the
 *   buffer length and max_map_len to half of it; a structurally valid frame
 *   never exceeds them, so no extra check is needed to be as strict.
 * - 0xc1 raises FormatError, trailing bytes ExtraData, an empty or
 *   truncated buffer "incomplete input": all NOT_MSGPACK here.
 * Being more lenient than the decoder only reports more payloads; being
 * stricter could hide one, so every refusal below is one no decoder can
 * accept: a byte that is no type, a length or count past the frame's end,
 * or bytes after the object. */
#include "zmtpfw/msgpack_scan.h"

#include <string.h>

enum mpscan_state {
	MPSCAN_ST_HEAD,        /* the next byte is an object's type byte */
	MPSCAN_ST_HDR,         /* collecting hdr_need header bytes */
	MPSCAN_ST_SKIP,        /* counting `skip` body bytes nobody needs */
	MPSCAN_ST_PAYLOAD,     /* handing out `skip` payload bytes as BYTES */
	MPSCAN_ST_PAYLOAD_END, /* payload complete: PAYLOAD_END is due */
	MPSCAN_ST_FINAL,       /* verdict in `final`, repeated on every call */
};

static void mpscan_final(struct mpscan *m, enum mpscan_ev_kind kind, const char *why)
{
	m->state = MPSCAN_ST_FINAL;
	m->final = (uint8_t)kind;
	m->why = why;
}

static void mpscan_fail(struct mpscan *m, const char *why)
{
	mpscan_final(m, MPSCAN_EV_NOT_MSGPACK, why);
}

void mpscan_init(struct mpscan *m, uint64_t frame_size)
{
	/* Every field but left[], which is written when a container opens
	 * before it is read: 512 bytes not cleared per inspected frame. */
	m->skip = 0;
	m->due = 0;
	m->why = NULL;
	m->depth = 0;
	m->final = 0;
	m->type = 0;
	memset(m->hdr, 0, sizeof(m->hdr));
	m->hdr_have = m->hdr_need = m->len_bytes = 0;
	m->frame_left = frame_size;
	m->state = MPSCAN_ST_HEAD;
	/* Decided now, so a call with no bytes already says it. */
	if (frame_size == 0)
		mpscan_fail(m, "empty frame");
}

/* Can `need` more bytes of the current object fit, with one byte for each
 * item still due after it? due <= frame_left holds here (see struct). */
static bool mpscan_fits(const struct mpscan *m, uint64_t need)
{
	return need <= m->frame_left - m->due;
}

/* The current object is complete: count it in its container and close
 * every container it completes. At top level the frame must end here. */
static void mpscan_item_done(struct mpscan *m)
{
	while (m->depth > 0) {
		if (--m->left[m->depth - 1] > 0) {
			m->state = MPSCAN_ST_HEAD;
			return;
		}
		m->depth--;
	}
	if (m->frame_left == 0)
		mpscan_final(m, MPSCAN_EV_MSGPACK, NULL);
	else
		mpscan_fail(m, "trailing bytes");
}

/* A container of `items` objects (maps: keys plus values) starts. */
static void mpscan_open(struct mpscan *m, uint64_t items)
{
	/* The count first: a frame too short for it is not msgpack at all,
	 * whatever its depth, and that is the stronger verdict. */
	if (!mpscan_fits(m, items)) {
		mpscan_fail(m, "container count past frame end");
		return;
	}
	/* msgpack-python checks its stack before looking at the count, so an
	 * empty container is too deep as well; we do the same. */
	if (m->depth == MPSCAN_MAX_DEPTH) {
		mpscan_final(m, MPSCAN_EV_TOO_DEEP, NULL);
		return;
	}
	if (items == 0) {
		mpscan_item_done(m);
		return;
	}
	m->left[m->depth++] = items;
	m->due += items;
	m->state = MPSCAN_ST_HEAD;
}

/* A body of len bytes nobody needs (str, other ext, fixed-size scalar). */
static void mpscan_skip(struct mpscan *m, uint64_t len)
{
	if (!mpscan_fits(m, len)) {
		mpscan_fail(m, "length past frame end");
		return;
	}
	if (len == 0) {
		mpscan_item_done(m);
		return;
	}
	m->skip = len;
	m->state = MPSCAN_ST_SKIP;
}

/* Header of `need` bytes, of which the first len_bytes are a big-endian
 * length or count; `body` more bytes are known to follow (fixext). */
static void mpscan_hdr(struct mpscan *m, uint8_t len_bytes, uint8_t need, uint64_t body)
{
	if (!mpscan_fits(m, (uint64_t)need + body)) {
		mpscan_fail(m, "header past frame end");
		return;
	}
	m->len_bytes = len_bytes;
	m->hdr_need = need;
	m->hdr_have = 0;
	m->state = MPSCAN_ST_HDR;
}

/* Fixed-size scalars: uint8-64 (0xcc-0xcf), int8-64 (0xd0-0xd3). */
static const uint8_t mpscan_int_size[8] = {1, 2, 4, 8, 1, 2, 4, 8};

static void mpscan_type(struct mpscan *m, uint8_t b)
{
	m->type = b;
	if (b <= 0x7f || b >= 0xe0) { /* positive and negative fixint */
		mpscan_item_done(m);
	} else if (b <= 0x8f) { /* fixmap */
		mpscan_open(m, 2u * (b & 0x0f));
	} else if (b <= 0x9f) { /* fixarray */
		mpscan_open(m, b & 0x0f);
	} else if (b <= 0xbf) { /* fixstr */
		mpscan_skip(m, b & 0x1f);
	} else if (b >= 0xcc && b <= 0xd3) {
		mpscan_skip(m, mpscan_int_size[b - 0xcc]);
	} else if (b >= 0xd4 && b <= 0xd8) { /* fixext 1..16: type byte, data */
		mpscan_hdr(m, 0, 1, 1u << (b - 0xd4));
	} else {
		switch (b) {
		case 0xc0: /* nil */
		case 0xc2: /* false */
		case 0xc3: /* true */
			mpscan_item_done(m);
			break;
		case 0xc1:
			mpscan_fail(m, "0xc1 is never used");
			break;
		case 0xc4: /* bin 8/16/32 */
		case 0xd9: /* str 8/16/32 */
			mpscan_hdr(m, 1, 1, 0);
			break;
		case 0xc5:
		case 0xda:
		case 0xdc: /* array 16/32 */
		case 0xde: /* map 16/32 */
			mpscan_hdr(m, 2, 2, 0);
			break;
		case 0xc6:
		case 0xdb:
		case 0xdd:
		case 0xdf:
			mpscan_hdr(m, 4, 4, 0);
			break;
		case 0xc7: /* ext 8/16/32: length, then the type byte */
			mpscan_hdr(m, 1, 2, 0);
			break;
		case 0xc8:
			mpscan_hdr(m, 2, 3, 0);
			break;
		case 0xc9:
			mpscan_hdr(m, 4, 5, 0);
			break;
		case 0xca: /* float 32 */
			mpscan_skip(m, 4);
			break;
		default: /* 0xcb float 64 */
			mpscan_skip(m, 8);
			break;
		}
	}
}

static uint64_t mpscan_hdr_len(const struct mpscan *m)
{
	uint64_t v = 0;
	for (uint8_t i = 0; i < m->len_bytes; i++)
		v = (v << 8) | m->hdr[i];
	return v;
}

/* A payload starts: PAYLOAD now, its bytes (if any) next. */
static void mpscan_payload(struct mpscan *m, int ext_type, uint64_t len, struct mpscan_ev *ev)
{
	ev->kind = MPSCAN_EV_PAYLOAD;
	ev->ext_type = ext_type;
	ev->len = len;
	m->skip = len;
	m->state = len ? MPSCAN_ST_PAYLOAD : MPSCAN_ST_PAYLOAD_END;
}

/* The length bytes are in: check the length before waiting for anything
 * else (an ext's type byte), so a bad one is refused at once. */
static void mpscan_len_done(struct mpscan *m)
{
	uint64_t len = mpscan_hdr_len(m);
	uint8_t t = m->type;

	if (t == 0xdc || t == 0xdd)
		mpscan_open(m, len);
	else if (t == 0xde || t == 0xdf)
		mpscan_open(m, 2 * len); /* len < 2^32: no overflow */
	else if (!mpscan_fits(m, (uint64_t)(m->hdr_need - m->len_bytes) + len))
		mpscan_fail(m, "length past frame end");
}

/* Header complete: start the body. ev gets PAYLOAD when one starts. */
static void mpscan_hdr_done(struct mpscan *m, struct mpscan_ev *ev)
{
	uint8_t t = m->type;
	uint64_t len;
	int8_t ext;

	if (t >= 0xd4 && t <= 0xd8) { /* fixext: hdr[0] is the ext type */
		len = 1u << (t - 0xd4);
		ext = (int8_t)m->hdr[0];
	} else if (t >= 0xc7 && t <= 0xc9) {
		len = mpscan_hdr_len(m);
		ext = (int8_t)m->hdr[m->len_bytes];
	} else if (t >= 0xc4 && t <= 0xc6) {
		mpscan_payload(m, MPSCAN_BIN, mpscan_hdr_len(m), ev);
		return;
	} else { /* str 8/16/32; containers were opened in mpscan_len_done */
		mpscan_skip(m, mpscan_hdr_len(m));
		return;
	}
	if (ext == 1 || ext == 2)
		mpscan_payload(m, ext, len, ev);
	else
		mpscan_skip(m, len);
}

size_t mpscan_step(struct mpscan *m, const uint8_t *p, size_t n, struct mpscan_ev *ev)
{
	size_t used = 0;

	memset(ev, 0, sizeof(*ev));
	ev->kind = MPSCAN_EV_NEED_MORE;
	/* Never look past the frame, whatever the caller hands in. */
	if (n > m->frame_left)
		n = (size_t)m->frame_left;

	for (;;) {
		switch ((enum mpscan_state)m->state) {
		case MPSCAN_ST_FINAL:
			ev->kind = (enum mpscan_ev_kind)m->final;
			ev->why = m->why;
			return used;
		case MPSCAN_ST_PAYLOAD_END:
			ev->kind = MPSCAN_EV_PAYLOAD_END;
			mpscan_item_done(m); /* a final verdict waits for the next call */
			return used;
		case MPSCAN_ST_PAYLOAD: {
			size_t take = n - used;
			if (take == 0)
				return used;
			if (take > m->skip)
				take = (size_t)m->skip;
			ev->kind = MPSCAN_EV_BYTES;
			ev->p = p + used;
			ev->n = take;
			m->skip -= take;
			m->frame_left -= take;
			if (m->skip == 0)
				m->state = MPSCAN_ST_PAYLOAD_END;
			return used + take;
		}
		case MPSCAN_ST_SKIP: {
			size_t take = n - used;
			if (take == 0)
				return used;
			if (take > m->skip)
				take = (size_t)m->skip;
			m->skip -= take;
			m->frame_left -= take;
			used += take;
			if (m->skip == 0)
				mpscan_item_done(m);
			break;
		}
		case MPSCAN_ST_HEAD:
			if (used == n)
				return used;
			m->frame_left--;
			if (m->depth > 0)
				m->due--; /* this item has started */
			mpscan_type(m, p[used++]);
			break;
		case MPSCAN_ST_HDR:
			if (used == n)
				return used;
			m->frame_left--;
			m->hdr[m->hdr_have++] = p[used++];
			if (m->hdr_have == m->len_bytes) {
				mpscan_len_done(m);
				if (m->state != MPSCAN_ST_HDR)
					break; /* failed, or a container opened */
			}
			if (m->hdr_have == m->hdr_need) {
				mpscan_hdr_done(m, ev);
				if (ev->kind == MPSCAN_EV_PAYLOAD)
					return used;
			}
			break;
		}
	}
}
