/* inspect: one frame, judged as a pickle, as msgpack carrying pickles, and
 * under the peer's policy. See inspect.h. */
#include "zmtpfw/inspect.h"

#include <stdlib.h>
#include <string.h>

/* Names memory per scanner: the frame's pickle keeps more strings than a
 * nested one (a torch storage stream, a function reference). A value
 * pushed out is unknown, which fails closed. */
#define INSPECT_ARENA_TOP (64u << 10)
#define INSPECT_MEMO_TOP 1024u
#define INSPECT_ARENA_NEST (16u << 10)
#define INSPECT_MEMO_NEST 256u

/* msgpack first bytes that may hold a payload: containers, bin, ext. */
static bool inspect_mp_holder(uint8_t b)
{
	return (b >= 0x80 && b <= 0x9f) || (b >= 0xc4 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8) ||
	       (b >= 0xdc && b <= 0xdf);
}

bool inspect_first_byte_pass(uint8_t b)
{
	return pscan_first_byte_clean(b) && !inspect_mp_holder(b);
}

/* ---- names memory -------------------------------------------------------- */

static int inspect_chain_names(struct inspect_chain *c)
{
	for (unsigned i = 0; i <= INSPECT_NEST; i++) {
		uint32_t arena = i ? INSPECT_ARENA_NEST : INSPECT_ARENA_TOP;
		uint32_t memo = i ? INSPECT_MEMO_NEST : INSPECT_MEMO_TOP;
		if (c->nm[i])
			continue;
		c->nm[i] = pscan_names_init(malloc(pscan_names_size(arena, memo)), arena, memo);
		if (!c->nm[i])
			return -1;
	}
	return 0;
}

int inspect_enable_policy(struct inspect *in)
{
	if (inspect_chain_names(&in->top) < 0 || inspect_chain_names(&in->sub) < 0) {
		inspect_free(in);
		return -1;
	}
	return 0;
}

void inspect_free(struct inspect *in)
{
	for (unsigned i = 0; i <= INSPECT_NEST; i++) {
		free(in->top.nm[i]);
		free(in->sub.nm[i]);
		in->top.nm[i] = in->sub.nm[i] = NULL;
	}
}

/* ---- one chain of scanners ------------------------------------------------ */

static void inspect_on_import(void *ctx, struct pscan_import *imp)
{
	struct inspect_chain *c = ctx;
	ppolicy_judge(c->policy, &c->pv, imp);
}

static void inspect_chain_begin(struct inspect_chain *c, const struct inspect_cfg *cfg)
{
	pscan_init_opts(&c->ps[0], cfg->pscan_opts);
	c->policy = cfg->policy;
	if (cfg->policy) {
		/* Without names (enable_policy not called or failed) every
		 * import is unknown: refused, never wrongly allowed. */
		ppolicy_verdict_init(&c->pv);
		pscan_collect(&c->ps[0], c->nm[0], inspect_on_import, c);
		pscan_nest(&c->ps[0], &c->ps[1], &c->nm[1], INSPECT_NEST);
	} else {
		pscan_nest(&c->ps[0], &c->ps[1], NULL, INSPECT_NEST);
	}
}

/* A chain's pickle is decided: does it drop the frame? */
static bool inspect_chain_bad(const struct inspect_chain *c, enum pscan_verdict v)
{
	if (v != PSCAN_PICKLE)
		return false;
	return c->policy == NULL || c->pv.bad;
}

/* Record the drop for the log line. */
static void inspect_drop(struct inspect *in, const struct inspect_chain *c, const char *where)
{
	in->verdict = INSPECT_DROP;
	in->where = where;
	in->offset = pscan_offset(&c->ps[0]);
	if (c->policy) {
		in->reason = "pickle-global";
		in->opcode = c->pv.shape ? c->pv.shape : "import";
		in->pv = &c->pv;
	} else {
		in->reason = "pickle";
		in->opcode = pscan_reason(&c->ps[0]);
		in->pv = NULL;
	}
}

/* ---- msgpack payloads ----------------------------------------------------- */

static const char *inspect_where(int ext)
{
	return ext == 1 ? "msgpack-ext1" : ext == 2 ? "msgpack-ext2" : "msgpack-bin";
}

static void inspect_payload_judged(struct inspect *in, enum pscan_verdict v)
{
	in->mp_payload_done = true;
	if (inspect_chain_bad(&in->sub, v)) {
		/* Held until the walk ends: only a valid msgpack frame is
		 * decoded, so only then does the payload matter. Later
		 * payloads are not scanned: this one's record is kept. */
		in->mp_bad = true;
		in->where = inspect_where(in->mp_ext);
	}
}

static void inspect_mp_feed(struct inspect *in, const uint8_t *p, size_t n)
{
	size_t off = 0;

	while (in->mp_on) {
		struct mpscan_ev ev;
		off += mpscan_step(&in->mp, p + off, n - off, &ev);
		switch (ev.kind) {
		case MPSCAN_EV_NEED_MORE:
			return;
		case MPSCAN_EV_PAYLOAD:
			in->mp_payload_done = in->mp_bad;
			in->mp_ext = ev.ext_type;
			if (!in->mp_payload_done)
				inspect_chain_begin(&in->sub, &in->cfg);
			break;
		case MPSCAN_EV_BYTES:
			if (!in->mp_payload_done) {
				enum pscan_verdict v = pscan_feed(&in->sub.ps[0], ev.p, ev.n);
				if (v != PSCAN_NEED_MORE)
					inspect_payload_judged(in, v);
			}
			break;
		case MPSCAN_EV_PAYLOAD_END:
			if (!in->mp_payload_done)
				inspect_payload_judged(in, pscan_finish(&in->sub.ps[0]));
			break;
		case MPSCAN_EV_MSGPACK:
			in->mp_on = false;
			if (in->mp_bad && in->verdict == INSPECT_NEED_MORE) {
				const char *where = in->where;
				inspect_drop(in, &in->sub, where);
			}
			return;
		case MPSCAN_EV_NOT_MSGPACK:
			in->mp_on = false;
			in->mp_bad = false;
			return;
		case MPSCAN_EV_TOO_DEEP:
			/* No telling what a decoder makes of it: fail closed,
			 * once the pickle side has its verdict (which then names
			 * the drop: the same whatever way the bytes came). */
			in->mp_on = false;
			in->mp_too_deep = true;
			return;
		}
	}
}

/* ---- the frame ------------------------------------------------------------ */

void inspect_begin(struct inspect *in, const struct inspect_cfg *cfg, uint64_t frame_size)
{
	in->cfg = *cfg;
	in->verdict = INSPECT_NEED_MORE;
	in->pickle_done = false;
	in->mp_on = cfg->msgpack;
	in->mp_payload_done = false;
	in->mp_bad = false;
	in->mp_too_deep = false;
	in->reason = in->where = in->opcode = NULL;
	in->offset = 0;
	in->pv = NULL;
	inspect_chain_begin(&in->top, cfg);
	if (in->mp_on)
		mpscan_init(&in->mp, frame_size);
}

static void inspect_too_deep(struct inspect *in)
{
	in->verdict = INSPECT_DROP;
	in->reason = in->cfg.policy ? "pickle-global" : "pickle";
	in->where = "msgpack";
	in->opcode = "msgpack-too-deep";
	in->offset = 0;
	in->pv = NULL;
}

static enum inspect_verdict inspect_settle(struct inspect *in)
{
	if (in->verdict == INSPECT_NEED_MORE && in->pickle_done && !in->mp_on) {
		if (in->mp_too_deep)
			inspect_too_deep(in);
		else
			in->verdict = INSPECT_PASS;
	}
	return in->verdict;
}

static void inspect_pickle_judged(struct inspect *in, enum pscan_verdict v)
{
	in->pickle_done = true;
	if (inspect_chain_bad(&in->top, v))
		inspect_drop(in, &in->top, "frame");
}

enum inspect_verdict inspect_feed(struct inspect *in, const uint8_t *p, size_t n)
{
	if (in->verdict != INSPECT_NEED_MORE)
		return in->verdict;
	if (!in->pickle_done) {
		enum pscan_verdict v = pscan_feed(&in->top.ps[0], p, n);
		if (v != PSCAN_NEED_MORE)
			inspect_pickle_judged(in, v);
		if (in->verdict == INSPECT_DROP)
			return in->verdict;
	}
	if (in->mp_on)
		inspect_mp_feed(in, p, n);
	return inspect_settle(in);
}

enum inspect_verdict inspect_end(struct inspect *in)
{
	if (in->verdict != INSPECT_NEED_MORE)
		return in->verdict;
	if (!in->pickle_done)
		inspect_pickle_judged(in, pscan_finish(&in->top.ps[0]));
	/* The walker decides at the frame's last byte; an empty frame never
	 * started one. Undecided with a bad payload: fail closed. */
	if (in->verdict == INSPECT_NEED_MORE && in->mp_on && in->mp_bad)
		inspect_drop(in, &in->sub, in->where);
	in->mp_on = false;
	return inspect_settle(in);
}

enum inspect_verdict inspect_budget_spent(struct inspect *in, uint64_t scanned)
{
	if (in->verdict != INSPECT_NEED_MORE)
		return in->verdict;
	in->verdict = INSPECT_DROP;
	in->reason = "pickle";
	in->where = "frame";
	in->opcode = "scan-budget";
	in->offset = scanned;
	in->pv = NULL;
	return in->verdict;
}

const char *inspect_global(const struct inspect *in)
{
	if (in->pv && in->pv->n > 0)
		return ppolicy_verdict_global(in->pv, 0);
	if (in->pv && in->pv->shape)
		return in->pv->shape;
	return "unknown";
}
