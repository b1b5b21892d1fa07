/* test_zmtp_decoder: table-driven tests of the resumable ZMTP frame decoder
 * (zmtp_dec_step and zmtp_dec_skip in src/zmtp.c).
 *
 * Links only the module under test. Every frame stream is fed whole, split
 * in two at every offset, one byte at a time and in random chunks, and the
 * frames rebuilt from the events must equal the reference each time. Chunks
 * are copied into exactly sized heap buffers so a sanitizer build catches
 * any read past the bytes the decoder was shown. The greeting check is in
 * test_zmtp_greeting.c, handshake and command bodies in test_zmtp_commands.c.
 * Exit status is nonzero on any failure; the last line is
 * "N passed, M failed". */
#include "zmtpfw/zmtp.h"

#include <inttypes.h>

#include "zmtp_test_util.h"

/* Table rows run, for the summary. */
static unsigned long n_streams, n_feeds;

/* Deterministic xorshift64*, so a failure reproduces run after run. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

/* ----------------------------------------------------------- frame decoder */

struct rframe {
	uint8_t flags;
	uint64_t size;
	size_t hdr_off;  /* where the flags byte is in the stream */
	size_t body_off; /* first body byte in the stream (= header end) */
	size_t ref_off;  /* the body in the separate reference buffer */
};

struct stream {
	const char *name;
	uint8_t *buf; /* the wire bytes */
	size_t len, cap;
	uint8_t *ref; /* bodies concatenated, built apart from the wire bytes */
	size_t ref_len, ref_cap;
	struct rframe f[64];
	size_t nf;
	uint64_t max_frame;
	/* Expected error, or NULL: which frames precede it and where the
	 * decoder may stand (bytes consumed before the failing step). */
	const char *err;
	size_t err_lo, err_hi;
};

static void grow(uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 256;
	while (c < need)
		c *= 2;
	*p = realloc(*p, c);
	if (!*p) {
		perror("realloc");
		exit(2);
	}
	*cap = c;
}

static void s_init(struct stream *s, const char *name, uint64_t max_frame)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->max_frame = max_frame;
	grow(&s->buf, &s->cap, 256); /* never NULL, even for an empty stream */
	grow(&s->ref, &s->ref_cap, 256);
}

static void s_free(struct stream *s)
{
	free(s->buf);
	free(s->ref);
}

static void s_raw(struct stream *s, const void *p, size_t n)
{
	grow(&s->buf, &s->cap, s->len + n);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void s_u8(struct stream *s, uint8_t b)
{
	s_raw(s, &b, 1);
}

static void s_u64(struct stream *s, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
		s_u8(s, (uint8_t)(v >> (8 * i)));
}

/* A frame with `flags` (LONG chooses the header form) and a body of `size`
 * bytes: `body` if given, else a pattern that differs per frame. */
static void s_frame(struct stream *s, uint8_t flags, uint64_t size, const void *body)
{
	struct rframe *f = &s->f[s->nf];

	if (s->nf == sizeof(s->f) / sizeof(s->f[0])) {
		fprintf(stderr, "too many frames in %s\n", s->name);
		exit(2);
	}
	f->flags = flags;
	f->size = size;
	f->hdr_off = s->len;
	s_u8(s, flags);
	if (flags & ZMTP_FLAG_LONG)
		s_u64(s, size);
	else
		s_u8(s, (uint8_t)size);
	f->body_off = s->len;
	f->ref_off = s->ref_len;
	grow(&s->ref, &s->ref_cap, s->ref_len + size);
	for (uint64_t i = 0; i < size; i++)
		s->ref[s->ref_len + i] =
			body ? ((const uint8_t *)body)[i] : (uint8_t)(i * 7 + s->nf * 31 + (i >> 8));
	s_raw(s, s->ref + s->ref_len, size);
	s->ref_len += size;
	s->nf++;
}

/* Feeding. `cuts` are chunk lengths summing to s->len; zero-length chunks
 * are legal and must yield NEED_MORE without consuming anything. */
static bool feed(const struct stream *s, const size_t *cuts, size_t n_cuts, char *err, size_t errsz)
{
	struct zmtp_dec d;
	size_t pos = 0;   /* bytes of the stream consumed so far */
	size_t fi = 0;    /* frame being rebuilt */
	uint64_t got = 0; /* its body bytes seen so far */
	bool in_body = false, errored = false;

#define BAD(...)                                      \
	do {                                          \
		snprintf(err, errsz, __VA_ARGS__);    \
		return false;                         \
	} while (0)

	zmtp_dec_init(&d, s->max_frame);
	size_t start = 0;
	for (size_t c = 0; c < n_cuts && !errored; c++) {
		size_t clen = cuts[c];
		uint8_t *chunk = xmalloc(clen);
		memcpy(chunk, s->buf + start, clen);
		start += clen;
		size_t off = 0;
		for (;;) {
			struct zmtp_ev ev;
			memset(&ev, 0xA5, sizeof(ev)); /* poison: every field must be set */
			size_t r = zmtp_dec_step(&d, chunk + off, clen - off, &ev);
			if (r > clen - off) {
				free(chunk);
				BAD("step consumed %zu of %zu bytes at %zu", r, clen - off, pos);
			}
			if (ev.kind == ZMTP_EV_NEED_MORE) {
				if (off + r != clen || ev.frame_end) {
					free(chunk);
					BAD("NEED_MORE with %zu bytes left at %zu", clen - off - r, pos);
				}
				pos += r;
				break;
			}
			if (ev.kind == ZMTP_EV_ERROR) {
				if (r != 0 || !s->err || strcmp(str_or(ev.why), s->err) != 0 ||
				    pos < s->err_lo || pos > s->err_hi || fi != s->nf || in_body) {
					free(chunk);
					BAD("ERROR \"%s\" at %zu (consumed %zu, frame %zu/%zu), want \"%s\" "
					    "at %zu..%zu",
					    str_or(ev.why), pos, r, fi, s->nf, str_or(s->err), s->err_lo,
					    s->err_hi);
				}
				if (d.state != ZMTP_DEC_FAILED) {
					free(chunk);
					BAD("state %d after ERROR", d.state);
				}
				errored = true;
				/* Sticky: the rest of this chunk, and nothing, both fail. */
				memset(&ev, 0xA5, sizeof(ev));
				r = zmtp_dec_step(&d, chunk + off, clen - off, &ev);
				if (r != 0 || ev.kind != ZMTP_EV_ERROR || !ev.why) {
					free(chunk);
					BAD("error not sticky (kind %d, consumed %zu)", ev.kind, r);
				}
				memset(&ev, 0xA5, sizeof(ev));
				r = zmtp_dec_step(&d, chunk + off, 0, &ev);
				if (r != 0 || ev.kind != ZMTP_EV_ERROR || !ev.why) {
					free(chunk);
					BAD("error not sticky on empty input");
				}
				break;
			}
			if (r == 0) {
				free(chunk);
				BAD("event %d consumed nothing at %zu", ev.kind, pos);
			}
			if (ev.kind == ZMTP_EV_HEADER) {
				if (in_body || fi >= s->nf) {
					free(chunk);
					BAD("unexpected HEADER at %zu (frame %zu/%zu)", pos + r, fi, s->nf);
				}
				const struct rframe *f = &s->f[fi];
				if (d.flags != f->flags || d.size != f->size ||
				    pos + r != f->body_off || ev.frame_end != (f->size == 0)) {
					free(chunk);
					BAD("frame %zu HEADER flags 0x%02x size %" PRIu64
					    " end@%zu frame_end %d, want 0x%02x %" PRIu64 " @%zu",
					    fi, d.flags, d.size, pos + r, ev.frame_end, f->flags, f->size,
					    f->body_off);
				}
				if (f->size == 0)
					fi++;
				else {
					in_body = true;
					got = 0;
				}
			} else if (ev.kind == ZMTP_EV_BODY) {
				if (!in_body) {
					free(chunk);
					BAD("BODY outside a frame at %zu", pos);
				}
				const struct rframe *f = &s->f[fi];
				if (ev.p != chunk + off || ev.n != r || pos != f->body_off + got ||
				    got + ev.n > f->size ||
				    memcmp(ev.p, s->ref + f->ref_off + got, ev.n) != 0) {
					free(chunk);
					BAD("frame %zu BODY span %zu bytes at %zu wrong (got %" PRIu64
					    " of %" PRIu64 ")",
					    fi, ev.n, pos, got, f->size);
				}
				got += ev.n;
				if (ev.frame_end != (got == f->size)) {
					free(chunk);
					BAD("frame %zu frame_end %d after %" PRIu64 " of %" PRIu64, fi,
					    ev.frame_end, got, f->size);
				}
				if (ev.frame_end) {
					in_body = false;
					fi++;
				}
			} else {
				free(chunk);
				BAD("bad event kind %d", ev.kind);
			}
			off += r;
			pos += r;
		}
		free(chunk);
	}
	if (s->err) {
		if (!errored)
			BAD("no ERROR, want \"%s\"", s->err);
	} else {
		if (fi != s->nf || in_body)
			BAD("stream ended with %zu/%zu frames%s", fi, s->nf,
			    in_body ? " (mid-body)" : "");
		if (pos != s->len)
			BAD("consumed %zu of %zu", pos, s->len);
		if (d.state != ZMTP_DEC_HEADER || d.hdr_have != 0)
			BAD("decoder not at a frame boundary at the end (state %d, hdr_have %u)",
			    d.state, d.hdr_have);
	}
	return true;
#undef BAD
}

static void feed_check(const struct stream *s, const char *how, const size_t *cuts, size_t n_cuts)
{
	char err[256];
	bool ok = feed(s, cuts, n_cuts, err, sizeof(err));
	n_feeds++;
	CHECK(ok, "stream %s, %s: %s", s->name, how, err);
}

static void feed_all_ways(const struct stream *s, unsigned n_random)
{
	size_t cuts[4];
	char how[96];

	n_streams++;
	/* (a) whole */
	cuts[0] = s->len;
	feed_check(s, "whole", cuts, 1);
	/* (b) two chunks at every split point, 0 and len included */
	for (size_t k = 0; k <= s->len; k++) {
		cuts[0] = k;
		cuts[1] = s->len - k;
		snprintf(how, sizeof(how), "split at %zu", k);
		feed_check(s, how, cuts, 2);
	}
	/* (b') three chunks around every header byte: each header split twice */
	for (size_t i = 0; i < s->nf; i++)
		for (size_t a = s->f[i].hdr_off; a <= s->f[i].body_off; a++)
			for (size_t b = a; b <= s->f[i].body_off; b++) {
				cuts[0] = a;
				cuts[1] = b - a;
				cuts[2] = s->len - b;
				snprintf(how, sizeof(how), "split at %zu and %zu", a, b);
				feed_check(s, how, cuts, 3);
			}
	/* (c) one byte at a time, with an empty feed between each */
	size_t *one = xmalloc(sizeof(size_t) * (2 * s->len + 1));
	size_t n = 0;
	for (size_t i = 0; i < s->len; i++) {
		one[n++] = 0;
		one[n++] = 1;
	}
	one[n++] = 0;
	feed_check(s, "byte at a time", one, n);
	free(one);
	/* (d) random chunkings, fixed seed */
	size_t *rc = xmalloc(sizeof(size_t) * (s->len + 1) * 2);
	for (unsigned t = 0; t < n_random; t++) {
		size_t left = s->len;
		n = 0;
		uint64_t mode = rng() % 4; /* tiny, small, large, mixed chunks */
		while (left) {
			size_t c;
			uint64_t x = rng();
			switch (mode) {
			case 0: c = 1 + x % 3; break;
			case 1: c = 1 + x % 17; break;
			case 2: c = 1 + x % 5000; break;
			default: c = (x & 1) ? 1 + (x >> 1) % 11 : 1 + (x >> 1) % 70001; break;
			}
			if ((x >> 40) % 9 == 0)
				rc[n++] = 0;
			if (c > left)
				c = left;
			rc[n++] = c;
			left -= c;
		}
		snprintf(how, sizeof(how), "random chunking #%u", t);
		feed_check(s, how, rc, n);
	}
	free(rc);
}

static const uint8_t ready_push[] = "\x05READY\x0bSocket-Type\x00\x00\x00\x04PUSH";

static void test_decoder_streams(void)
{
	struct stream s;

	s_init(&s, "mixed", UINT64_MAX);
	s_frame(&s, ZMTP_FLAG_COMMAND, sizeof(ready_push) - 1, ready_push);
	s_frame(&s, 0x00, 5, "hello");
	s_frame(&s, 0x00, 0, NULL);                        /* empty */
	s_frame(&s, ZMTP_FLAG_MORE, 0, NULL);              /* REQ delimiter */
	s_frame(&s, 0x00, 1, "x");
	s_frame(&s, ZMTP_FLAG_MORE, 3, "abc");             /* MORE chain */
	s_frame(&s, ZMTP_FLAG_MORE, 0, NULL);
	s_frame(&s, ZMTP_FLAG_MORE, 255, NULL);            /* largest short */
	s_frame(&s, 0x00, 1, "z");
	s_frame(&s, ZMTP_FLAG_LONG, 0, NULL);              /* long form, small sizes */
	s_frame(&s, ZMTP_FLAG_LONG, 1, "L");
	s_frame(&s, ZMTP_FLAG_LONG | ZMTP_FLAG_MORE, 5, "LMORE");
	s_frame(&s, ZMTP_FLAG_LONG, 255, NULL);
	s_frame(&s, ZMTP_FLAG_LONG, 256, NULL);            /* smallest needing long */
	s_frame(&s, ZMTP_FLAG_COMMAND, 7, "\x04PING\x00\x00");
	s_frame(&s, ZMTP_FLAG_COMMAND | ZMTP_FLAG_LONG, 3, "\x02XY");
	s_frame(&s, ZMTP_FLAG_COMMAND | ZMTP_FLAG_LONG, 0, NULL);
	s_frame(&s, ZMTP_FLAG_COMMAND, 0, NULL);
	s_frame(&s, ZMTP_FLAG_LONG, 300, NULL);            /* 300-byte frame */
	s_frame(&s, 0x00, 2, "\x01\x00");
	feed_all_ways(&s, 300);
	s_free(&s);

	s_init(&s, "70000-byte long frame", UINT64_MAX);
	s_frame(&s, ZMTP_FLAG_MORE, 0, NULL);
	s_frame(&s, ZMTP_FLAG_LONG | ZMTP_FLAG_MORE, 70000, NULL);
	s_frame(&s, 0x00, 3, "end");
	feed_all_ways(&s, 100);
	s_free(&s);

	s_init(&s, "only empty frames", 0); /* max_frame 0 still allows empties */
	for (int i = 0; i < 8; i++)
		s_frame(&s, (uint8_t)((i & 1) ? ZMTP_FLAG_LONG : 0) | ((i & 2) ? ZMTP_FLAG_MORE : 0),
			0, NULL);
	s_frame(&s, ZMTP_FLAG_COMMAND, 0, NULL);
	s_frame(&s, ZMTP_FLAG_COMMAND | ZMTP_FLAG_LONG, 0, NULL);
	feed_all_ways(&s, 50);
	s_free(&s);

	s_init(&s, "sizes at max_frame", 300);
	s_frame(&s, 0x00, 255, NULL);
	s_frame(&s, ZMTP_FLAG_LONG, 300, NULL);
	s_frame(&s, ZMTP_FLAG_LONG | ZMTP_FLAG_MORE, 299, NULL);
	s_frame(&s, ZMTP_FLAG_COMMAND | ZMTP_FLAG_LONG, 300, NULL);
	feed_all_ways(&s, 50);
	s_free(&s);

	s_init(&s, "empty stream", UINT64_MAX);
	feed_all_ways(&s, 3);
	s_free(&s);
}

/* A valid prefix of frames, then a bad header `bad` and some trailing
 * bytes the decoder must never report on. */
static void error_stream(const char *name, uint64_t max_frame, const uint8_t *bad, size_t bad_len,
			 size_t hdr_len, const char *why, bool at_flags)
{
	struct stream s;

	s_init(&s, name, max_frame);
	s_frame(&s, ZMTP_FLAG_COMMAND, sizeof(ready_push) - 1, ready_push);
	s_frame(&s, ZMTP_FLAG_MORE, 0, NULL);
	s_frame(&s, 0x00, 4, "data");
	size_t at = s.len;
	s_raw(&s, bad, bad_len);
	for (int i = 0; i < 12; i++)
		s_u8(&s, 0xAA); /* bytes that would be a body */
	s.err = why;
	s.err_lo = at;
	/* A flags error is seen at the flags byte, which always starts a
	 * step. A size error is seen when the last size byte arrives; the
	 * header bytes before it may have been consumed by earlier steps,
	 * but no body byte ever is. */
	s.err_hi = at_flags ? at : at + hdr_len - 1;
	feed_all_ways(&s, 40);
	s_free(&s);
}

static void test_decoder_errors(void)
{
	char name[96];
	uint8_t h[9];

	/* Each reserved bit alone and with the legal bits around it. */
	for (unsigned bit = 0x08; bit <= 0x80; bit <<= 1) {
		static const uint8_t with[] = {0x00, 0x01, 0x02, 0x04, 0x06};
		for (size_t w = 0; w < sizeof(with); w++) {
			h[0] = (uint8_t)(bit | with[w]);
			h[1] = 3;
			h[2] = 'a';
			h[3] = 'b';
			h[4] = 'c';
			snprintf(name, sizeof(name), "reserved flags 0x%02x", h[0]);
			error_stream(name, UINT64_MAX, h, 5, 2, "reserved-flags", true);
		}
	}
	h[0] = 0xFF; /* a greeting byte where a frame was expected */
	error_stream("flags 0xFF", UINT64_MAX, h, 1, 2, "reserved-flags", true);

	/* COMMAND with MORE, short and long form. */
	static const uint8_t cm5[] = {0x05, 0x00};
	static const uint8_t cm7[] = {0x07, 0, 0, 0, 0, 0, 0, 0, 0};
	error_stream("command-more 0x05", UINT64_MAX, cm5, sizeof(cm5), 2, "command-more", true);
	error_stream("command-more 0x07", UINT64_MAX, cm7, sizeof(cm7), 9, "command-more", true);

	/* Too large: refused at the header, before any body byte. */
	static const uint8_t big_short[] = {0x00, 101};
	static const uint8_t big_short_cmd[] = {0x04, 0xFF};
	static const uint8_t big_long[] = {0x02, 0, 0, 0, 0, 0, 0, 0x03, 0xE9};       /* 1001 */
	static const uint8_t big_long_more[] = {0x03, 0, 0, 0, 0, 0, 0, 0x03, 0xE9};  /* 1001 */
	static const uint8_t big_62[] = {0x02, 0x40, 0, 0, 0, 0, 0, 0, 0};             /* 2^62 */
	static const uint8_t big_64[] = {0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
	static const uint8_t big_hi[] = {0x02, 0x01, 0, 0, 0, 0, 0, 0, 0};              /* 2^56 */
	static const uint8_t one[] = {0x00, 0x01};
	error_stream("short 101 > 100", 100, big_short, sizeof(big_short), 2, "frame-too-large",
		     false);
	error_stream("short cmd 255 > 100", 100, big_short_cmd, sizeof(big_short_cmd), 2,
		     "frame-too-large", false);
	error_stream("long 1001 > 1000", 1000, big_long, sizeof(big_long), 9, "frame-too-large",
		     false);
	error_stream("long+more 1001 > 1000", 1000, big_long_more, sizeof(big_long_more), 9,
		     "frame-too-large", false);
	error_stream("long 2^62", 1u << 20, big_62, sizeof(big_62), 9, "frame-too-large", false);
	error_stream("long 2^64-1", 1u << 20, big_64, sizeof(big_64), 9, "frame-too-large", false);
	error_stream("long 2^56 (top byte only)", 1u << 20, big_hi, sizeof(big_hi), 9,
		     "frame-too-large", false);
	error_stream("2^64-1 with max 2^64-2", UINT64_MAX - 1, big_64, sizeof(big_64), 9,
		     "frame-too-large", false);
	/* max_frame 0: the prefix above has a non-empty frame, so build apart. */
	{
		struct stream s;
		s_init(&s, "1 byte with max_frame 0", 0);
		s_frame(&s, 0x00, 0, NULL);
		s.err = "frame-too-large";
		s.err_lo = s.len;
		s.err_hi = s.len + 1;
		s_raw(&s, one, sizeof(one));
		s_u8(&s, 'q');
		feed_all_ways(&s, 10);
		s_free(&s);
	}
}

/* Direct checks of the documented step contract. */
static void test_decoder_contract(void)
{
	struct zmtp_dec d;
	struct zmtp_ev ev;
	size_t r;

	/* A 2^62 frame with no limit: HEADER, then bodies that never end. */
	static const uint8_t huge[] = {0x02, 0x40, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c'};
	zmtp_dec_init(&d, UINT64_MAX);
	r = zmtp_dec_step(&d, huge, sizeof(huge), &ev);
	CHECK(r == 9 && ev.kind == ZMTP_EV_HEADER && d.size == (1ull << 62) && !ev.frame_end,
	      "2^62 header unlimited: r=%zu kind=%d", r, ev.kind);
	r = zmtp_dec_step(&d, huge + 9, 3, &ev);
	CHECK(r == 3 && ev.kind == ZMTP_EV_BODY && ev.n == 3 && ev.p == huge + 9 && !ev.frame_end &&
		      d.left == (1ull << 62) - 3,
	      "2^62 body: r=%zu kind=%d", r, ev.kind);
	r = zmtp_dec_step(&d, huge, 0, &ev);
	CHECK(r == 0 && ev.kind == ZMTP_EV_NEED_MORE, "empty feed mid-body: r=%zu kind=%d", r,
	      ev.kind);

	/* 2^64-1 accepted only when the limit is 2^64-1. */
	static const uint8_t max64[] = {0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
	zmtp_dec_init(&d, UINT64_MAX);
	r = zmtp_dec_step(&d, max64, sizeof(max64), &ev);
	CHECK(r == 9 && ev.kind == ZMTP_EV_HEADER && d.size == UINT64_MAX && d.left == UINT64_MAX,
	      "2^64-1 header: r=%zu kind=%d", r, ev.kind);

	/* Empty input: NEED_MORE, nothing consumed, NULL pointer tolerated. */
	zmtp_dec_init(&d, 10);
	r = zmtp_dec_step(&d, NULL, 0, &ev);
	CHECK(r == 0 && ev.kind == ZMTP_EV_NEED_MORE && !ev.frame_end && ev.n == 0,
	      "empty input: r=%zu kind=%d", r, ev.kind);

	/* A partial header is consumed whole with NEED_MORE. */
	static const uint8_t partial[] = {0x02, 0, 0, 0};
	zmtp_dec_init(&d, 10);
	r = zmtp_dec_step(&d, partial, sizeof(partial), &ev);
	CHECK(r == 4 && ev.kind == ZMTP_EV_NEED_MORE && d.state == ZMTP_DEC_HEADER && d.hdr_have == 4,
	      "partial long header: r=%zu kind=%d hdr_have=%u", r, ev.kind, d.hdr_have);

	/* A step stops at the event: header then body then next header. */
	static const uint8_t two[] = {0x01, 0x02, 'h', 'i', 0x00, 0x00};
	zmtp_dec_init(&d, 10);
	r = zmtp_dec_step(&d, two, sizeof(two), &ev);
	CHECK(r == 2 && ev.kind == ZMTP_EV_HEADER && d.flags == 0x01 && d.size == 2 && !ev.frame_end,
	      "two frames, step 1");
	r = zmtp_dec_step(&d, two + 2, sizeof(two) - 2, &ev);
	CHECK(r == 2 && ev.kind == ZMTP_EV_BODY && ev.p == two + 2 && ev.n == 2 && ev.frame_end,
	      "two frames, step 2");
	r = zmtp_dec_step(&d, two + 4, sizeof(two) - 4, &ev);
	CHECK(r == 2 && ev.kind == ZMTP_EV_HEADER && d.flags == 0 && d.size == 0 && ev.frame_end,
	      "two frames, step 3");
	r = zmtp_dec_step(&d, two + 6, 0, &ev);
	CHECK(r == 0 && ev.kind == ZMTP_EV_NEED_MORE, "two frames, step 4");

	/* Sticky error keeps failing, consumes nothing. */
	static const uint8_t bad[] = {0x08, 0x00, 0x00, 0x00};
	zmtp_dec_init(&d, 10);
	r = zmtp_dec_step(&d, bad, sizeof(bad), &ev);
	CHECK(r == 0 && ev.kind == ZMTP_EV_ERROR && str_eq(ev.why, "reserved-flags") &&
		      d.state == ZMTP_DEC_FAILED,
	      "reserved flags: r=%zu kind=%d why=%s", r, ev.kind, str_or(ev.why));
	for (int i = 0; i < 3; i++) {
		r = zmtp_dec_step(&d, bad + 1, sizeof(bad) - 1, &ev);
		CHECK(r == 0 && ev.kind == ZMTP_EV_ERROR && ev.why != NULL &&
			      d.state == ZMTP_DEC_FAILED,
		      "sticky #%d: r=%zu kind=%d", i, r, ev.kind);
	}
	/* Re-initialising is the only way back. */
	zmtp_dec_init(&d, 10);
	r = zmtp_dec_step(&d, bad + 1, 2, &ev);
	CHECK(r == 2 && ev.kind == ZMTP_EV_HEADER && ev.frame_end, "after re-init");
}

/* zmtp_dec_skip: bytes spliced past the decoder. For every split of a
 * frame's body into shown / skipped / shown, the decoder must report the
 * same frame end and then find the next header exactly where a decoder fed
 * every byte finds it; misuse fails the decoder for good. */
static void test_decoder_skip(void)
{
	/* frame 1: long form, 300-byte body; frame 2: short, 3 bytes "xyz" */
	uint8_t s[9 + 300 + 2 + 3];
	struct zmtp_dec d;
	struct zmtp_ev ev;
	bool end;

	s[0] = ZMTP_FLAG_LONG | ZMTP_FLAG_MORE;
	for (int i = 1; i < 9; i++)
		s[i] = 0;
	s[7] = 0x01; /* 300 = 0x012C */
	s[8] = 0x2C;
	for (int i = 0; i < 300; i++)
		s[9 + i] = (uint8_t)i;
	memcpy(s + 309, "\x00\x03xyz", 5);

	for (size_t shown = 0; shown < 300; shown++) {
		for (size_t skip = 1; shown + skip <= 300; skip += (skip < 8 ? 1 : 37)) {
			zmtp_dec_init(&d, 1000);
			size_t r = zmtp_dec_step(&d, s, 9, &ev);
			CHECK(r == 9 && ev.kind == ZMTP_EV_HEADER, "skip: header r=%zu", r);
			if (shown > 0) {
				r = zmtp_dec_step(&d, s + 9, shown, &ev);
				CHECK(r == shown && ev.kind == ZMTP_EV_BODY && !ev.frame_end,
				      "skip: shown %zu r=%zu", shown, r);
			}
			bool ok = zmtp_dec_skip(&d, skip, &end);
			CHECK(ok && end == (shown + skip == 300) && d.left == 300 - shown - skip,
			      "skip %zu after %zu: ok=%d end=%d left=%llu", skip, shown, ok, end,
			      (unsigned long long)d.left);
			size_t pos = 9 + shown + skip;
			while (pos < sizeof(s)) {
				r = zmtp_dec_step(&d, s + pos, sizeof(s) - pos, &ev);
				CHECK(r > 0 && ev.kind != ZMTP_EV_ERROR, "skip: resume at %zu", pos);
				if (r == 0 || ev.kind == ZMTP_EV_ERROR)
					break;
				if (ev.kind == ZMTP_EV_HEADER)
					CHECK(pos == 309 && d.size == 3 && d.flags == 0,
					      "skip %zu after %zu: next header at %zu size %llu", skip,
					      shown, pos, (unsigned long long)d.size);
				if (ev.kind == ZMTP_EV_BODY && ev.frame_end && pos >= 309)
					CHECK(ev.n == 3 && memcmp(ev.p, "xyz", 3) == 0,
					      "skip: second body");
				pos += r;
			}
		}
	}

	/* Misuse: in HEADER state, zero bytes, more than left. Each fails the
	 * decoder, and the failure is sticky. */
	zmtp_dec_init(&d, 1000);
	CHECK(!zmtp_dec_skip(&d, 1, &end) && !end && d.state == ZMTP_DEC_FAILED,
	      "skip in HEADER state accepted");
	CHECK(zmtp_dec_step(&d, s, 9, &ev) == 0 && ev.kind == ZMTP_EV_ERROR,
	      "decoder usable after a refused skip");
	zmtp_dec_init(&d, 1000);
	(void)zmtp_dec_step(&d, s, 9, &ev);
	CHECK(!zmtp_dec_skip(&d, 0, &end) && d.state == ZMTP_DEC_FAILED, "skip of 0 accepted");
	zmtp_dec_init(&d, 1000);
	(void)zmtp_dec_step(&d, s, 9, &ev);
	CHECK(!zmtp_dec_skip(&d, 301, &end) && d.state == ZMTP_DEC_FAILED,
	      "skip past the frame end accepted");
	zmtp_dec_init(&d, 1000);
	(void)zmtp_dec_step(&d, s, 9, &ev);
	CHECK(zmtp_dec_skip(&d, 300, &end) && end && d.state == ZMTP_DEC_HEADER && d.hdr_have == 0,
	      "skip of the whole body");
	CHECK(!zmtp_dec_skip(&d, 1, &end), "skip after the frame ended accepted");
}

int main(void)
{
	test_decoder_contract();
	test_decoder_streams();
	test_decoder_errors();
	test_decoder_skip();
	printf("cases: %lu frame streams (%lu feeds)\n", n_streams, n_feeds);
	printf("%lu passed, %lu failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
