/* fuzz_zmtp: libFuzzer target for the pure ZMTP parser (src/zmtp.c): the
 * greeting check, the resumable frame decoder, zmtp_handshake_parse and
 * zmtp_command_parse, for both directions of a connection, at any split.
 *
 * Input layout (tests/fuzz/gen_corpus.py writes seeds in it):
 *   byte 0  ctl: bit 0 role (0 client->worker, 1 worker->client),
 *           bits 1-2 limits (max_frame / max_message), bits 3-4 the
 *           route's mechanism set, bits 5-7 its socket_types set
 *   byte 1  split: low 4 bits k = number of cut points, high 4 bits the
 *           stride - 1 of the strided feeds
 *   2k bytes  cut points, 16-bit big-endian, taken modulo len(stream)+1
 *   rest    the stream: what one peer sends, greeting first
 *
 * 1. Session level. One direction is driven the way the relay drives it,
 *    through the pure API only: the greeting is checked byte by byte as it
 *    arrives, the first frame must be a flagged command parsed by
 *    zmtp_handshake_parse (Socket-Type checked against the route's set when
 *    the client sends it), then frames go through zmtp_dec_step, command
 *    frames through zmtp_command_parse, data frames are summed into messages
 *    against max_message_size (client->worker). The stream is fed whole, at
 *    the input-chosen cut points, in strides, and in pseudo-random pieces
 *    with empty feeds; each run yields a record list (greeting accepted,
 *    handshake, frames with a hash of their bodies, commands, message ends,
 *    the failure and its reason, and the final state). All lists must be
 *    identical. Every feed is an exact-size heap copy, so ASan sees any read
 *    past what the parser was given. Declared sizes above max_frame_size,
 *    messages above max_message_size and commands above ZMTP_CMD_MAX must
 *    have failed before any of their body was accepted.
 * 2. Decoder level. The bytes after the greeting go through the decoder
 *    alone, under the same feeds, and must equal an independent whole-buffer
 *    model written from the wire rules (flags, short/long sizes, limits).
 * 3. Greeting: prefix monotonicity (once refused, always refused for the
 *    same reason; an accepted greeting really has the fields the rules say).
 * 4. Commands: zmtp_handshake_parse and zmtp_command_parse agree with an
 *    independent reference model of READY/ERROR/PING/PONG/SUBSCRIBE/CANCEL
 *    on the raw stream, on every complete frame body (flagged as a command
 *    or not: libzmq ignores flags during the handshake) and on every body the
 *    session parsed.
 * The two independent models (the decoder's, the command parsers') and the
 * decoder record format are in zmtp_ref_model.h.
 */
#include "zmtpfw/zmtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zmtp_ref_model.h"

static void die(const char *what, size_t i)
{
	fprintf(stderr, "fuzz_zmtp: %s (record %zu)\n", what, i);
	abort();
}

/* How a buffer is cut into feeds. Empty feeds are legal and mixed in. */
struct chunker {
	size_t stride;      /* fixed stride, or 0 */
	const size_t *cuts; /* or input-chosen cut offsets, sorted (may repeat) */
	size_t ncuts, ci;
	uint64_t seed;      /* otherwise pseudo-random lengths */
};

static size_t next_chunk(struct chunker *c, size_t pos, size_t n)
{
	if (c->cuts) {
		if (c->ci < c->ncuts) {
			size_t cut = c->cuts[c->ci++];
			return cut > pos ? cut - pos : 0;
		}
		return n - pos;
	}
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
		size_t clen = c ? next_chunk(c, pos, n) : n - pos;
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

/* Both parsers on an exact-size copy of body, against the reference. */
static void commands(const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	enum zmtp_cmd cmd = (enum zmtp_cmd)-1, rcmd = (enum zmtp_cmd)-1;
	struct zmtp_ready rd;
	struct ref_ready want;
	const char *why;

	if (!copy)
		abort();
	memcpy(copy, p, n);
	why = NULL;
	memset(&rd, 0xA5, sizeof(rd));
	enum zmtp_result r = zmtp_handshake_parse(copy, n, &cmd, &rd, &why);
	bool ok = ref_handshake(copy, n, &want);
	if (r != ZMTP_OK && r != ZMTP_ERR)
		die("handshake: bad result", n);
	if (r == ZMTP_ERR && !why)
		die("handshake: ERR without reason", n);
	if ((r == ZMTP_OK) != ok) {
		fprintf(stderr, "fuzz_zmtp: handshake parse says %s (%s), reference says %s\n",
			r == ZMTP_OK ? "OK" : "ERR", why ? why : "-", ok ? "OK" : "ERR");
		abort();
	}
	if (r == ZMTP_OK) {
		if (cmd != want.cmd)
			die("handshake: command differs from the reference", n);
		if (!memchr(rd.socket_type, 0, sizeof(rd.socket_type)))
			die("handshake: socket_type not terminated", n);
		if (strcmp(rd.socket_type, want.socket_type) != 0)
			die("handshake: Socket-Type differs from the reference", n);
		if (rd.socket_type[0] && !zmtp_socket_type_valid(rd.socket_type))
			die("handshake: unknown socket type accepted", n);
		if (rd.has_identity != want.has_identity ||
		    (want.has_identity && rd.identity_len != want.identity_len))
			die("handshake: Identity differs from the reference", n);
		if (!rd.has_identity && rd.identity_len)
			die("handshake: identity_len without identity", n);
	}
	why = NULL;
	r = zmtp_command_parse(copy, n, &cmd, &why);
	ok = ref_command(copy, n, &rcmd);
	if (r == ZMTP_ERR && !why)
		die("command: ERR without reason", n);
	if ((r == ZMTP_OK) != ok) {
		fprintf(stderr, "fuzz_zmtp: command parse says %s (%s), reference says %s\n",
			r == ZMTP_OK ? "OK" : "ERR", why ? why : "-", ok ? "OK" : "ERR");
		abort();
	}
	if (r == ZMTP_OK && cmd != rcmd)
		die("command: kind differs from the reference", n);
	free(copy);
}

/* ---- session level: one direction, as the relay drives the parser ------ */

enum { ROLE_UP = 0, ROLE_DOWN = 1 };
enum sphase { SP_GREETING = 0, SP_HANDSHAKE, SP_TRAFFIC, SP_ERRORED, SP_FAILED };
enum srec_kind { S_GREETING = 1, S_HANDSHAKE, S_FRAME, S_COMMAND, S_MESSAGE, S_FAIL, S_TAIL };

#define MAX_MSG_FRAMES 65536 /* the relay's cap on frames per client message */

struct route {
	int role;
	uint64_t max_frame, max_message;
	const char (*mechs)[ZMTP_MECH_LEN];
	size_t n_mechs;
	const char *const *stypes; /* NULL-terminated, NULL = no check */
};

struct srec {
	enum srec_kind kind;
	int cmd;
	uint8_t flags;
	uint64_t size, hash, a, b;
	char st[16];
	const char *why;
};

struct srecs {
	struct srec *r;
	size_t n, cap;
};

struct sess {
	const struct route *rt;
	enum sphase phase;
	uint8_t greet[ZMTP_GREETING_LEN];
	size_t greet_have;
	uint8_t hs[ZMTP_HDR_MAX + ZMTP_CMD_MAX]; /* the handshake frame, whole */
	size_t hs_have;
	struct zmtp_dec dec;
	uint8_t cmd[ZMTP_CMD_MAX]; /* body of the current command frame */
	size_t cmd_have;
	uint64_t body_hash;
	uint64_t msg_bytes, msg_frames;
	struct srecs out;
};

static void srec_add(struct srecs *l, struct srec r)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->r = realloc(l->r, l->cap * sizeof(*l->r));
		if (!l->r)
			abort();
	}
	l->r[l->n++] = r;
}

static void sfail(struct sess *s, const char *why)
{
	srec_add(&s->out, (struct srec){.kind = S_FAIL, .why = why});
	s->phase = SP_FAILED;
}

/* Greeting bytes: each accepted prefix could be forwarded at once. Returns
 * bytes consumed. */
static size_t s_greeting(struct sess *s, const uint8_t *p, size_t n)
{
	size_t take = ZMTP_GREETING_LEN - s->greet_have;
	if (take > n)
		take = n;
	memcpy(s->greet + s->greet_have, p, take);
	size_t have = s->greet_have + take;
	uint8_t *copy = malloc(have ? have : 1);
	if (!copy)
		abort();
	memcpy(copy, s->greet, have);
	const char *why = NULL;
	enum zmtp_result r = zmtp_greeting_check(copy, have, s->rt->mechs, s->rt->n_mechs, &why);
	free(copy);
	if (r != ZMTP_OK) {
		if (r != ZMTP_ERR || !why)
			die("session: greeting refused without reason", have);
		sfail(s, why);
		return take;
	}
	s->greet_have = have;
	if (have == ZMTP_GREETING_LEN) {
		srec_add(&s->out, (struct srec){.kind = S_GREETING, .hash = fnv(FNV_INIT, s->greet, have)});
		s->phase = SP_HANDSHAKE;
	}
	return take;
}

static bool stype_allowed(const struct route *rt, const char *t)
{
	for (size_t i = 0; rt->stypes[i]; i++)
		if (strcmp(rt->stypes[i], t) == 0)
			return true;
	return false;
}

/* The first frame: a flagged, final command (libzmq ignores the flags of
 * the handshake frame, so nothing else is accepted), READY or ERROR. */
static size_t s_handshake(struct sess *s, const uint8_t *p, size_t n)
{
	size_t used = 0;
	for (;;) {
		size_t need;
		if (s->hs_have < 1) {
			need = 1;
		} else {
			uint8_t f = s->hs[0];
			if (f != ZMTP_FLAG_COMMAND && f != (ZMTP_FLAG_COMMAND | ZMTP_FLAG_LONG)) {
				sfail(s, "first frame is not a command frame");
				return used;
			}
			size_t hl = (f & ZMTP_FLAG_LONG) ? 9 : 2;
			if (s->hs_have < hl) {
				need = hl;
			} else {
				uint64_t size = 0;
				for (size_t i = 1; i < hl; i++)
					size = (size << 8) | s->hs[i];
				if (size > ZMTP_CMD_MAX) {
					sfail(s, "handshake command too large");
					return used;
				}
				need = hl + (size_t)size;
				if (s->hs_have == need) {
					struct zmtp_ready rd;
					enum zmtp_cmd cmd;
					const char *why = NULL;
					uint8_t *body = malloc(size ? size : 1);
					if (!body)
						abort();
					memcpy(body, s->hs + hl, size);
					commands(body, size);
					enum zmtp_result r = zmtp_handshake_parse(body, size, &cmd, &rd, &why);
					free(body);
					if (r != ZMTP_OK) {
						sfail(s, why);
						return used;
					}
					struct srec rec = {.kind = S_HANDSHAKE, .cmd = (int)cmd,
							   .a = rd.has_identity, .b = rd.identity_len,
							   .size = size};
					memcpy(rec.st, rd.socket_type, sizeof(rec.st));
					srec_add(&s->out, rec);
					if (cmd == ZMTP_CMD_READY && s->rt->role == ROLE_UP && s->rt->stypes &&
					    (!rd.socket_type[0] || !stype_allowed(s->rt, rd.socket_type))) {
						sfail(s, "socket-type");
						return used;
					}
					s->phase = cmd == ZMTP_CMD_ERROR ? SP_ERRORED : SP_TRAFFIC;
					return used;
				}
			}
		}
		if (used == n)
			return used;
		size_t take = need - s->hs_have;
		if (take > n - used)
			take = n - used;
		memcpy(s->hs + s->hs_have, p + used, take);
		s->hs_have += take;
		used += take;
	}
}

static size_t s_traffic(struct sess *s, const uint8_t *p, size_t n)
{
	const struct route *rt = s->rt;
	size_t used = 0;

	while (used < n) {
		struct zmtp_ev ev;
		size_t r = zmtp_dec_step(&s->dec, p + used, n - used, &ev);
		if (r > n - used)
			die("session: step consumed more than it was given", used);
		if (ev.kind == ZMTP_EV_ERROR) {
			sfail(s, ev.why);
			return used;
		}
		if (ev.kind == ZMTP_EV_NEED_MORE) {
			used += r;
			if (used != n)
				die("session: NEED_MORE with input left", used);
			return used;
		}
		used += r;
		bool cmd = (s->dec.flags & ZMTP_FLAG_COMMAND) != 0;
		if (ev.kind == ZMTP_EV_HEADER) {
			if (s->dec.size > rt->max_frame)
				die("session: frame above max_frame_size reached HEADER", used);
			s->body_hash = FNV_INIT;
			s->cmd_have = 0;
			if (cmd) {
				if (s->dec.size > ZMTP_CMD_MAX) {
					sfail(s, "command too large");
					return used;
				}
			} else {
				s->msg_bytes += s->dec.size;
				if (rt->role == ROLE_UP && s->msg_bytes > rt->max_message) {
					sfail(s, "message-too-large");
					return used;
				}
				if (rt->role == ROLE_UP && s->msg_frames >= MAX_MSG_FRAMES) {
					sfail(s, "too many frames");
					return used;
				}
			}
		} else if (ev.kind == ZMTP_EV_BODY) {
			if (ev.p != p + used - r || ev.n != r)
				die("session: BODY span is not the consumed input", used);
			s->body_hash = fnv(s->body_hash, ev.p, ev.n);
			if (cmd) {
				if (s->cmd_have + ev.n > ZMTP_CMD_MAX)
					die("session: command body beyond its declared size", used);
				memcpy(s->cmd + s->cmd_have, ev.p, ev.n);
				s->cmd_have += ev.n;
			}
		} else {
			die("session: unknown event", used);
		}
		if (!ev.frame_end)
			continue;
		if (cmd) {
			enum zmtp_cmd c;
			const char *why = NULL;
			uint8_t *body = malloc(s->cmd_have ? s->cmd_have : 1);
			if (!body)
				abort();
			memcpy(body, s->cmd, s->cmd_have);
			commands(body, s->cmd_have);
			enum zmtp_result res = zmtp_command_parse(body, s->cmd_have, &c, &why);
			free(body);
			if (res != ZMTP_OK) {
				sfail(s, why);
				return used;
			}
			srec_add(&s->out, (struct srec){.kind = S_COMMAND, .cmd = (int)c,
							.size = s->cmd_have, .hash = s->body_hash});
			continue;
		}
		srec_add(&s->out, (struct srec){.kind = S_FRAME, .flags = s->dec.flags,
						.size = s->dec.size, .hash = s->body_hash});
		s->msg_frames++;
		if (!(s->dec.flags & ZMTP_FLAG_MORE)) {
			if (rt->role == ROLE_UP && s->msg_bytes > rt->max_message)
				die("session: message above max_message_size completed", used);
			srec_add(&s->out, (struct srec){.kind = S_MESSAGE, .a = s->msg_frames,
							.size = s->msg_bytes});
			s->msg_bytes = 0;
			s->msg_frames = 0;
		}
	}
	return used;
}

static void s_feed(struct sess *s, const uint8_t *p, size_t n)
{
	size_t used = 0;
	for (;;) {
		enum sphase before = s->phase;
		size_t k = 0;
		switch (s->phase) {
		case SP_GREETING: k = s_greeting(s, p + used, n - used); break;
		case SP_HANDSHAKE: k = s_handshake(s, p + used, n - used); break;
		case SP_TRAFFIC: k = s_traffic(s, p + used, n - used); break;
		case SP_ERRORED:
			/* After ERROR the sender closes: nothing may follow. */
			if (used < n)
				sfail(s, "bytes after ERROR");
			return;
		case SP_FAILED: return;
		}
		used += k;
		if (used > n)
			die("session: consumed more than fed", used);
		if (used == n && s->phase == before)
			return;
		if (k == 0 && s->phase == before)
			die("session: no progress", used);
	}
}

static void s_run(const struct route *rt, const uint8_t *p, size_t n, struct chunker *c,
		  struct srecs *out)
{
	struct sess *s = calloc(1, sizeof(*s));
	size_t pos = 0;

	if (!s)
		abort();
	s->rt = rt;
	zmtp_dec_init(&s->dec, rt->max_frame);
	while (pos < n || (c && pos == n && c->cuts && c->ci < c->ncuts)) {
		size_t clen = c ? next_chunk(c, pos, n) : n - pos;
		if (clen > n - pos)
			clen = n - pos;
		uint8_t *chunk = malloc(clen ? clen : 1);
		if (!chunk)
			abort();
		memcpy(chunk, p + pos, clen);
		s_feed(s, chunk, clen);
		free(chunk);
		pos += clen;
	}
	s_feed(s, p + n, 0); /* a last empty feed changes nothing */
	/* How much of a refused greeting passed before the refusal depends on
	 * the split (each valid prefix is forwarded at once): not recorded. */
	srec_add(&s->out, (struct srec){.kind = S_TAIL, .cmd = (int)s->phase,
					.a = s->phase == SP_FAILED ? 0 : s->greet_have,
					.b = s->hs_have,
					.size = s->dec.state == ZMTP_DEC_BODY ? s->dec.left : s->dec.hdr_have,
					.flags = (uint8_t)s->dec.state, .hash = s->msg_bytes});
	*out = s->out;
	free(s);
}

static void s_same(const struct srecs *a, const struct srecs *b, const char *what)
{
	if (a->n != b->n) {
		fprintf(stderr, "fuzz_zmtp: session %s: %zu vs %zu records\n", what, a->n, b->n);
		abort();
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct srec *x = &a->r[i], *y = &b->r[i];
		bool eq = x->kind == y->kind && x->cmd == y->cmd && x->flags == y->flags &&
			  x->size == y->size && x->hash == y->hash && x->a == y->a && x->b == y->b &&
			  !memcmp(x->st, y->st, sizeof(x->st)) &&
			  (x->why == y->why || (x->why && y->why && !strcmp(x->why, y->why)));
		if (!eq) {
			fprintf(stderr, "fuzz_zmtp: session %s: record %zu differs: kind %d/%d cmd %d/%d "
				"size %llu/%llu a %llu/%llu b %llu/%llu why %s/%s\n", what, i, x->kind,
				y->kind, x->cmd, y->cmd, (unsigned long long)x->size,
				(unsigned long long)y->size, (unsigned long long)x->a,
				(unsigned long long)y->a, (unsigned long long)x->b,
				(unsigned long long)y->b, x->why ? x->why : "-", y->why ? y->why : "-");
			abort();
		}
	}
}

/* ---- entry point ------------------------------------------------------- */

static const char mechs_null[1][ZMTP_MECH_LEN] = {"NULL"};
static const char mechs_two[2][ZMTP_MECH_LEN] = {"NULL", "PLAIN"};
static const char mechs_curve[1][ZMTP_MECH_LEN] = {"CURVE"};
static const char *const st_push[] = {"PUSH", NULL};
static const char *const st_dealer_req[] = {"DEALER", "REQ", NULL};
static const char *const st_sub[] = {"SUB", "XSUB", NULL};

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* max_frame, max_message pairs: unlimited, tiny, short-form edge, mixed. */
	static const uint64_t limits[4][2] = {
		{UINT64_MAX, UINT64_MAX}, {0, 0}, {255, 300}, {65536, 1 << 20}};

	if (size < 2)
		return 0;
	uint8_t ctl = data[0], split = data[1];
	size_t k = split & 15;
	if (size < 2 + 2 * k)
		return 0;
	const uint8_t *p = data + 2 + 2 * k;
	size_t n = size - 2 - 2 * k;

	struct route rt = {.role = ctl & 1,
			   .max_frame = limits[(ctl >> 1) & 3][0],
			   .max_message = limits[(ctl >> 1) & 3][1]};
	switch ((ctl >> 3) & 3) {
	case 0: rt.mechs = mechs_null; rt.n_mechs = 1; break;
	case 1: rt.mechs = mechs_two; rt.n_mechs = 2; break;
	case 2: rt.mechs = mechs_null; rt.n_mechs = 0; break; /* refuses everyone */
	case 3: rt.mechs = mechs_curve; rt.n_mechs = 1; break;
	}
	switch (ctl >> 5) {
	case 1: rt.stypes = st_push; break;
	case 2: rt.stypes = st_dealer_req; break;
	case 3: rt.stypes = st_sub; break;
	default: rt.stypes = NULL; break;
	}

	size_t cuts[15];
	for (size_t i = 0; i < k; i++)
		cuts[i] = (((size_t)data[2 + 2 * i] << 8) | data[3 + 2 * i]) % (n + 1);
	qsort(cuts, k, sizeof(cuts[0]), cmp_size);

	/* 1. Session level, this role, four ways of cutting. */
	struct srecs s_whole, s_cut, s_stride, s_rand;
	s_run(&rt, p, n, NULL, &s_whole);
	struct chunker cc = {.cuts = cuts, .ncuts = k};
	s_run(&rt, p, n, &cc, &s_cut);
	struct chunker cs = {.stride = (size_t)(split >> 4) + 1};
	s_run(&rt, p, n, &cs, &s_stride);
	struct chunker cr = {.seed = ctl * 0x9E3779B97F4A7C15ull + n};
	s_run(&rt, p, n, &cr, &s_rand);
	s_same(&s_whole, &s_cut, "whole vs input-chosen cuts");
	s_same(&s_whole, &s_stride, "whole vs strided");
	s_same(&s_whole, &s_rand, "whole vs random chunks");
	free(s_whole.r);
	free(s_cut.r);
	free(s_stride.r);
	free(s_rand.r);

	/* 2. Decoder level on what follows an accepted greeting (or on all of
	 * it), against the independent model. */
	size_t g = greeting(p, n); /* 3. greeting monotonicity, inside */
	const uint8_t *f = p + g;
	size_t fn = n - g;
	uint64_t max_frame = rt.max_frame;
	struct recs want = {0}, whole = {0}, cut = {0}, strided = {0}, randomly = {0};
	model(f, fn, max_frame, &want);
	run(f, fn, max_frame, NULL, &whole);
	size_t fcuts[15];
	for (size_t i = 0; i < k; i++)
		fcuts[i] = cuts[i] > g ? cuts[i] - g : 0;
	struct chunker dc = {.cuts = fcuts, .ncuts = k};
	run(f, fn, max_frame, &dc, &cut);
	struct chunker ds = {.stride = (size_t)(split >> 4) + 1};
	run(f, fn, max_frame, &ds, &strided);
	struct chunker dr = {.seed = ctl * 0x9E3779B97F4A7C15ull + fn};
	run(f, fn, max_frame, &dr, &randomly);
	same(&want, &whole, "model vs whole");
	same(&whole, &cut, "whole vs input-chosen cuts");
	same(&whole, &strided, "whole vs strided");
	same(&whole, &randomly, "whole vs random chunks");

	/* 4. Every complete frame body goes through the command parsers. */
	commands(p, n);
	for (size_t i = 0; i + 1 < want.n; i++)
		if (want.r[i].kind == REC_HEADER && want.r[i + 1].kind == REC_END)
			commands(f + want.r[i].off, (size_t)want.r[i].size);

	free(want.r);
	free(whole.r);
	free(cut.r);
	free(strided.r);
	free(randomly.r);
	return 0;
}
