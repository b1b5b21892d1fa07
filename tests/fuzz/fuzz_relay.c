/* fuzz_relay: libFuzzer target for the data path itself (src/relay.c, with
 * the real parser and scanner): one direction of a connection fed through
 * relay_process over libevent evbuffers, as conn.c does after each read.
 *
 * Input layout (like fuzz_zmtp; tests/fuzz/gen_corpus.py writes seeds):
 *   byte 0  ctl: bit 0 direction (0 client->worker, scanned; 1 worker->client),
 *           bit 1 log-only, bit 2 on_violation = close, bit 3 peer trusted
 *           to send pickle, bits 4-5 limits (max_frame / max_message),
 *           bit 6 socket_types = [ "PUSH" ], bit 7 max_scan_bytes = 3 (a
 *           frame undecided after 3 body bytes drops, whatever the split)
 *   byte 1  split: low 4 bits k = number of cut points, high 4 bits the
 *           stride - 1 of the strided feeds
 *   2k bytes  cut points, 16-bit big-endian, modulo len(stream)+1
 *   rest    the stream the source sends (greeting first); the other
 *           direction is first taken past its handshake (a greeting and
 *           READY fed through the relay)
 *
 * The stream is fed whole, at the input's cut points, in strides, in
 * pseudo-random pieces (empty feeds included), and in pseudo-random pieces
 * with every body range the relay offers (RELAY_SPLICE) moved past it (as
 * the kernel does it for conn.c) and reported with relay_spliced. Every
 * run must end the same:
 * the same bytes forwarded, byte for byte; the same verdict (still open, or
 * closed with the same reason, blamed on the same side); the same amount
 * left unparsed and held. And whatever the split:
 *   - a client->worker stream that is scanned and enforced forwards no data
 *     frame that the scanner, run over the whole frame from scratch, calls a
 *     pickle, and no data frame of a message it has not finished judging;
 *   - what is forwarded is a well-formed prefix of the input's frame
 *     sequence (greeting, handshake, then frames no larger than
 *     max_frame_size; client messages within max_message_size);
 *   - trusted peers and the worker get their input forwarded unchanged (up
 *     to where the stream was refused); log-only peers get their data frames
 *     and their commands forwarded in order, nothing dropped (commands may
 *     pass ahead of a held message).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "zmtpfw/config.h"
#include "zmtpfw/log.h"
#include "zmtpfw/pickle_scan.h"
#include "zmtpfw/relay.h"
#include "zmtpfw/route.h"
#include "zmtpfw/zmtp.h"

static void die(const char *what, size_t i)
{
	fprintf(stderr, "fuzz_relay: %s (%zu)\n", what, i);
	abort();
}

struct result {
	uint8_t *out; /* everything forwarded to the other side */
	size_t n, cap;
	bool closed;
	const char *reason, *from;
	size_t left_in, left_hold; /* still in the source buffer / held */
};

struct chunker {
	size_t stride;
	const size_t *cuts;
	size_t ncuts, ci;
	uint64_t seed;
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

static void take_output(struct evbuffer *b, struct result *r)
{
	size_t len = evbuffer_get_length(b);
	if (len == 0)
		return;
	if (r->n + len > r->cap) {
		r->cap = (r->n + len) * 2 + 64;
		r->out = realloc(r->out, r->cap);
		if (!r->out)
			abort();
	}
	if (evbuffer_remove(b, r->out + r->n, len) != (int)len)
		die("evbuffer_remove", len);
	r->n += len;
}

/* The other direction's greeting and READY (Socket-Type PUSH, which the
 * socket_types knob admits), so that frames may follow either way. */
static void handshake_other(struct relay *r, enum relay_way w, struct evbuffer *in,
			    struct evbuffer *out)
{
	static const uint8_t ready[] = { 0x04, 26, 5, 'R', 'E', 'A', 'D', 'Y', 11, 'S', 'o', 'c',
					 'k', 'e', 't', '-', 'T', 'y', 'p', 'e', 0, 0, 0, 4,
					 'P', 'U', 'S', 'H' };
	uint8_t g[ZMTP_GREETING_LEN] = { 0xFF, [9] = 0x7F, [10] = 3, [12] = 'N', 'U', 'L', 'L' };

	if (evbuffer_add(in, g, sizeof(g)) != 0 || evbuffer_add(in, ready, sizeof(ready)) != 0 ||
	    relay_process(r, w, in, out).act != RELAY_CONTINUE ||
	    evbuffer_get_length(in) != 0)
		die("the other direction's handshake failed", 0);
	evbuffer_drain(out, evbuffer_get_length(out));
}

/* splice: after each pass, hand what the relay offers (RELAY_SPLICE, up to
 * a chunk's worth) straight from the input to the output, as conn.c's pump
 * does through a pipe, and report it with relay_spliced. */
static void run(struct route *rt, int role, const uint8_t *p, size_t n, struct chunker *ch,
		bool splice, struct result *r)
{
	struct sockaddr_storage sa;
	memset(&sa, 0, sizeof(sa));
	struct relay_peer peer = {
		.route = rt,
		.ctx = { .route = "fuzz", .conn = 1, .peer = "127.0.0.1:5555" },
		.sa = (const struct sockaddr *)&sa,
	};
	struct relay *c = relay_new(&peer);
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	struct evbuffer *oin = evbuffer_new(), *oout = evbuffer_new();
	if (!c || !in || !out || !oin || !oout)
		abort();
	enum relay_way w = role == 0 ? RELAY_UP : RELAY_DOWN;
	handshake_other(c, role == 0 ? RELAY_DOWN : RELAY_UP, oin, oout);

	size_t pos = 0;
	memset(r, 0, sizeof(*r));
	while (!r->closed && (pos < n || (ch && ch->cuts && ch->ci < ch->ncuts))) {
		size_t len = ch ? next_chunk(ch, pos, n) : n - pos;
		if (len > n - pos)
			len = n - pos;
		/* As conn_read does: append what arrived, then process. */
		if (len && evbuffer_add(in, p + pos, len) != 0)
			abort();
		pos += len;
		struct relay_action a = relay_process(c, w, in, out);
		if (a.act == RELAY_CLOSE) {
			r->closed = true;
			r->reason = a.reason;
			r->from = a.from;
			if (!r->reason)
				die("closed without a reason", pos);
		}
		take_output(out, r);
		uint64_t sl = splice && a.act == RELAY_SPLICE ? a.splice : 0;
		if (sl > 0 && pos < n) {
			size_t k = ch ? next_chunk(ch, pos, n) : n - pos;
			if (k > n - pos)
				k = n - pos;
			if (k > sl)
				k = (size_t)sl;
			if (k > 0) {
				struct evbuffer *moved = evbuffer_new();
				if (!moved || evbuffer_add(moved, p + pos, k) != 0)
					abort();
				take_output(moved, r);
				evbuffer_free(moved);
				pos += k;
				struct relay_action b = relay_spliced(c, w, k);
				/* the output is empty: the drained event must agree */
				struct relay_action e = relay_drained(c, w, in);
				if (b.act != e.act || b.splice != e.splice)
					die("relay_spliced and relay_drained disagree", pos);
			}
		}
		if (!r->closed && pos == n && (!ch || !ch->cuts || ch->ci >= ch->ncuts))
			break;
	}
	if (!r->closed && relay_process(c, w, in, out).act == RELAY_CLOSE) /* nothing new */
		die("an empty pass closed the connection", pos);
	take_output(out, r);
	r->left_in = r->closed ? 0 : evbuffer_get_length(in);
	r->left_hold = r->closed ? 0 : (size_t)relay_held(c);
	relay_free(c);
	evbuffer_free(in);
	evbuffer_free(out);
	evbuffer_free(oin);
	evbuffer_free(oout);
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void same(const struct result *a, const struct result *b, const char *what)
{
	if (a->closed != b->closed || !str_eq(a->reason, b->reason) || !str_eq(a->from, b->from)) {
		fprintf(stderr, "fuzz_relay: %s: verdict %s/%s (%s) vs %s/%s (%s)\n", what,
			a->closed ? "closed" : "open", a->reason ? a->reason : "-", a->from ? a->from : "-",
			b->closed ? "closed" : "open", b->reason ? b->reason : "-", b->from ? b->from : "-");
		abort();
	}
	/* A refused greeting: each byte that passed was forwarded at once, so
	 * how much went out before the bad byte arrived depends on the split.
	 * (Both outputs are checked to be a prefix of the input elsewhere.) */
	if (a->closed && str_eq(a->reason, "greeting"))
		return;
#ifdef FUZZ_RELAY_LENIENT_CLOSE
	/* Exploration knob (not for CI): on a close, accept that frames judged
	 * in the same pass as the violation were not flushed; one output must
	 * still be a prefix of the other. */
	if (a->closed) {
		size_t m = a->n < b->n ? a->n : b->n;
		if (m && memcmp(a->out, b->out, m) != 0)
			die("closing runs forwarded different bytes", m);
		return;
	}
#endif
	if (a->n != b->n || (a->n && memcmp(a->out, b->out, a->n) != 0)) {
		size_t i = 0;
		while (i < a->n && i < b->n && a->out[i] == b->out[i])
			i++;
		fprintf(stderr, "fuzz_relay: %s: forwarded %zu vs %zu bytes, first difference at %zu\n",
			what, a->n, b->n, i);
		for (int k = 0; k < 2; k++) {
			const struct result *x = k ? b : a;
			fprintf(stderr, "  %s from %zu:", k ? "second" : "first ", i);
			for (size_t j = i; j < x->n && j < i + 96; j++)
				fprintf(stderr, " %02x", x->out[j]);
			fprintf(stderr, "\n");
		}
		abort();
	}
	if (a->left_in != b->left_in || a->left_hold != b->left_hold) {
		fprintf(stderr, "fuzz_relay: %s: left %zu+%zu held vs %zu+%zu\n", what, a->left_in,
			a->left_hold, b->left_in, b->left_hold);
		abort();
	}
}

/* Walk the forwarded bytes: greeting, handshake frame, frames. Checks they
 * are a prefix-consistent frame sequence within the limits and, when the
 * direction is enforced, that no whole data frame scans as a pickle and no
 * message was forwarded before its last frame was judged. */
static void check_output(const struct result *r, const struct config_route *rt, bool up,
			 bool enforce)
{
	const uint8_t *o = r->out;
	size_t n = r->n, i = ZMTP_GREETING_LEN;
	bool first = true;
	uint64_t msg_bytes = 0;
	bool in_msg = false;

	if (n <= i)
		return;
	while (i < n) {
		uint8_t f = o[i];
		if (f & 0xF8 || ((f & ZMTP_FLAG_COMMAND) && (f & ZMTP_FLAG_MORE)))
			die("forwarded a frame with bad flags", i);
		size_t hl = (f & ZMTP_FLAG_LONG) ? 9 : 2;
		if (n - i < hl)
			return; /* a header cut short: only possible at the very end */
		uint64_t size = 0;
		for (size_t k = 1; k < hl; k++)
			size = (size << 8) | o[i + k];
		/* The handshake is bounded by ZMTP_CMD_MAX, not max_frame_size. */
		if (!first && size > rt->max_frame_size)
			die("forwarded a frame above max_frame_size", i);
		bool whole = size <= n - i - hl;
		if (first) {
			if (!(f & ZMTP_FLAG_COMMAND) || size > ZMTP_CMD_MAX)
				die("forwarded a handshake that is no command", i);
			first = false;
		} else if (!(f & ZMTP_FLAG_COMMAND)) {
			msg_bytes += size;
			if (up && msg_bytes > rt->max_message_size)
				die("forwarded a message above max_message_size", i);
			if (enforce && whole) {
				static struct pscan_state ps;
				pscan_init(&ps);
				enum pscan_verdict v = pscan_feed(&ps, o + i + hl, (size_t)size);
				if (v == PSCAN_NEED_MORE)
					v = pscan_finish(&ps);
				if (v == PSCAN_PICKLE)
					die("forwarded a data frame that scans as a pickle", i);
			}
			in_msg = (f & ZMTP_FLAG_MORE) != 0;
			if (!in_msg)
				msg_bytes = 0;
		}
		if (!whole) {
			/* A frame may stream out before its end only once the
			 * whole message is judged: it must be the last frame. */
			if (enforce && !first && !(f & ZMTP_FLAG_COMMAND) && (f & ZMTP_FLAG_MORE))
				die("forwarded part of a frame of a message not yet judged", i);
			return;
		}
		i += hl + (size_t)size;
	}
	/* Output ends on a frame boundary. Enforced client messages leave
	 * whole: a cut after a MORE frame is fine only if the message is being
	 * released, which then continues; nothing to check here. */
	(void)in_msg;
}

/* The complete frames after greeting and handshake, commands (cmd = 1) or
 * data frames (cmd = 0), header included, up to max. Returns how many. */
struct span {
	const uint8_t *p;
	size_t len;
};

static size_t frames_of(const uint8_t *b, size_t n, int cmd, struct span *out, size_t max)
{
	size_t i = ZMTP_GREETING_LEN, k = 0;
	bool first = true;
	while (i < n) {
		uint8_t f = b[i];
		size_t hl = (f & ZMTP_FLAG_LONG) ? 9 : 2;
		if (n - i < hl)
			break;
		uint64_t size = 0;
		for (size_t j = 1; j < hl; j++)
			size = (size << 8) | b[i + j];
		if (size > n - i - hl)
			break;
		if (!first && ((f & ZMTP_FLAG_COMMAND) != 0) == (cmd != 0) && k < max)
			out[k++] = (struct span){b + i, hl + (size_t)size};
		first = false;
		i += hl + (size_t)size;
	}
	return k;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t limits[4][2] = {
		{CONFIG_DEF_MAX_FRAME, CONFIG_DEF_MAX_MESSAGE}, {1, 1}, {255, 300}, {65536, 1 << 20}};
	static bool once;

	if (!once) {
		log_setup(LOG_ERROR, LOG_FORMAT_JSON); /* warn lines would drown the output */
		once = true;
	}
	if (size < 2)
		return 0;
	uint8_t ctl = data[0], split = data[1];
	size_t k = split & 15;
	if (size < 2 + 2 * k)
		return 0;
	const uint8_t *p = data + 2 + 2 * k;
	size_t n = size - 2 - 2 * k;
	int role = ctl & 1;
	bool log_only = ctl & 2, trusted = ctl & 8;

	struct config_route rt;
	memset(&rt, 0, sizeof(rt));
	snprintf(rt.name, sizeof(rt.name), "fuzz");
	memcpy(rt.mechanisms[0], "NULL", 4);
	rt.n_mechanisms = 1;
	rt.mode = log_only ? CONFIG_MODE_LOG_ONLY : CONFIG_MODE_ENFORCE;
	/* relay derives trust from the route (peer_sa is zeroed here) */
	rt.pickle = trusted ? CONFIG_PICKLE_ALLOW : CONFIG_PICKLE_DROP;
	rt.on_violation = (ctl & 4) ? CONFIG_ON_VIOLATION_CLOSE : CONFIG_ON_VIOLATION_DROP_MESSAGE;
	rt.max_frame_size = limits[(ctl >> 4) & 3][0];
	rt.max_message_size = limits[(ctl >> 4) & 3][1];
	rt.max_scan_bytes = (ctl & 128) ? 3 : CONFIG_DEF_MAX_SCAN_BYTES;
	rt.handshake_timeout_ms = CONFIG_DEF_HANDSHAKE_MS;
	rt.max_connections = CONFIG_DEF_MAX_CONNS;
	if (ctl & 64) {
		memcpy(rt.socket_types[0], "PUSH", 4);
		rt.n_socket_types = 1;
	}
	struct route *route = calloc(1, sizeof(*route)); /* no loop: nothing here waits */
	if (!route)
		abort();
	route->cfg = &rt;

	size_t cuts[15];
	for (size_t i = 0; i < k; i++)
		cuts[i] = (((size_t)data[2 + 2 * i] << 8) | data[3 + 2 * i]) % (n + 1);
	qsort(cuts, k, sizeof(cuts[0]), cmp_size);

	struct result whole, cut, stride, rnd, spl;
	run(route, role, p, n, NULL, false, &whole);
	struct chunker cc = {.cuts = cuts, .ncuts = k};
	run(route, role, p, n, &cc, false, &cut);
	struct chunker cs = {.stride = (size_t)(split >> 4) + 1};
	run(route, role, p, n, &cs, false, &stride);
	struct chunker cr = {.seed = ctl * 0x9E3779B97F4A7C15ull + n};
	run(route, role, p, n, &cr, false, &rnd);
	struct chunker cp = {.seed = ctl * 0xD1B54A32D192ED03ull + n};
	run(route, role, p, n, &cp, true, &spl);
	const struct result *all[5] = {&whole, &cut, &stride, &rnd, &spl};
	for (int i = 0; i < 5; i++)
		if (all[i]->closed && str_eq(all[i]->reason, "greeting") &&
		    (all[i]->n >= ZMTP_GREETING_LEN || all[i]->n > n ||
		     (all[i]->n && memcmp(all[i]->out, p, all[i]->n) != 0)))
			die("a refused greeting forwarded more than its valid prefix", all[i]->n);
	same(&whole, &cut, "whole vs input-chosen cuts");
	same(&whole, &stride, "whole vs strided");
	same(&whole, &rnd, "whole vs random chunks");
	same(&whole, &spl, "whole vs random chunks with judged bodies spliced");

	bool scanned = role == 0 && !trusted;
	check_output(&whole, &rt, role == 0, scanned && !log_only);
	/* Nothing to judge: the input passes unchanged, up to the refusal. */
	if (scanned && log_only) {
		/* Log-only still holds a message until its last frame is judged,
		 * and commands pass ahead of held frames: the data frames and the
		 * commands each leave in input order, nothing dropped. */
		for (int cmdk = 0; cmdk < 2; cmdk++) {
			struct span in[64], out[64];
			size_t ni = frames_of(p, n, cmdk, in, 64), no = frames_of(whole.out, whole.n, cmdk, out, 64);
			if (no > ni)
				die("log-only forwarded frames that were not sent", no);
			for (size_t i = 0; i < no && i < 64; i++)
				if (in[i].len != out[i].len || memcmp(in[i].p, out[i].p, in[i].len) != 0)
					die(cmdk ? "log-only reordered or altered commands"
						 : "log-only reordered or altered data frames", i);
		}
	} else if (!scanned) {
		if (whole.n > n || (whole.n && memcmp(whole.out, p, whole.n) != 0))
			die("an unjudged stream was altered", whole.n);
		if (!whole.closed && whole.n + whole.left_in + whole.left_hold != n)
			die("an unjudged stream lost bytes", whole.n);
	} else if (whole.n > n) {
		die("forwarded more than was sent", whole.n);
	}

	free(whole.out);
	free(cut.out);
	free(stride.out);
	free(rnd.out);
	free(spl.out);
	free(route);
	return 0;
}
