/* fuzz_msgpack_scan: libFuzzer target for the msgpack walker
 * (src/msgpack_scan.c).
 *
 * Input: byte 0 seeds the chunking, the rest is one frame. The frame is fed
 * whole, whole with extra bytes after it (the walker must not take them),
 * byte by byte with empty calls, in strides of (byte0 % 7) + 2, and in
 * pseudo-random pieces with empty calls; each feed yields a record (every
 * event with its fields, payload bytes hashed, the verdict, its reason and
 * the offset where it came). All records must be identical, and must agree
 * with an independent whole-buffer recursive model of the msgpack spec:
 * a valid frame nesting <= MPSCAN_MAX_DEPTH is MSGPACK with the same
 * payloads, a deeper valid one TOO_DEEP, an invalid one NOT_MSGPACK (or
 * TOO_DEEP when the model got deeper than the limit before failing).
 * Per-event contract: used <= n, BYTES non-empty and pointing at the bytes
 * just used, PAYLOAD_END after exactly the announced length, finals
 * sticky. Every feed is an exact-size heap copy, so ASan sees over-reads. */
#include "zmtpfw/msgpack_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
	fprintf(stderr, "fuzz_msgpack_scan: %s\n", what);
	abort();
}

#define FNV_PRIME 0x100000001b3ull
#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * FNV_PRIME;
	return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
	return fnv(h, &v, sizeof(v));
}

struct rec {
	uint64_t events;   /* hash of PAYLOAD/PAYLOAD_END/final events */
	uint64_t payloads; /* hash of the payload types and bytes (model's too) */
	int final;         /* the final event kind */
	const char *why;
	uint64_t at;       /* bytes consumed when the final came */
};

static uint64_t rstate;

static uint64_t rnd(void)
{
	rstate ^= rstate << 13;
	rstate ^= rstate >> 7;
	rstate ^= rstate << 17;
	return rstate;
}

/* mode 0 whole, 1 whole + 3 extra bytes, 2 byte by byte with empties,
 * 3 strides, 4 random pieces with empties. */
static void walk(const uint8_t *f, size_t len, int mode, size_t stride, struct rec *r)
{
	struct mpscan m;
	struct mpscan_ev ev;
	size_t off = 0;
	uint64_t pay_len = 0, pay_got = 0;
	bool in_pay = false, empty = false;

	memset(r, 0, sizeof(*r));
	r->events = r->payloads = FNV_INIT;
	memset(&m, 0x5a, sizeof(m));
	mpscan_init(&m, len);
	for (size_t steps = 0;; steps++) {
		if (steps > 4 * len + 64)
			die("no progress");
		size_t n = len - off, extra = 0;
		if (mode == 1)
			extra = 3;
		else if (mode == 2)
			n = empty ? 0 : (n ? 1 : 0);
		else if (mode == 3)
			n = n < stride ? n : stride;
		else if (mode == 4 && n)
			n = (rnd() % 4 == 0) ? 0 : 1 + rnd() % n;
		empty = !empty;
		uint8_t *chunk = malloc(n + extra ? n + extra : 1);
		if (!chunk)
			die("malloc");
		memcpy(chunk, f + off, n);
		memset(chunk + n, 0xc1, extra);
		size_t used = mpscan_step(&m, chunk, n + extra, &ev);
		if (used > n)
			die("used bytes past the frame");
		if (ev.kind == MPSCAN_EV_BYTES && (ev.n == 0 || ev.n != used || ev.p != chunk))
			die("bad BYTES event");
		free(chunk);
		off += used;
		switch (ev.kind) {
		case MPSCAN_EV_NEED_MORE:
			if (used != n)
				die("NEED_MORE without using everything");
			if (off == len)
				die("no verdict after the whole frame");
			continue;
		case MPSCAN_EV_PAYLOAD:
			if (in_pay)
				die("nested PAYLOAD");
			in_pay = true;
			pay_len = ev.len;
			pay_got = 0;
			r->events = fnv_u64(fnv_u64(r->events, 1), ev.len);
			r->payloads = fnv_u64(r->payloads, (uint64_t)(int64_t)ev.ext_type);
			continue;
		case MPSCAN_EV_BYTES:
			pay_got += ev.n;
			if (pay_got > pay_len)
				die("more BYTES than announced");
			continue;
		case MPSCAN_EV_PAYLOAD_END:
			if (!in_pay || pay_got != pay_len || used != 0)
				die("bad PAYLOAD_END");
			in_pay = false;
			r->payloads = fnv(fnv_u64(r->payloads, 0xE0D), f + off - pay_len, pay_len);
			r->events = fnv_u64(r->events, 2);
			continue;
		default:
			break;
		}
		r->final = ev.kind;
		r->why = ev.why;
		r->at = off;
		if (ev.kind == MPSCAN_EV_MSGPACK && (off != len || in_pay))
			die("MSGPACK before the frame's end");
		if (ev.kind == MPSCAN_EV_NOT_MSGPACK && !ev.why)
			die("NOT_MSGPACK without a reason");
		struct mpscan_ev again;
		if (mpscan_step(&m, f, len, &again) != 0 || again.kind != ev.kind)
			die("final not sticky");
		return;
	}
}

/* ------------------------------------------------ independent model */

struct model {
	const uint8_t *f;
	size_t len, pos;
	int maxdepth;
	uint64_t payloads;
};

static bool m_take(struct model *m, size_t k, uint64_t *v)
{
	if (m->len - m->pos < k)
		return false;
	*v = 0;
	while (k--)
		*v = (*v << 8) | m->f[m->pos++];
	return true;
}

static bool m_body(struct model *m, uint64_t k, int type)
{
	if (m->len - m->pos < k)
		return false;
	if (type) {
		m->payloads = fnv_u64(m->payloads, (uint64_t)(int64_t)type);
		m->payloads = fnv(fnv_u64(m->payloads, 0xE0D), m->f + m->pos, (size_t)k);
	}
	m->pos += (size_t)k;
	return true;
}

static bool m_obj(struct model *m, int d)
{
	uint64_t v, t;

	if (m->pos >= m->len)
		return false;
	uint8_t b = m->f[m->pos++];
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return true;
	if (b == 0xc1)
		return false;
	if (b <= 0x9f || (b >= 0xdc && b <= 0xdf)) {
		uint64_t count;
		if (b <= 0x9f)
			count = b & 0x0f;
		else if (!m_take(m, (b & 1) ? 4 : 2, &count))
			return false;
		if (b <= 0x8f || b >= 0xde)
			count *= 2;
		if (d + 1 > m->maxdepth)
			m->maxdepth = d + 1;
		if (d + 1 > 2000)
			return false;
		for (uint64_t i = 0; i < count; i++)
			if (!m_obj(m, d + 1))
				return false;
		return true;
	}
	if (b <= 0xbf)
		return m_body(m, b & 0x1f, 0);
	if (b >= 0xc4 && b <= 0xc6)
		return m_take(m, (size_t)1 << (b - 0xc4), &v) && m_body(m, v, MPSCAN_BIN);
	if (b >= 0xd9 && b <= 0xdb)
		return m_take(m, (size_t)1 << (b - 0xd9), &v) && m_body(m, v, 0);
	if (b >= 0xc7 && b <= 0xc9)
		return m_take(m, (size_t)1 << (b - 0xc7), &v) && m_take(m, 1, &t) &&
		       m_body(m, v, (t == 1 || t == 2) ? (int)t : 0);
	if (b >= 0xd4 && b <= 0xd8)
		return m_take(m, 1, &t) &&
		       m_body(m, (uint64_t)1 << (b - 0xd4), (t == 1 || t == 2) ? (int)t : 0);
	if (b == 0xca)
		return m_body(m, 4, 0);
	if (b == 0xcb)
		return m_body(m, 8, 0);
	return m_body(m, (uint64_t)1 << ((b - 0xcc) & 3), 0); /* 0xcc-0xd3 */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *f = data + 1;
	size_t len = size - 1;
	struct rec base, r;

	rstate = 0x9e3779b97f4a7c15ull ^ data[0];
	walk(f, len, 0, 0, &base);
	for (int mode = 1; mode <= 4; mode++) {
		walk(f, len, mode, (size_t)(data[0] % 7) + 2, &r);
		if (r.events != base.events || r.payloads != base.payloads ||
		    r.final != base.final || r.at != base.at ||
		    (r.why != base.why && (!r.why || !base.why || strcmp(r.why, base.why))))
			die("feeds disagree");
	}

	struct model m = {f, len, 0, 0, FNV_INIT};
	bool ok = m_obj(&m, 0) && m.pos == len;
	if (ok && m.maxdepth <= MPSCAN_MAX_DEPTH) {
		if (base.final != MPSCAN_EV_MSGPACK || base.payloads != m.payloads)
			die("valid frame: walker differs from the model");
	} else if (ok) {
		if (base.final != MPSCAN_EV_TOO_DEEP)
			die("deep valid frame not TOO_DEEP");
	} else if (m.maxdepth <= MPSCAN_MAX_DEPTH) {
		if (base.final != MPSCAN_EV_NOT_MSGPACK)
			die("invalid frame not NOT_MSGPACK");
	} else if (base.final == MPSCAN_EV_MSGPACK) {
		die("invalid deep frame called MSGPACK");
	}
	return 0;
}
