/* fuzz_pickle_scan: libFuzzer target for the pickle scanner (src/pickle_scan.c).
 *
 * Input: byte 0 is a control byte (bits 0-2: pscan_init_opts options,
 * bits 3-7: chunk stride - 1), the rest is the frame. Checks, aborting on
 * any difference:
 *  - no crash, no out-of-bounds access (ASan/UBSan), whatever the bytes;
 *  - the same verdict, reason and offset whether the frame is fed whole,
 *    byte by byte, in strides, or in pseudo-random pieces with empty feeds
 *    mixed in; the state is filled with junk before pscan_init each time
 *    (init is lazy: nothing it skips may be read);
 *  - the verdict is final: more bytes and a second finish change nothing;
 *    the offset lies within the frame;
 *  - the frame behind a PROTO header gets the same verdict and reason at
 *    offset + 2 (the first-byte fast path agrees with the emulator);
 *  - collect mode agrees with flag-and-stop mode: a PICKLE frame's first
 *    reported import is the flagging opcode at the same offset, a CLEAN
 *    frame reports none and ends the same way; its reports (opcode, offset,
 *    names) are the same however the frame is split; offsets increase;
 *    names are within PSCAN_NAME_MAX, GLOBAL/INST always named.
 * Every feed is an exact-size heap copy, so ASan sees any over-read. */
#include "zmtpfw/pickle_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct res {
	enum pscan_verdict v;
	const char *reason;
	uint64_t off;
};

struct col {
	uint64_t n, hash, last_off;
	const char *first_op;
	uint64_t first_off;
	size_t len;
};

static struct pscan_names *names;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_pickle_scan: %s\n", what);
	abort();
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3u;
	return h;
}

static void on_import(void *ctx, struct pscan_import *imp)
{
	struct col *c = ctx;
	if (imp->shape) { /* not an import: part of the split-invariant hash */
		c->hash = fnv(fnv(c->hash, imp->shape, strlen(imp->shape)), &imp->offset,
			      sizeof(imp->offset));
		return;
	}
	if (c->n > 0 && imp->offset <= c->last_off)
		die("import offsets not increasing");
	if (imp->offset >= c->len)
		die("import offset beyond the frame");
	if ((imp->module == NULL) != (imp->name == NULL))
		die("half-named import");
	if (imp->module && (imp->module_len > PSCAN_NAME_MAX || imp->name_len > PSCAN_NAME_MAX))
		die("name longer than PSCAN_NAME_MAX");
	if ((!strcmp(imp->opcode, "GLOBAL") || !strcmp(imp->opcode, "INST")) &&
	    (imp->module == NULL || imp->module_len == 0 || imp->name_len == 0))
		die("GLOBAL/INST without names");
	if (imp->truncated && imp->module_len != PSCAN_NAME_MAX && imp->name_len != PSCAN_NAME_MAX)
		die("truncated flag without a cut name");
	uint64_t h = fnv(c->hash, imp->opcode, strlen(imp->opcode));
	h = fnv(h, &imp->offset, sizeof(imp->offset));
	h = fnv(h, &imp->ext_code, sizeof(imp->ext_code));
	if (imp->module) {
		h = fnv(h, imp->module, imp->module_len);
		h = fnv(h, "/", 1);
		h = fnv(h, imp->name, imp->name_len);
	}
	c->hash = fnv(h, &imp->truncated, 1);
	if (c->n++ == 0) {
		c->first_op = imp->opcode;
		c->first_off = imp->offset;
	}
	c->last_off = imp->offset;
}

/* mode 0: whole; 1: byte by byte; 2: stride; 3: pseudo-random pieces. */
static struct res run(const uint8_t *d, size_t n, unsigned opts, int mode, size_t stride,
		      uint32_t seed, struct col *c)
{
	struct pscan_state st;
	struct res r;
	size_t off = 0;

	for (size_t i = 0; i < sizeof(st.opaque); i++) {
		seed = seed * 1664525u + 1013904223u;
		st.opaque[i] = (unsigned char)(seed >> 24);
	}
	pscan_init_opts(&st, opts);
	if (c) {
		memset(c, 0, sizeof(*c));
		c->hash = 0xcbf29ce484222325u;
		c->len = n;
		pscan_collect(&st, names, on_import, c);
	}
	while (off < n) {
		size_t k = mode == 0 ? n : mode == 1 ? 1 : mode == 2 ? stride : 0;
		if (mode == 3) {
			seed = seed * 1664525u + 1013904223u;
			k = (seed >> 16) % 9 == 0 ? 0 : 1 + (seed >> 8) % 97;
		}
		if (k > n - off)
			k = n - off;
		uint8_t *copy = malloc(k ? k : 1);
		if (copy == NULL)
			die("oom");
		memcpy(copy, d + off, k);
		enum pscan_verdict v = pscan_feed(&st, copy, k);
		free(copy);
		off += k;
		if (v != PSCAN_NEED_MORE)
			break;
	}
	r.v = pscan_finish(&st);
	r.reason = pscan_reason(&st);
	r.off = pscan_offset(&st);
	if (r.v == PSCAN_NEED_MORE)
		die("finish left NEED_MORE");
	if (r.off > n)
		die("offset beyond the frame");
	/* Final. */
	if (pscan_feed(&st, (const uint8_t *)"cos\nsystem\n", 11) != r.v || pscan_finish(&st) != r.v ||
	    pscan_offset(&st) != r.off || strcmp(pscan_reason(&st), r.reason))
		die("verdict not final");
	if (c && (pscan_imports(&st) != c->n || (c->n > 0) != (r.v == PSCAN_PICKLE)))
		die("collect verdict vs imports");
	return r;
}

static int same(struct res a, struct res b)
{
	return a.v == b.v && !strcmp(a.reason, b.reason) && a.off == b.off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (names == NULL) {
		names = malloc(pscan_names_size(PSCAN_NAMES_ARENA, PSCAN_NAMES_MEMO));
		if (names == NULL)
			die("oom");
		names = pscan_names_init(names, PSCAN_NAMES_ARENA, PSCAN_NAMES_MEMO);
	}
	unsigned opts = data[0] & 7;
	size_t stride = (size_t)(data[0] >> 3) + 1;
	const uint8_t *d = data + 1;
	size_t n = size - 1;

	struct res whole = run(d, n, opts, 0, 0, (uint32_t)size, NULL);
	if (!same(run(d, n, opts, 1, 0, 7, NULL), whole))
		die("byte by byte differs");
	if (!same(run(d, n, opts, 2, stride, 11, NULL), whole))
		die("stride differs");
	if (!same(run(d, n, opts, 3, 0, (uint32_t)n * 2654435761u, NULL), whole))
		die("random pieces differ");

	uint8_t *pre = malloc(n + 2);
	if (pre == NULL)
		die("oom");
	pre[0] = 0x80;
	pre[1] = 0x02;
	memcpy(pre + 2, d, n);
	struct res p = run(pre, n + 2, opts, 0, 0, 3, NULL);
	free(pre);
	if (p.v != whole.v || strcmp(p.reason, whole.reason) || p.off != whole.off + 2)
		die("PROTO prefix changes the verdict (fast path)");

	struct col c1, c2;
	struct res cw = run(d, n, opts, 0, 0, 5, &c1);
	if (whole.v == PSCAN_PICKLE) {
		if (c1.n == 0 || strcmp(c1.first_op, whole.reason) || c1.first_off != whole.off)
			die("collect mode: first import is not the flagging opcode");
	} else if (c1.n != 0 || !same(cw, whole)) {
		die("collect mode: clean frame reported differently");
	}
	struct res cs = run(d, n, opts, 3, 0, 9, &c2);
	if (!same(cs, cw) || c1.n != c2.n || c1.hash != c2.hash)
		die("collect mode: split changes the reports");
	return 0;
}
