/* fuzz_zmtp: libFuzzer target for the pure ZMTP parser (src/zmtp.c).
 *
 * Input: byte 0 is a control byte (low 6 bits: chunk stride - 1, high 2 bits:
 * max_frame choice), the rest is peer bytes. If the rest begins with a
 * greeting that passes zmtp_greeting_check, the decoder runs on what follows
 * it, otherwise on the whole rest.
 *
 * The decoder is fed (1) whole, (2) in chunks of the stride, (3) in chunks
 * of pseudo-random length, with empty feeds mixed in. Each run is reduced to
 * a split-independent record list: HEADER (flags, size, offset of the header
 * end), END (hash of the frame's body, offset), ERROR (reason), and a final
 * TAIL (decoder state, bytes left, partial body hash). All three lists must
 * be identical, and equal to an independent whole-buffer reference model
 * written from the wire rules. Any difference aborts.
 *
 * Also: greeting prefix monotonicity, and zmtp_handshake_parse /
 * zmtp_command_parse on the raw input and on each complete frame body. */
#include "zmtpfw/zmtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum rec_kind { REC_HEADER = 1, REC_END, REC_ERROR, REC_TAIL };

struct rec {
	enum rec_kind kind;
	uint8_t flags;
	uint64_t size;   /* HEADER: size; TAIL: bytes left in the body */
	uint64_t hash;   /* END / TAIL: FNV-1a of the body bytes */
	size_t off;      /* HEADER / END: stream offset after the event */
	int state;       /* TAIL: decoder state */
	unsigned hdr;    /* TAIL in HEADER state: header bytes held */
	const char *why; /* ERROR */
};

struct recs {
	struct rec *r;
	size_t n, cap;
};

static void die(const char *what, size_t i)
{
	fprintf(stderr, "fuzz_zmtp: %s (record %zu)\n", what, i);
	abort();
}

static void rec_add(struct recs *l, struct rec r)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->r = realloc(l->r, l->cap * sizeof(*l->r));
		if (!l->r)
			abort();
	}
	l->r[l->n++] = r;
}

#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Independent model: what the decoder must report for the whole buffer. */
static void model(const uint8_t *p, size_t n, uint64_t max_frame, struct recs *out)
{
	size_t i = 0;

	for (;;) {
		if (i == n) {
			rec_add(out, (struct rec){.kind = REC_TAIL, .state = ZMTP_DEC_HEADER, .hash = FNV_INIT});
			return;
		}
		uint8_t f = p[i];
		if (f & 0xF8) {
			rec_add(out, (struct rec){.kind = REC_ERROR, .why = "reserved-flags"});
			return;
		}
		if ((f & 0x04) && (f & 0x01)) {
			rec_add(out, (struct rec){.kind = REC_ERROR, .why = "command-more"});
			return;
		}
		size_t hl = (f & 0x02) ? 9 : 2;
		if (n - i < hl) {
			rec_add(out, (struct rec){.kind = REC_TAIL, .state = ZMTP_DEC_HEADER,
						  .hdr = (unsigned)(n - i), .hash = FNV_INIT});
			return;
		}
		uint64_t size = 0;
		for (size_t k = 1; k < hl; k++)
			size = size * 256 + p[i + k];
		if (size > max_frame) {
			rec_add(out, (struct rec){.kind = REC_ERROR, .why = "frame-too-large"});
			return;
		}
		i += hl;
		rec_add(out, (struct rec){.kind = REC_HEADER, .flags = f, .size = size, .off = i});
		if (size > n - i) {
			rec_add(out, (struct rec){.kind = REC_TAIL, .state = ZMTP_DEC_BODY,
						  .size = size - (n - i),
						  .hash = fnv(FNV_INIT, p + i, n - i)});
			return;
		}
		rec_add(out, (struct rec){.kind = REC_END, .off = i + (size_t)size,
					  .hash = fnv(FNV_INIT, p + i, (size_t)size)});
		i += (size_t)size;
	}
}

/* Feed p[0..n) in chunks of chunk(k) bytes; chunk() may return 0. */
struct chunker {
	size_t stride; /* fixed stride, or 0 for pseudo-random */
	uint64_t seed;
};

static size_t next_chunk(struct chunker *c)
{
	if (c->stride)
		return c->stride;
	c->seed = c->seed * 6364136223846793005ull + 1442695040888963407ull;
	uint64_t x = c->seed >> 33;
	if (x % 7 == 0)
		return 0;
	return 1 + (size_t)((x >> 3) % ((x & 4) ? 3 : 97));
}

static void run(const uint8_t *p, size_t n, uint64_t max_frame, struct chunker *c, struct recs *out)
{
	struct zmtp_dec d;
	size_t pos = 0;
	uint64_t h = FNV_INIT;
	bool failed = false;

	zmtp_dec_init(&d, max_frame);
	while (!failed) {
		size_t clen = c ? next_chunk(c) : n - pos;
		if (clen > n - pos)
			clen = n - pos;
		/* An exact-size copy, so ASan sees any read past the chunk. */
		uint8_t *chunk = malloc(clen ? clen : 1);
		if (!chunk)
			abort();
		memcpy(chunk, p + pos, clen);
		size_t off = 0;
		for (;;) {
			struct zmtp_ev ev;
			memset(&ev, 0xA5, sizeof(ev));
			size_t r = zmtp_dec_step(&d, chunk + off, clen - off, &ev);
			if (r > clen - off)
				die("step consumed more than it was given", out->n);
			if (ev.kind == ZMTP_EV_NEED_MORE) {
				if (off + r != clen || ev.frame_end)
					die("NEED_MORE left input unconsumed", out->n);
				pos += r;
				break;
			}
			if (ev.kind == ZMTP_EV_ERROR) {
				if (r != 0 || !ev.why || d.state != ZMTP_DEC_FAILED)
					die("bad ERROR event", out->n);
				rec_add(out, (struct rec){.kind = REC_ERROR, .why = ev.why});
				/* Sticky, with input and without. */
				memset(&ev, 0xA5, sizeof(ev));
				if (zmtp_dec_step(&d, chunk + off, clen - off, &ev) != 0 ||
				    ev.kind != ZMTP_EV_ERROR)
					die("error not sticky", out->n);
				if (zmtp_dec_step(&d, chunk, 0, &ev) != 0 || ev.kind != ZMTP_EV_ERROR)
					die("error not sticky on empty input", out->n);
				failed = true;
				break;
			}
			if (r == 0)
				die("event consumed nothing", out->n);
			if (ev.kind == ZMTP_EV_HEADER) {
				if (ev.frame_end != (d.size == 0) || d.state != (d.size ? ZMTP_DEC_BODY
										: ZMTP_DEC_HEADER))
					die("HEADER frame_end/state mismatch", out->n);
				rec_add(out, (struct rec){.kind = REC_HEADER, .flags = d.flags,
							  .size = d.size, .off = pos + r});
				h = FNV_INIT;
				if (ev.frame_end)
					rec_add(out, (struct rec){.kind = REC_END, .off = pos + r,
								  .hash = h});
			} else if (ev.kind == ZMTP_EV_BODY) {
				if (ev.p != chunk + off || ev.n != r)
					die("BODY span is not the consumed input", out->n);
				h = fnv(h, ev.p, ev.n);
				if (ev.frame_end != (d.left == 0))
					die("BODY frame_end mismatch", out->n);
				if (ev.frame_end)
					rec_add(out, (struct rec){.kind = REC_END, .off = pos + r,
								  .hash = h});
			} else {
				die("unknown event kind", out->n);
			}
			off += r;
			pos += r;
		}
		free(chunk);
		if (pos == n && !failed) {
			/* A last empty feed must change nothing. */
			struct zmtp_ev ev;
			if (zmtp_dec_step(&d, p + n, 0, &ev) != 0 || ev.kind != ZMTP_EV_NEED_MORE)
				die("empty feed at the end", out->n);
			struct rec t = {.kind = REC_TAIL, .state = (int)d.state};
			if (d.state == ZMTP_DEC_BODY) {
				t.size = d.left;
				t.hash = h;
			} else {
				t.hdr = d.hdr_have;
				t.hash = FNV_INIT;
			}
			rec_add(out, t);
			break;
		}
	}
}

static void same(const struct recs *a, const struct recs *b, const char *what)
{
	if (a->n != b->n) {
		fprintf(stderr, "fuzz_zmtp: %s: %zu vs %zu records\n", what, a->n, b->n);
		abort();
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct rec *x = &a->r[i], *y = &b->r[i];
		bool eq = x->kind == y->kind && x->flags == y->flags && x->size == y->size &&
			  x->hash == y->hash && x->off == y->off && x->state == y->state &&
			  x->hdr == y->hdr && (x->why == y->why || (x->why && y->why && !strcmp(x->why, y->why)));
		if (!eq) {
			fprintf(stderr,
				"fuzz_zmtp: %s: record %zu differs: kind %d/%d flags %u/%u size %llu/%llu "
				"off %zu/%zu state %d/%d hdr %u/%u why %s/%s\n",
				what, i, x->kind, y->kind, x->flags, y->flags,
				(unsigned long long)x->size, (unsigned long long)y->size, x->off, y->off,
				x->state, y->state, x->hdr, y->hdr, x->why ? x->why : "-",
				y->why ? y->why : "-");
			abort();
		}
	}
}

static const char mechs[2][ZMTP_MECH_LEN] = {"NULL", "PLAIN"};

/* Returns the greeting length accepted (64) or 0. */
static size_t greeting(const uint8_t *p, size_t n)
{
	size_t len = n < ZMTP_GREETING_LEN ? n : ZMTP_GREETING_LEN;

	for (size_t nm = 0; nm <= 2; nm++) {
		enum zmtp_result prev = ZMTP_OK;
		const char *prev_why = NULL;
		for (size_t have = 0; have <= len; have++) {
			uint8_t *copy = malloc(have ? have : 1);
			if (!copy)
				abort();
			memcpy(copy, p, have);
			const char *why = NULL;
			enum zmtp_result r = zmtp_greeting_check(copy, have, mechs, nm, &why);
			free(copy);
			if (r != ZMTP_OK && r != ZMTP_ERR)
				die("greeting: bad result", have);
			if (r == ZMTP_ERR && !why)
				die("greeting: ERR without reason", have);
			if (have == 0 && r != ZMTP_OK)
				die("greeting: empty prefix refused", have);
			/* Once refused, every longer prefix is refused for the same
			 * reason; an accepted prefix never follows a refused one. */
			if (prev == ZMTP_ERR && (r != ZMTP_ERR || strcmp(why, prev_why) != 0))
				die("greeting: not monotonic", have);
			prev = r;
			prev_why = why;
		}
		/* A longer buffer is judged on its first 64 bytes only. */
		const char *why = NULL;
		if (zmtp_greeting_check(p, n, mechs, nm, &why) != prev ||
		    (prev == ZMTP_ERR && strcmp(why, prev_why) != 0))
			die("greeting: result depends on bytes after 64", len);
		if (nm == 2 && len == ZMTP_GREETING_LEN && prev == ZMTP_OK) {
			/* Accepted: the fixed fields must be what the rules say. */
			if (p[0] != 0xFF || p[9] != 0x7F || p[10] != 3 || p[11] > 1 || p[32] > 1)
				die("greeting: bad greeting accepted", 0);
			for (size_t i = 33; i < 64; i++)
				if (p[i])
					die("greeting: non-zero filler accepted", i);
			if (memcmp(p + 12, mechs[0], ZMTP_MECH_LEN) &&
			    memcmp(p + 12, mechs[1], ZMTP_MECH_LEN))
				die("greeting: unlisted mechanism accepted", 0);
			return ZMTP_GREETING_LEN;
		}
	}
	return 0;
}

static void commands(const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	enum zmtp_cmd cmd;
	struct zmtp_ready rd;
	const char *why;

	if (!copy)
		abort();
	memcpy(copy, p, n);
	why = NULL;
	enum zmtp_result r = zmtp_handshake_parse(copy, n, &cmd, &rd, &why);
	if (r == ZMTP_ERR && !why)
		die("handshake: ERR without reason", n);
	if (r == ZMTP_OK) {
		if (cmd != ZMTP_CMD_READY && cmd != ZMTP_CMD_ERROR)
			die("handshake: bad command", n);
		if (!memchr(rd.socket_type, 0, sizeof(rd.socket_type)))
			die("handshake: socket_type not terminated", n);
		if (rd.socket_type[0] && !zmtp_socket_type_valid(rd.socket_type))
			die("handshake: unknown socket type accepted", n);
		if (!rd.has_identity && rd.identity_len)
			die("handshake: identity_len without identity", n);
		if (n < 6 || n > ZMTP_CMD_MAX)
			die("handshake: impossible length accepted", n);
	}
	why = NULL;
	r = zmtp_command_parse(copy, n, &cmd, &why);
	if (r == ZMTP_ERR && !why)
		die("command: ERR without reason", n);
	if (r == ZMTP_OK && (cmd < ZMTP_CMD_PING || cmd > ZMTP_CMD_CANCEL))
		die("command: bad command", n);
	if (r == ZMTP_OK && cmd == ZMTP_CMD_PING && (n < 7 || n > 7 + 16))
		die("command: bad PING accepted", n);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t max_frames[4] = {UINT64_MAX, 0, 255, 65536};

	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	uint64_t max_frame = max_frames[ctl >> 6];

	size_t g = greeting(p, n);
	const uint8_t *f = p + g;
	size_t fn = n - g;

	struct recs want = {0}, whole = {0}, strided = {0}, randomly = {0};
	model(f, fn, max_frame, &want);
	run(f, fn, max_frame, NULL, &whole);
	struct chunker cs = {.stride = (size_t)(ctl & 0x3F) + 1};
	run(f, fn, max_frame, &cs, &strided);
	struct chunker cr = {.stride = 0, .seed = ctl * 0x9E3779B97F4A7C15ull + fn};
	run(f, fn, max_frame, &cr, &randomly);
	same(&want, &whole, "model vs whole");
	same(&whole, &strided, "whole vs strided");
	same(&whole, &randomly, "whole vs random chunks");

	/* Every complete frame body goes through the command parsers, flagged
	 * as a command or not: libzmq ignores flags during the handshake. */
	commands(p, n);
	for (size_t i = 0; i + 1 < want.n; i++)
		if (want.r[i].kind == REC_HEADER && want.r[i + 1].kind == REC_END)
			commands(f + want.r[i].off, (size_t)want.r[i].size);

	free(want.r);
	free(whole.r);
	free(strided.r);
	free(randomly.r);
	return 0;
}
