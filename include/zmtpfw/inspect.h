/* inspect: the one interface through which a data frame is judged. The
 * relay's general path (frames split across reads) and its fast path
 * (whole small messages in one buffer) both call it, so a rule is written
 * once. No libevent; it allocates only names memory for policy mode.
 *
 * A frame is judged three ways at once, as its bytes pass:
 *  - as a pickle (pickle_scan), with bytes values inside it judged as
 *    pickles too (pscan_nest);
 *  - as msgpack (msgpack_scan): when the whole frame is one msgpack
 *    object, every ext 1/2 and bin payload is judged as a frame is;
 *  - under a policy (pickle_policy) for trusted peers of a route with
 *    pickle_globals: every import must be listed, every shape canonical.
 * Without a policy any import drops the frame (deny mode). */
#ifndef ZMTPFW_INSPECT_H
#define ZMTPFW_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zmtpfw/msgpack_scan.h"
#include "zmtpfw/pickle_policy.h"
#include "zmtpfw/pickle_scan.h"

#define INSPECT_NEST 2 /* levels of pickles inside bytes values */

enum inspect_verdict {
	INSPECT_NEED_MORE = 0,
	INSPECT_PASS,
	INSPECT_DROP,
};

/* What the route and the peer make of a frame. */
struct inspect_cfg {
	unsigned pscan_opts;          /* the route's loader (PSCAN_*) */
	const struct ppolicy *policy; /* allowlist for this peer, or NULL: deny */
	bool msgpack;                 /* judge pickles inside msgpack */
};

/* One chain of scanners: a pickle and the pickles nested in its bytes. */
struct inspect_chain {
	struct pscan_state ps[1 + INSPECT_NEST];
	struct pscan_names *nm[1 + INSPECT_NEST]; /* policy mode only */
	struct ppolicy_verdict pv;    /* policy mode: what was refused */
	const struct ppolicy *policy;
};

struct inspect {
	struct inspect_cfg cfg;
	enum inspect_verdict verdict;
	bool pickle_done;             /* the frame's own pickle is judged */
	bool mp_on;                   /* still walking the frame as msgpack */
	bool mp_payload_done;         /* its scanner already decided */
	bool mp_bad;                  /* a payload was judged to drop */
	bool mp_too_deep;             /* nesting past the walker: drops once the
					 pickle side is judged */
	int mp_ext;                   /* type of the payload being scanned */
	struct mpscan mp;
	struct inspect_chain top;     /* the frame as a pickle */
	struct inspect_chain sub;     /* the msgpack payload being scanned */
	/* For the drop line. */
	const char *reason;           /* "pickle" or "pickle-global" */
	const char *where;            /* "frame", "msgpack-ext1", "msgpack-ext2",
					 "msgpack-bin" */
	const char *opcode;           /* pscan_reason of the deciding scanner,
					 or the policy shape */
	uint64_t offset;
	const struct ppolicy_verdict *pv; /* policy mode: the refused imports */
};

/* Frames whose first byte decides PASS whatever follows, in every mode:
 * not a possible pickle start and no msgpack container, bin or ext. The
 * fast path skips the inspector for them. */
bool inspect_first_byte_pass(uint8_t b);

/* Allocate names memory for policy mode (once per connection direction).
 * Returns -1 when out of memory. */
int inspect_enable_policy(struct inspect *in) __attribute__((warn_unused_result));
void inspect_free(struct inspect *in); /* names memory */

void inspect_begin(struct inspect *in, const struct inspect_cfg *cfg, uint64_t frame_size);
enum inspect_verdict inspect_feed(struct inspect *in, const uint8_t *p, size_t n);
/* The frame's last byte was fed: the verdict is final. */
enum inspect_verdict inspect_end(struct inspect *in);

/* The caller stops feeding an undecided frame after `scanned` bytes
 * (max_scan_bytes): what was not proven harmless is judged a pickle
 * (opcode "scan-budget", offset = scanned). A decided verdict stands. */
enum inspect_verdict inspect_budget_spent(struct inspect *in, uint64_t scanned);

/* The refused import to name in logs: the first one, the shape's name
 * ("getattr-shape", ...) when only a shape was refused, or "unknown". */
const char *inspect_global(const struct inspect *in);

#endif
