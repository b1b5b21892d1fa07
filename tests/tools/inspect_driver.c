/* inspect_driver: the relay's frame inspector over frames read from stdin,
 * for the false-positive tests and the policy benchmark.
 *
 *   inspect_driver [--globals LIST] [--loader stock|plain|any] [--no-msgpack]
 *                  [--bench SECONDS] < FRAMES
 *
 * FRAMES: each frame as a 4-byte little-endian length, then its bytes.
 * Prints one line per dropped frame ("drop INDEX REASON WHERE OPCODE
 * GLOBAL"), then "frames N pass P drop D bytes B". --globals judges every
 * frame as from a trusted peer under that list (comma-separated, @profile
 * allowed); without it, as from an untrusted peer. --bench re-runs the
 * whole set until SECONDS passed and prints frames/s and MB/s instead. */
#include "zmtpfw/inspect.h"
#include "zmtpfw/pickle_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct frames {
	uint8_t **p;
	uint32_t *len;
	size_t n, cap;
	uint64_t bytes;
};

static int read_frames(struct frames *f)
{
	uint8_t h[4];
	while (fread(h, 1, 4, stdin) == 4) {
		uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
			       (uint32_t)h[3] << 24;
		if (f->n == f->cap) {
			f->cap = f->cap ? 2 * f->cap : 1024;
			f->p = realloc(f->p, f->cap * sizeof(*f->p));
			f->len = realloc(f->len, f->cap * sizeof(*f->len));
			if (!f->p || !f->len)
				return -1;
		}
		f->p[f->n] = malloc(len ? len : 1);
		if (!f->p[f->n] || fread(f->p[f->n], 1, len, stdin) != len)
			return -1;
		f->len[f->n++] = len;
		f->bytes += len;
	}
	return 0;
}

static struct ppolicy *parse_list(const char *list)
{
	char err[256];
	struct ppolicy *p = ppolicy_new();
	if (!p || ppolicy_add_list(p, list, err, sizeof(err)) != 0) {
		fprintf(stderr, "inspect_driver: %s\n", p ? err : "out of memory");
		exit(2);
	}
	return p;
}

static enum inspect_verdict judge(struct inspect *in, const struct inspect_cfg *cfg,
				  const uint8_t *p, uint32_t len)
{
	if (len > 0 && inspect_first_byte_pass(p[0]))
		return INSPECT_PASS; /* the relay's fast path */
	inspect_begin(in, cfg, len);
	enum inspect_verdict v = inspect_feed(in, p, len);
	return v == INSPECT_NEED_MORE ? inspect_end(in) : v;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct inspect_cfg cfg = { .pscan_opts = PSCAN_EXT_UNREGISTERED | PSCAN_NO_PERSID,
				   .msgpack = true };
	struct ppolicy *pol = NULL;
	double bench = 0;
	struct frames f = { 0 };

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--globals") == 0 && i + 1 < argc) {
			pol = parse_list(argv[++i]);
		} else if (strcmp(argv[i], "--loader") == 0 && i + 1 < argc) {
			const char *l = argv[++i];
			cfg.pscan_opts = strcmp(l, "any") == 0 ? 0 : strcmp(l, "plain") == 0 ? PSCAN_STOCK
							 : PSCAN_EXT_UNREGISTERED | PSCAN_NO_PERSID;
		} else if (strcmp(argv[i], "--no-msgpack") == 0) {
			cfg.msgpack = false;
		} else if (strcmp(argv[i], "--bench") == 0 && i + 1 < argc) {
			bench = atof(argv[++i]);
		} else {
			fprintf(stderr, "usage: inspect_driver [--globals LIST] [--loader L] "
					"[--no-msgpack] [--bench S] < FRAMES\n");
			return 2;
		}
	}
	cfg.policy = pol;
	struct inspect *in = calloc(1, sizeof(*in));
	if (!in || read_frames(&f) != 0 || (pol && inspect_enable_policy(in) != 0)) {
		fprintf(stderr, "inspect_driver: out of memory or short input\n");
		return 2;
	}
	if (bench > 0) {
		uint64_t frames = 0, bytes = 0;
		double t0 = now(), t;
		do {
			for (size_t i = 0; i < f.n; i++)
				(void)judge(in, &cfg, f.p[i], f.len[i]);
			frames += f.n;
			bytes += f.bytes;
		} while ((t = now() - t0) < bench);
		printf("frames/s %.0f MB/s %.1f\n", (double)frames / t, (double)bytes / t / 1e6);
		goto out;
	}
	uint64_t pass = 0, drop = 0;
	for (size_t i = 0; i < f.n; i++) {
		if (judge(in, &cfg, f.p[i], f.len[i]) == INSPECT_PASS) {
			pass++;
			continue;
		}
		drop++;
		printf("drop %zu %s %s %s %s\n", i, in->reason, in->where, in->opcode,
		       inspect_global(in));
	}
	printf("frames %zu pass %llu drop %llu bytes %llu\n", f.n, (unsigned long long)pass,
	       (unsigned long long)drop, (unsigned long long)f.bytes);
out:
	inspect_free(in);
	free(in);
	ppolicy_free(pol);
	for (size_t i = 0; i < f.n; i++)
		free(f.p[i]);
	free(f.p);
	free(f.len);
	return 0;
}
