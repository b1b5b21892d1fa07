/* pscan_driver: run the pickle scanner over bytes, for tests and triage.
 *
 *   pscan_driver [--split K] [--opts N] [FILE]   scan FILE (or stdin) as one frame
 *   pscan_driver [options] --hexlines             one hex-encoded frame per stdin line
 *   pscan_driver --bench [FILE]                   timings (see bench())
 *   pscan_driver --info                           "sanitized 0|1"
 *   pscan_driver [--opts N] --random COUNT MAXLEN SEED   random frames (see
 *                                                 random_frames())
 *
 * Prints one line per frame: "PICKLE <reason> <offset>" or
 * "CLEAN <reason> <offset>". Options:
 *   --split K    feed the scanner K bytes at a time (default: all at once)
 *   --opts N     pscan_init_opts() options, or-ed: 1 EXT unregistered,
 *                2 no persistent_load, 4 no buffers=; 7 = PSCAN_STOCK,
 *                stock pickle.loads
 *   --collect    also run collect mode and append
 *                " imports=N first=OPCODE@OFFSET/MODULEHEX/NAMEHEX" (? for
 *                unknown names, "-" without imports)
 *   --all        with --collect: also append " outer=K all=LIST", where K
 *                counts the reports that stand for a find_class call of the
 *                outer loads() (see outer_import()) and LIST has every one
 *                of them, in stream order, comma-separated, as
 *                OPCODE[~][:EXTCODE]@OFFSET/MODULE/NAME: MODULE and NAME
 *                are hex, '' for an empty string, '-' when unknown; '~'
 *                marks a GLOBAL/INST line cut at PSCAN_NAME_MAX (the names
 *                are then the kept prefixes); EXTCODE is EXT1/2/4's code.
 *                "all=" alone when there are none. Always last on the line.
 *   --check K    verify the invariants on every frame, printing
 *                "MISMATCH <what>" instead of the verdict when one fails:
 *                the state is poisoned with junk before pscan_init (lazy
 *                init must not read it); the frame fed byte by byte (up to
 *                4 KiB) and split at K sets of random points gives the same
 *                verdict, reason and offset; the same frame behind a PROTO
 *                gives the same verdict and reason at offset + 2 (so the
 *                first-byte fast path, unused there, agrees with the
 *                emulator); collect mode agrees with flag-and-stop mode
 *                (first import = the flagging opcode, or no import and the
 *                same end) and is split-invariant too. */
#include "zmtpfw/pickle_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct result {
	enum pscan_verdict v;
	const char *reason;
	uint64_t off;
};

struct collected {
	uint64_t n;            /* imports reported */
	uint64_t hash;         /* FNV-1a over every report */
	char first[2 * 2 * PSCAN_NAME_MAX + 64]; /* the first one, printable */
	uint64_t outer;        /* reports that are find_class calls of loads() */
	char *all;             /* --all: every outer report, printable, or NULL */
	size_t all_len, all_cap;
};

static unsigned opts;
static struct pscan_names *names;
static int list_all; /* --all */

/* The names memory of collect mode (the offline size), allocated once. */
static struct pscan_names *names_new(void)
{
	return pscan_names_init(malloc(pscan_names_size(PSCAN_NAMES_ARENA, PSCAN_NAMES_MEMO)),
				PSCAN_NAMES_ARENA, PSCAN_NAMES_MEMO);
}

/* Does this report stand for a find_class() call (or persistent_load, or
 * an extension-registry look-up) of the outer loads()? The oracle compares
 * only those with what CPython's find_class was asked for: not a policy
 * shape event, nor an import of a pickle nested in a bytes value (which
 * the outer loads() never performs). */
static bool outer_import(const struct pscan_import *imp)
{
	return imp->shape == NULL && imp->depth == 0;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3u;
	return h;
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = 0;
}

/* Append n bytes of text to c->all (grown as needed). */
static void all_add(struct collected *c, const char *text, size_t n)
{
	if (c->all_len + n + 1 > c->all_cap) {
		size_t cap = c->all_cap ? c->all_cap : 4096;
		while (c->all_len + n + 1 > cap)
			cap *= 2;
		char *p = realloc(c->all, cap);
		if (p == NULL) {
			fprintf(stderr, "out of memory\n");
			exit(2);
		}
		c->all = p;
		c->all_cap = cap;
	}
	memcpy(c->all + c->all_len, text, n);
	c->all_len += n;
	c->all[c->all_len] = 0;
}

/* One name for --all: hex, '' when empty, '-' when unknown. */
static void all_name(struct collected *c, const uint8_t *p, size_t n)
{
	char h[2 * PSCAN_NAME_MAX + 1];
	if (p == NULL)
		all_add(c, "-", 1);
	else if (n == 0)
		all_add(c, "''", 2);
	else {
		if (n > PSCAN_NAME_MAX) /* never: the scanner keeps at most that */
			n = PSCAN_NAME_MAX;
		hex(h, p, n);
		all_add(c, h, 2 * n);
	}
}

static void all_entry(struct collected *c, const struct pscan_import *imp)
{
	char head[96];
	int k;
	if (c->outer > 1)
		all_add(c, ",", 1);
	if (strncmp(imp->opcode, "EXT", 3) == 0)
		k = snprintf(head, sizeof(head), "%s:%lld@%llu/", imp->opcode,
			     (long long)imp->ext_code, (unsigned long long)imp->offset);
	else
		k = snprintf(head, sizeof(head), "%s%s@%llu/", imp->opcode,
			     imp->truncated ? "~" : "", (unsigned long long)imp->offset);
	all_add(c, head, (size_t)k);
	all_name(c, imp->module, imp->module_len);
	all_add(c, "/", 1);
	all_name(c, imp->name, imp->name_len);
}

static void on_import(void *ctx, struct pscan_import *imp)
{
	struct collected *c = ctx;
	if (imp->shape)
		return; /* policy shapes are not imports */
	if (outer_import(imp)) {
		c->outer++;
		if (list_all)
			all_entry(c, imp);
	}
	uint64_t h = c->hash;
	h = fnv(h, imp->opcode, strlen(imp->opcode));
	h = fnv(h, &imp->offset, sizeof(imp->offset));
	h = fnv(h, &imp->ext_code, sizeof(imp->ext_code));
	if (imp->module)
		h = fnv(h, imp->module, imp->module_len);
	if (imp->name)
		h = fnv(h, imp->name, imp->name_len);
	c->hash = fnv(h, "|", 1);
	if (c->n++ == 0) {
		char m[2 * PSCAN_NAME_MAX + 1] = "?", nm[2 * PSCAN_NAME_MAX + 1] = "?";
		if (imp->module)
			hex(m, imp->module, imp->module_len);
		if (imp->name)
			hex(nm, imp->name, imp->name_len);
		snprintf(c->first, sizeof(c->first), "%s@%llu/%s/%s", imp->opcode,
			 (unsigned long long)imp->offset, m, nm);
	}
}

/* Scan d[0..n) fed in the given chunk lengths (chunks == NULL: whole, or
 * `split` bytes at a time). poison: fill the state with junk first. */
static struct result scan_run(const uint8_t *d, size_t n, size_t split, const size_t *chunks,
			      int poison, struct collected *col)
{
	struct pscan_state st;
	struct result r;
	size_t off = 0, ci = 0;

	if (poison)
		for (size_t i = 0; i < sizeof(st.opaque); i++)
			st.opaque[i] = (uint8_t)rnd();
	else
		memset(&st, 0, sizeof(st));
	pscan_init_opts(&st, opts);
	if (col) {
		char *keep = col->all;
		size_t keep_cap = col->all_cap;
		memset(col, 0, sizeof(*col));
		col->all = keep; /* reuse the --all buffer */
		col->all_cap = keep_cap;
		if (keep)
			keep[0] = 0;
		strcpy(col->first, "-");
		col->hash = 0xcbf29ce484222325u;
		pscan_collect(&st, names, on_import, col);
	}
	if (split == 0)
		split = n ? n : 1;
	while (off < n) {
		size_t k = chunks ? chunks[ci++] : split;
		if (k > n - off)
			k = n - off;
		if (pscan_feed(&st, d + off, k) != PSCAN_NEED_MORE)
			break;
		off += k;
	}
	r.v = pscan_finish(&st);
	r.reason = pscan_reason(&st);
	r.off = pscan_offset(&st);
	if (col && pscan_imports(&st) != col->n)
		r.reason = "IMPORT-COUNT";
	return r;
}

static int same(struct result a, struct result b)
{
	return a.v == b.v && strcmp(a.reason, b.reason) == 0 && a.off == b.off;
}

static const char *check(const uint8_t *d, size_t n, int k, struct result whole)
{
	static uint8_t *pre;
	static size_t pre_cap;
	size_t *chunks = malloc((n + 1) * sizeof(size_t));
	const char *bad = NULL;
	struct collected c1 = { 0 }, c2 = { 0 };

	if (chunks == NULL)
		return "out-of-memory";
	if (!same(scan_run(d, n, 0, NULL, 1, NULL), whole))
		bad = "poisoned-state";
	if (!bad && n <= 4096 && !same(scan_run(d, n, 1, NULL, 1, NULL), whole))
		bad = "byte-by-byte";
	for (int t = 0; !bad && t < k; t++) {
		/* Random chunk lengths, biased small, zeros included. */
		size_t cn = 0, left = n, maxc = 1 + rnd() % (n < 64 ? n + 1 : 64);
		while (left > 0) {
			size_t c = rnd() % (maxc + 1);
			chunks[cn++] = c > left ? left : c;
			left -= chunks[cn - 1];
			if (cn == n + 1 && left) { /* bound the array */
				chunks[cn - 1] += left;
				left = 0;
			}
		}
		if (!same(scan_run(d, n, 0, chunks, 1, NULL), whole))
			bad = "random-split";
	}
	if (!bad) {
		if (pre_cap < n + 2) {
			pre_cap = n + 2;
			pre = realloc(pre, pre_cap);
		}
		pre[0] = 0x80;
		pre[1] = 0x02;
		memcpy(pre + 2, d, n);
		struct result p = scan_run(pre, n + 2, 0, NULL, 1, NULL);
		if (p.v != whole.v || strcmp(p.reason, whole.reason) || p.off != whole.off + 2)
			bad = "proto-prefix";
	}
	if (!bad) {
		struct result c = scan_run(d, n, 0, NULL, 1, &c1);
		char want[64];
		snprintf(want, sizeof(want), "%s@%llu/", whole.reason, (unsigned long long)whole.off);
		if (whole.v == PSCAN_PICKLE) {
			if (c1.n == 0 || strncmp(c1.first, want, strlen(want)) != 0 || c.v != PSCAN_PICKLE)
				bad = "collect-first-import";
		} else if (c1.n != 0 || !same(c, whole)) {
			bad = "collect-clean";
		}
		if (!bad && n <= 4096) {
			struct result b = scan_run(d, n, 1, NULL, 1, &c2);
			if (!same(b, c) || c1.hash != c2.hash || c1.n != c2.n)
				bad = "collect-byte-by-byte";
		}
	}
	free(chunks);
	free(c1.all);
	free(c2.all);
	return bad;
}

static void print(struct result r, const struct collected *col)
{
	printf("%s %s %llu", r.v == PSCAN_PICKLE ? "PICKLE" : r.v == PSCAN_CLEAN ? "CLEAN" : "NEED_MORE",
	       r.reason, (unsigned long long)r.off);
	if (col)
		printf(" imports=%llu first=%s", (unsigned long long)col->n, col->first);
	if (col && list_all)
		printf(" outer=%llu all=%s", (unsigned long long)col->outer,
		       col->all ? col->all : "");
	putchar('\n');
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int run_hexlines(size_t split, int collect, int checks)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	struct collected col = { 0 };

	while ((len = getline(&line, &cap, stdin)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		uint8_t *buf = malloc((size_t)len / 2 + 1);
		size_t n = 0;
		int ok = buf != NULL && len % 2 == 0;
		for (ssize_t i = 0; ok && i < len; i += 2) {
			int hi = hexval(line[i]), lo = hexval(line[i + 1]);
			if (hi < 0 || lo < 0)
				ok = 0;
			else
				buf[n++] = (uint8_t)(hi << 4 | lo);
		}
		if (!ok) {
			printf("ERROR bad-hex\n");
		} else {
			struct result r = scan_run(buf, n, split, NULL, 0, NULL);
			const char *bad = checks >= 0 ? check(buf, n, checks, r) : NULL;
			if (bad)
				printf("MISMATCH %s\n", bad);
			else if (collect) {
				struct result c = scan_run(buf, n, split, NULL, 0, &col);
				(void)c;
				print(r, &col);
			} else
				print(r, NULL);
		}
		free(buf);
	}
	free(line);
	free(col.all);
	fflush(stdout);
	return 0;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = path ? fopen(path, "rb") : stdin;
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;

	if (f == NULL) {
		perror(path);
		return NULL;
	}
	for (;;) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 65536;
			uint8_t *nb = realloc(buf, ncap);
			if (nb == NULL) {
				fprintf(stderr, "out of memory\n");
				free(buf);
				return NULL;
			}
			buf = nb;
			cap = ncap;
		}
		size_t k = fread(buf + n, 1, cap - n, f);
		if (k == 0)
			break;
		n += k;
	}
	if (path)
		fclose(f);
	*len = n;
	return buf;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ns per frame for the relay's per-frame sequence init + feed + finish on
 * 64-byte frames, then MB/s over FILE (a benign pickle stream, scanned
 * whole) and over random 4 KiB and 1 MiB frames. */
static int bench(const char *path)
{
	static struct pscan_state st;
	uint8_t fr[4][64];
	const char *what[4] = { "json", "msgpack-array", "random", "pickle-p4" };
	volatile unsigned sink = 0;

	memset(fr[0], ' ', 64);
	memcpy(fr[0], "{\"model\": \"m\", \"prompt\": \"hello\", \"max_tokens\": 16}", 50);
	fr[1][0] = 0x93;
	for (int i = 1; i < 64; i++)
		fr[1][i] = (uint8_t)(i * 37);
	for (int i = 0; i < 64; i++)
		fr[2][i] = (uint8_t)rnd();
	fr[2][0] = 0x3f;
	size_t n = 0;
	memcpy(fr[3], "\x80\x04]\x94(", 5);
	for (n = 5; n < 61; n += 2) {
		fr[3][n] = 'K';
		fr[3][n + 1] = (uint8_t)n;
	}
	fr[3][n++] = 'e';
	while (n < 64)
		fr[3][n++] = '.';
	for (int k = 0; k < 4; k++) {
		long iters = k == 3 ? 2000000 : 20000000;
		double t0 = now();
		for (long i = 0; i < iters; i++) {
			pscan_init(&st);
			pscan_feed(&st, fr[k], 64);
			sink += pscan_finish(&st);
		}
		printf("init+feed+finish 64 B %-14s %7.2f ns/frame (%s)\n", what[k],
		       (now() - t0) * 1e9 / (double)iters, pscan_reason(&st));
	}
	if (path) {
		size_t len;
		uint8_t *b = slurp(path, &len);
		if (b == NULL)
			return 2;
		int reps = len ? (int)(512e6 / (double)len) + 1 : 1;
		double t0 = now();
		for (int r = 0; r < reps; r++) {
			pscan_init(&st);
			pscan_feed(&st, b, len);
			sink += pscan_finish(&st);
		}
		double dt = now() - t0;
		printf("benign pickle stream %zu B: %.0f MB/s (%s at %llu)\n", len,
		       (double)len * reps / dt / 1e6, pscan_reason(&st),
		       (unsigned long long)pscan_offset(&st));
		free(b);
	}
	size_t sizes[2] = { 4096, 1 << 20 };
	for (int k = 0; k < 2; k++) {
		size_t len = sizes[k], frames = (256u << 20) / len, scanned = 0;
		uint8_t *b = malloc(len + 64);
		if (b == NULL)
			return 2;
		for (size_t i = 0; i < len + 64; i++)
			b[i] = (uint8_t)rnd();
		double t0 = now();
		for (size_t f = 0; f < frames; f++) {
			const uint8_t *p = b + f % 64; /* a different frame each time */
			pscan_init(&st);
			pscan_feed(&st, p, len);
			sink += pscan_finish(&st);
			scanned += pscan_offset(&st) + 1;
		}
		double dt = now() - t0;
		printf("random %7zu B frames: %.0f MB/s of frame bytes (%.1f bytes examined per frame)\n",
		       len, (double)len * frames / dt / 1e6, (double)scanned / frames);
		free(b);
	}
	printf("(verdict checksum %u)\n", sink);
	return 0;
}

/* COUNT random frames, lengths log-uniform in [1, MAXLEN]: prints
 * "FLAG <hex> <reason> <offset>" per frame scanned PICKLE, then
 * "random <count> flagged <k> bytes <total>". */
static int random_frames(unsigned long long count, size_t maxlen, unsigned long long seed)
{
	uint8_t *b = malloc(maxlen);
	char *h = malloc(2 * maxlen + 1);
	unsigned long long flagged = 0, total = 0;

	if (b == NULL || h == NULL)
		return 2;
	rng_state ^= seed * 0x2545f4914f6cdd1du;
	for (unsigned long long f = 0; f < count; f++) {
		int bits = 0;
		while (((size_t)1 << bits) < maxlen)
			bits++;
		size_t len = (size_t)1 << (rnd() % (unsigned)(bits + 1));
		len = len / 2 + rnd() % (len / 2 + 1);
		if (len == 0)
			len = 1;
		if (len > maxlen)
			len = maxlen;
		for (size_t i = 0; i < len; i += 8) {
			uint64_t r = rnd();
			memcpy(b + i, &r, len - i < 8 ? len - i : 8);
		}
		total += len;
		struct result r = scan_run(b, len, 0, NULL, 0, NULL);
		if (r.v == PSCAN_PICKLE) {
			flagged++;
			hex(h, b, len);
			printf("FLAG %s %s %llu\n", h, r.reason, (unsigned long long)r.off);
		}
	}
	printf("random %llu flagged %llu bytes %llu\n", count, flagged, total);
	free(b);
	free(h);
	return 0;
}

#if defined(__SANITIZE_ADDRESS__)
#define DRIVER_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRIVER_SANITIZED 1
#endif
#endif
#ifndef DRIVER_SANITIZED
#define DRIVER_SANITIZED 0
#endif

int main(int argc, char **argv)
{
	size_t split = 0;
	int hexlines = 0, collect = 0, checks = -1, do_bench = 0;
	const char *path = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--split") == 0 && i + 1 < argc)
			split = (size_t)strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--opts") == 0 && i + 1 < argc)
			opts = (unsigned)strtoul(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--check") == 0 && i + 1 < argc)
			checks = atoi(argv[++i]);
		else if (strcmp(argv[i], "--hexlines") == 0)
			hexlines = 1;
		else if (strcmp(argv[i], "--collect") == 0)
			collect = 1;
		else if (strcmp(argv[i], "--all") == 0)
			list_all = 1;
		else if (strcmp(argv[i], "--info") == 0) {
			/* Lets tests size their runs for a sanitized build. */
			printf("sanitized %d\n", DRIVER_SANITIZED);
			return 0;
		} else if (strcmp(argv[i], "--bench") == 0)
			do_bench = 1;
		else if (strcmp(argv[i], "--random") == 0 && i + 3 < argc) {
			unsigned long long cnt = strtoull(argv[i + 1], NULL, 10);
			size_t maxlen = (size_t)strtoull(argv[i + 2], NULL, 10);
			unsigned long long seed = strtoull(argv[i + 3], NULL, 10);
			return random_frames(cnt, maxlen ? maxlen : 1, seed);
		}
		else
			path = argv[i];
	}
	if (do_bench)
		return bench(path);
	if (collect || checks >= 0) {
		names = names_new();
		if (names == NULL)
			return 2;
	}
	if (hexlines)
		return run_hexlines(split, collect, checks);
	size_t n;
	uint8_t *buf = slurp(path, &n);
	if (buf == NULL)
		return 2;
	struct collected col = { 0 };
	struct result r = scan_run(buf, n, split, NULL, 0, NULL);
	if (collect)
		(void)scan_run(buf, n, split, NULL, 0, &col);
	print(r, collect ? &col : NULL);
	free(col.all);
	free(buf);
	free(names);
	return 0;
}
