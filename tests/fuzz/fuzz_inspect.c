/* libFuzzer target: the frame inspector (pickle scanner with nested bytes
 * values, msgpack walker, policy) as the relay calls it.
 *
 * Input: byte 0 picks the mode (bit 0: under a policy, bits 1-2: the
 * loader, bit 3: msgpack off), the rest is one frame. The verdict and the
 * logged global must be the same fed whole, split at a point taken from
 * the input, and byte by byte; a frame whose first byte the fast path
 * passes must pass. ASan/UBSan catch the rest. */
#include "zmtpfw/inspect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct inspect *ins;
static struct ppolicy *pol;

static void die(const char *why)
{
	fprintf(stderr, "fuzz_inspect: %s\n", why);
	abort();
}

static void setup(void)
{
	static const char *const list[] = { "collections:OrderedDict", "builtins:getattr",
					    "_operator:or_", "a:b", "a:B.c", "@numpy" };
	char err[256];
	pol = ppolicy_new();
	for (size_t i = 0; pol && i < sizeof(list) / sizeof(list[0]); i++)
		if (ppolicy_add(pol, list[i], err, sizeof(err)) != 0)
			die(err);
	ins = calloc(1, sizeof(*ins));
	if (!pol || !ins || inspect_enable_policy(ins) != 0)
		die("setup");
}

/* Feed p[0..n) in pieces of `step` bytes (0: whole, or cut once at cut). */
static enum inspect_verdict run(const struct inspect_cfg *cfg, const uint8_t *p, size_t n,
				size_t step, size_t cut, char *global, size_t glen)
{
	enum inspect_verdict v = INSPECT_NEED_MORE;
	inspect_begin(ins, cfg, n);
	if (step) {
		for (size_t i = 0; i < n && v == INSPECT_NEED_MORE; i += step)
			v = inspect_feed(ins, p + i, n - i < step ? n - i : step);
	} else {
		v = inspect_feed(ins, p, cut);
		if (v == INSPECT_NEED_MORE)
			v = inspect_feed(ins, p + cut, n - cut);
	}
	if (v == INSPECT_NEED_MORE)
		v = inspect_end(ins);
	snprintf(global, glen, "%s", v == INSPECT_DROP ? inspect_global(ins) : "");
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned loaders[4] = { PSCAN_EXT_UNREGISTERED | PSCAN_NO_PERSID, PSCAN_STOCK, 0,
					     PSCAN_EXT_UNREGISTERED | PSCAN_NO_PERSID };
	char g1[256], g2[256], g3[256];

	if (!ins)
		setup();
	if (size < 1)
		return 0;
	struct inspect_cfg cfg = { .pscan_opts = loaders[(data[0] >> 1) & 3],
				   .policy = (data[0] & 1) ? pol : NULL,
				   .msgpack = !(data[0] & 8) };
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	size_t cut = n ? (size_t)(data[0] * 2654435761u) % (n + 1) : 0;

	enum inspect_verdict whole = run(&cfg, p, n, n ? n : 1, 0, g1, sizeof(g1));
	if (run(&cfg, p, n, 0, cut, g2, sizeof(g2)) != whole || strcmp(g1, g2) != 0)
		die("verdict differs when split in two");
	if (n <= 4096 && (run(&cfg, p, n, 1, 0, g3, sizeof(g3)) != whole || strcmp(g1, g3) != 0))
		die("verdict differs byte by byte");
	if (n > 0 && inspect_first_byte_pass(p[0]) && whole != INSPECT_PASS)
		die("the fast path passes a frame the inspector drops");
	return 0;
}
