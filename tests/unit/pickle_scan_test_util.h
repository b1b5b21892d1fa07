/* pickle_scan_test_util.h: what the unit tests of pickle_scan share: the
 * verdict shorthands, the pass/fail counters, the junk-filled state every
 * run starts from, a run's result and the verdict names. Included by
 * test_pickle_scan_verdicts.c and test_pickle_scan_modes.c, each its own
 * executable with its own counters. */
#ifndef ZMTPFW_TESTS_PICKLE_SCAN_TEST_UTIL_H
#define ZMTPFW_TESTS_PICKLE_SCAN_TEST_UTIL_H

#include "zmtpfw/pickle_scan.h"

#define P PSCAN_PICKLE
#define C PSCAN_CLEAN

static int n_pass, n_fail;
static unsigned poison_seed = 1;

/* pscan_init is O(1): it must not depend on what the state held before.
 * Every run starts from a state full of junk. */
static inline void poison(struct pscan_state *st)
{
	for (size_t i = 0; i < sizeof(st->opaque); i++) {
		poison_seed = poison_seed * 1103515245u + 12345u;
		st->opaque[i] = (unsigned char)(poison_seed >> 16);
	}
}

struct result {
	enum pscan_verdict v;
	const char *reason;
	uint64_t off;
};

static inline const char *vname(enum pscan_verdict v)
{
	return v == PSCAN_PICKLE ? "PICKLE" : v == PSCAN_CLEAN ? "CLEAN" : "NEED_MORE";
}

#endif
