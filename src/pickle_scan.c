/* pickle_scan: an emulator of the dispatch loop of CPython's C unpickler
 * (Modules/_pickle.c, 3.10-3.13) that builds no objects. It answers one
 * question: could pickle.loads() on these bytes reach find_class(),
 * persistent_load() or the extension registry (GLOBAL, INST, STACK_GLOBAL,
 * PERSID, BINPERSID, EXT1/2/4)?
 *
 * Soundness rule: CLEAN only when CPython certainly stops (STOP) or raises
 * before that. Every "raises" conclusion below comes from exact knowledge;
 * whatever the bounded state cannot know exactly is modelled as "might
 * succeed", which can only move the verdict towards PICKLE.
 *
 * What is tracked:
 *  - stack depth and mark positions exactly (the mark ring keeps the top
 *    PS_MARKS marks; popping below it makes the model "lost": no more
 *    conclusions from depth or marks),
 *  - a coarse kind for the top PS_KINDS stack items and for memo entries:
 *    "might be str", "bytes-like, not str", "neither",
 *  - memo presence exactly for indexes < PS_MEMO_MAP, a few larger ones in
 *    a side table, and the memo length MEMOIZE writes at.
 * Text arguments are parsed from a PS_LINE_MAX buffer (pickle_scan_text.c);
 * longer ones are assumed valid unless they hold a byte no number can
 * contain. Counted bodies are skipped by counting (BINUNICODE bodies are
 * checked as UTF-8, surrogatepass, on the way). A read crossing a FRAME's
 * end is flagged: there pickle.load(file) and loads() part ways.
 *
 * Collect mode (pscan_collect, for zmtpfw scan) runs the same emulator but
 * reports each reachable import and goes on as if it succeeded; string
 * values are kept in the caller's struct ps_names (never in the relay's
 * state) so STACK_GLOBAL operands can be named.
 *
 * Cost per frame: pscan_init writes a few words. The first byte is looked
 * up in ps_first[]: a byte CPython rejects outright (not an opcode, or an
 * opcode that raises on an empty stack) decides the frame with nothing else
 * touched. Otherwise the scalar registers are zeroed once; the arrays are
 * never cleared, because each is read only where this frame wrote it (the
 * memo map up to memo_hi, which grows as indexes are stored).
 *
 * Layers, each calling only downward: this file reads opcodes and their
 * arguments, resumably at any split, and feeds bytes values to the next
 * level (pscan_nest); pickle_scan_emul.c runs each opcode;
 * pickle_scan_model.c holds the modelled stack, marks and memo;
 * pickle_scan_text.c parses text arguments. The policy that turns imports
 * into a verdict is pickle_policy.c, outside the scanner. */
#include "pickle_scan_int.h"

#include <stddef.h>
#include <string.h>

/* ---- bytes values: nested pickles ---------------------------------------- */

/* Start the next pickle of a bytes value in the level below. */
static void ps_child_init(struct pscan *s)
{
	struct pscan *c = PS_GET(s->chain);
	pscan_init_opts(s->chain, (s->opts & ~PSCAN_NO_PERSID) | PS_PERSID_VALUE);
	if (s->fn)
		pscan_collect(s->chain, s->chain_nm ? s->chain_nm[0] : NULL, s->fn, s->ctx);
	c->level = s->level + 1;
	c->nest = true;
	c->nest_n = s->nest_n - 1;
	c->chain = c->nest_n ? s->chain + 1 : NULL;
	c->chain_nm = c->nest_n && s->chain_nm ? s->chain_nm + 1 : NULL;
}

/* torch.save's legacy stream (what torch.storage:_load_from_bytes loads)
 * begins with this pickle, protocol 2, of torch's magic number. */
static const uint8_t ps_torch_magic[15] = { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
					    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e };

/* The child's pickle ended: fold its imports in. A bytes value is read as
 * one pickle (pickle.loads, cloudpickle.loads); when its first pickle is
 * torch's magic number, as torch.load's legacy stream of five pickles
 * (magic, protocol, sys_info, the object, the storage keys) followed by
 * raw storage bytes that nothing unpickles. A raise ends it early. */
static void ps_child_ended(struct pscan *s)
{
	struct pscan *c = PS_GET(s->chain);
	bool stop = strcmp(c->reason, "stop") == 0;
	if (!s->fn && c->verdict == PSCAN_PICKLE) {
		ps_decide(s, PSCAN_PICKLE, "nested");
		return;
	}
	if (s->fn && c->imports) {
		s->imports += c->imports;
		if (ps_shapes(s))
			ps_shape_flush(s);
	}
	if (stop && s->seq_left == 1 && s->magic_have == sizeof(ps_torch_magic) &&
	    c->pos == sizeof(ps_torch_magic))
		s->seq_left = 5; /* this was the first of five */
	if (stop && --s->seq_left > 0)
		ps_child_init(s);
	else
		s->child_on = false;
}

/* Bytes [k] of a bytes value, in order. */
static void ps_child_feed(struct pscan *s, const uint8_t *p, size_t k)
{
	static const uint8_t zip[4] = { 'P', 'K', 3, 4 };
	size_t i = 0;

	if (s->child_new) { /* the emulator marked a new bytes value */
		s->child_new = false;
		s->zip_have = 0;
		s->magic_have = 0;
		s->seq_left = 1;
		if (s->nest_n > 0)
			ps_child_init(s);
	}
	for (size_t j = 0; s->magic_have < sizeof(ps_torch_magic) && j < k; j++)
		s->magic_have = p[j] == ps_torch_magic[s->magic_have] ? s->magic_have + 1 : 0xff;
	/* torch.load opens a zip archive, whose data.pkl we cannot follow */
	for (; s->zip_have < 4 && i < k; i++)
		s->zip_have = p[i] == zip[s->zip_have] ? s->zip_have + 1 : 0xff;
	if (s->zip_have == 4) {
		s->zip_have = 0xff;
		if (ps_shapes(s))
			ps_shape(s, "zip-in-bytes");
	}
	if (s->nest_n == 0) {
		/* No level left: a value that could start a pickle fails closed. */
		if (s->child_on && k > 0 && !pscan_first_byte_clean(p[0])) {
			if (!s->fn) {
				ps_decide(s, PSCAN_PICKLE, "nested-too-deep");
			} else {
				s->imports++; /* counts as an unknown import */
				if (ps_shapes(s)) {
					ps_shape_flush(s);
					ps_shape(s, "nested-too-deep");
				}
			}
		}
		s->child_on = false;
		return;
	}
	i = 0;
	while (i < k && s->child_on && s->verdict == PSCAN_NEED_MORE) {
		struct pscan *c = PS_GET(s->chain);
		uint64_t before = c->pos;
		enum pscan_verdict v = pscan_feed(s->chain, p + i, k - i);
		i += (size_t)(c->pos - before);
		if (v != PSCAN_NEED_MORE)
			ps_child_ended(s);
	}
}

/* The bytes value ended. */
static void ps_child_end(struct pscan *s)
{
	if (!s->child_on)
		return;
	if (s->nest_n > 0) {
		pscan_finish(s->chain);
		ps_child_ended(s);
	}
	s->child_on = false;
}

/* pickle.load(file) keeps only the current FRAME in its buffer (when the
 * file has no peek(), or for frames >= 128 KiB): a read running past the
 * frame's end drops the rest of the frame and continues from the file,
 * where loads() reads on. The two programs differ only after such a
 * straddling read, which no pickler emits (pickle.py rejects it), so it is
 * flagged instead of following one of them. BINBYTES-like bodies are read
 * with _Unpickler_ReadInto, which drops nothing, and are not checked. */
static bool ps_straddles(struct pscan *s)
{
	if (s->arg_start < s->buf_end && s->pos > s->buf_end) {
		ps_straddle_hit(s);
		return true;
	}
	return false;
}

/* Fixed-size argument of each opcode that has one. */
static const uint8_t ps_argsize[256] = {
	['K'] = 1, ['U'] = 1, ['C'] = 1, ['h'] = 1, ['q'] = 1, [0x80] = 1,
	[0x82] = 1, [0x8a] = 1, [0x8c] = 1, ['M'] = 2, [0x83] = 2,
	['J'] = 4, ['T'] = 4, ['X'] = 4, ['B'] = 4, ['j'] = 4, ['r'] = 4,
	[0x84] = 4, [0x8b] = 4, ['G'] = 8, [0x8d] = 8, [0x8e] = 8, [0x95] = 8,
	[0x96] = 8,
};

/* ---- first byte -------------------------------------------------------- */

/* What CPython does with each byte as the first opcode, when that alone
 * decides: not an opcode ("invalid load key"), or an opcode that raises on
 * an empty stack without reading further (every option alike). 0: run the
 * emulator. Bytes not listed are not opcodes. These are exactly the verdicts ps_opcode() reaches from the
 * initial state; test_pickle_scan_modes checks every byte against the emulator
 * (after a PROTO, where this table is not used) and so does the oracle. */
enum { F_NOTOP, F_RUN, F_UNDER, F_NOMARK };

static const uint8_t ps_first[256] = {
	/* arguments, pushes, MARK, or option-dependent (P, Q): run */
	['('] = F_RUN, ['F'] = F_RUN, ['I'] = F_RUN, ['L'] = F_RUN, ['N'] = F_RUN,
	['S'] = F_RUN, ['V'] = F_RUN, ['P'] = F_RUN, ['c'] = F_RUN, ['g'] = F_RUN,
	['p'] = F_RUN, [')'] = F_RUN, ['G'] = F_RUN, ['J'] = F_RUN, ['K'] = F_RUN,
	['M'] = F_RUN, ['Q'] = F_RUN, ['T'] = F_RUN, ['U'] = F_RUN, ['X'] = F_RUN,
	[']'] = F_RUN, ['h'] = F_RUN, ['j'] = F_RUN, ['q'] = F_RUN, ['r'] = F_RUN,
	['}'] = F_RUN, ['B'] = F_RUN, ['C'] = F_RUN, [0x80] = F_RUN, [0x82] = F_RUN,
	[0x83] = F_RUN, [0x84] = F_RUN, [0x88] = F_RUN, [0x89] = F_RUN,
	[0x8a] = F_RUN, [0x8b] = F_RUN, [0x8c] = F_RUN, [0x8d] = F_RUN,
	[0x8e] = F_RUN, [0x8f] = F_RUN, [0x95] = F_RUN, [0x96] = F_RUN,
	[0x97] = F_RUN,
	/* pop from an empty stack */
	['.'] = F_UNDER, ['0'] = F_UNDER, ['2'] = F_UNDER, ['R'] = F_UNDER,
	['a'] = F_UNDER, ['b'] = F_UNDER, ['s'] = F_UNDER, [0x81] = F_UNDER,
	[0x85] = F_UNDER, [0x86] = F_UNDER, [0x87] = F_UNDER, [0x92] = F_UNDER,
	[0x93] = F_UNDER, [0x94] = F_UNDER, [0x98] = F_UNDER,
	/* need a mark */
	['d'] = F_NOMARK, ['i'] = F_NOMARK, ['l'] = F_NOMARK, ['t'] = F_NOMARK,
	['1'] = F_NOMARK, ['e'] = F_NOMARK, ['o'] = F_NOMARK, ['u'] = F_NOMARK,
	[0x90] = F_NOMARK, [0x91] = F_NOMARK,
};

static const char *const ps_first_why[] = {
	[F_NOTOP] = "not-an-opcode", [F_RUN] = "need-more", [F_UNDER] = "stack-underflow", [F_NOMARK] = "no-mark",
};

/* Zero the registers (not the arrays) before the first opcode runs. */
static void ps_start(struct pscan *s)
{
	memset(&s->arg_start, 0, offsetof(struct pscan, line) - offsetof(struct pscan, arg_start));
	s->nul_at = PS_NONE;
	s->state = PS_OPCODE;
}

/* ---- public API -------------------------------------------------------- */

bool pscan_first_byte_clean(uint8_t b)
{
	return ps_first[b] != F_RUN;
}

void pscan_init_opts(struct pscan_state *st, unsigned opts)
{
	struct pscan *s = PS_GET(st);
	s->verdict = PSCAN_NEED_MORE;
	s->state = PS_START;
	s->reason = "need-more";
	s->pos = 0;
	s->op_off = 0;
	s->imports = 0;
	s->opts = opts;
	s->fn = NULL;
	s->ctx = NULL;
	s->nm = NULL;
	s->nest = false;
	s->level = 0;
	s->nest_n = 0;
	s->chain = NULL;
	s->chain_nm = NULL;
}

void pscan_nest(struct pscan_state *st, struct pscan_state *chain,
		struct pscan_names *const *names, unsigned n)
{
	struct pscan *s = PS_GET(st);
	s->nest = true;
	s->nest_n = chain ? n : 0;
	s->chain = n ? chain : NULL;
	s->chain_nm = n ? names : NULL;
}

void pscan_init(struct pscan_state *st)
{
	pscan_init_opts(st, 0);
}

static size_t ps_names_head(void)
{
	return (sizeof(struct ps_names) + 7) & ~(size_t)7;
}

size_t pscan_names_size(uint32_t arena, uint32_t memo_slots)
{
	return ps_names_head() + (size_t)memo_slots * sizeof(struct ps_nmemo) + arena;
}

struct pscan_names *pscan_names_init(void *mem, uint32_t arena, uint32_t memo_slots)
{
	struct ps_names *nm = mem;
	if (!mem || arena < 2 * PSCAN_NAME_MAX || (arena & (arena - 1)) || memo_slots == 0 ||
	    (memo_slots & (memo_slots - 1)))
		return NULL;
	memset(nm, 0, pscan_names_size(arena, memo_slots));
	nm->arena_size = arena;
	nm->nmemo = memo_slots;
	nm->memo = (struct ps_nmemo *)(void *)((char *)mem + ps_names_head());
	nm->arena = (uint8_t *)(nm->memo + memo_slots);
	return mem;
}

void pscan_collect(struct pscan_state *st, struct pscan_names *nmp,
		   pscan_import_fn fn, void *ctx)
{
	struct pscan *s = PS_GET(st);
	struct ps_names *nm = (struct ps_names *)(void *)nmp;

	s->fn = fn;
	s->ctx = ctx;
	s->nm = nm;
	if (nm)
		nm->n_deep = 0;
	if (nm && ++nm->gen == 0) { /* 2^32 scans: forget every slot */
		memset(nm->memo, 0, nm->nmemo * sizeof(*nm->memo));
		nm->gen = 1;
	}
}

uint64_t pscan_imports(const struct pscan_state *st)
{
	return PS_CGET(st)->imports;
}

enum pscan_verdict pscan_feed(struct pscan_state *st, const uint8_t *p, size_t n)
{
	struct pscan *s = PS_GET(st);
	size_t i = 0;

	while (i < n && s->verdict == PSCAN_NEED_MORE) {
		switch (s->state) {
		case PS_START: {
			uint8_t f = ps_first[p[i]];
			if (f != F_RUN) {
				s->pos = 1;
				ps_decide(s, PSCAN_CLEAN, ps_first_why[f]);
				return s->verdict;
			}
			ps_start(s);
			break;
		}
		case PS_OPCODE:
			s->op_off = s->pos++;
			s->op = p[i++];
			if (ps_argsize[s->op]) { /* collect the argument first */
				s->state = PS_FIXED;
				s->arg_start = s->pos;
				s->need = ps_argsize[s->op];
				s->have = 0;
			} else {
				ps_opcode(s, s->op);
			}
			break;
		case PS_FIXED: {
			size_t k = (size_t)(s->need - s->have);
			if (k > n - i)
				k = n - i;
			memcpy(s->arg + s->have, p + i, k);
			s->have = (uint8_t)(s->have + k);
			i += k;
			s->pos += k;
			if (s->have == s->need) {
				s->state = PS_OPCODE;
				if (!ps_straddles(s))
					ps_fixed_done(s);
			}
			break;
		}
		case PS_SKIP: {
			uint64_t k = s->skip < n - i ? s->skip : n - i;
			if (s->body_kind == PK_STR)
				pscan_text_utf8_bytes(s, p + i, (size_t)k);
			if (s->child_on) {
				ps_child_feed(s, p + i, (size_t)k);
				if (s->verdict != PSCAN_NEED_MORE)
					return s->verdict;
			}
			if (s->cap) {
				memcpy(ps_bytes(s->nm, s->nm->body) + s->nm->body_done, p + i, (size_t)k);
				s->nm->body_done += k;
			}
			s->skip -= k;
			i += (size_t)k;
			s->pos += k;
			if (s->skip == 0) {
				s->state = PS_OPCODE;
				if (s->child_on) {
					ps_child_end(s);
					if (s->verdict != PSCAN_NEED_MORE)
						return s->verdict;
				}
				/* PK_BUF bodies are the ReadInto ones */
				if (s->body_kind == PK_BUF || !ps_straddles(s))
					ps_body_done(s);
			}
			break;
		}
		case PS_LINE: {
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			size_t k = nl ? (size_t)(nl - (p + i)) : n - i;
			pscan_text_line_bytes(s, p + i, k);
			i += k;
			s->pos += k;
			if (nl) {
				i++;
				s->pos++;
				s->state = PS_OPCODE;
				if (!ps_straddles(s))
					ps_line_done(s);
			}
			break;
		}
		case PS_DONE:
			return s->verdict;
		}
	}
	return s->verdict;
}

enum pscan_verdict pscan_finish(struct pscan_state *st)
{
	struct pscan *s = PS_GET(st);
	if (s->verdict == PSCAN_NEED_MORE) {
		/* CPython raises "pickle data was truncated" / EOFError. */
		if (s->state == PS_OPCODE || s->state == PS_START)
			s->op_off = s->pos;
		ps_clean(s, "truncated");
	}
	return s->verdict;
}

const char *pscan_reason(const struct pscan_state *st)
{
	return PS_CGET(st)->reason;
}

uint64_t pscan_offset(const struct pscan_state *st)
{
	const struct pscan *s = PS_CGET(st);
	return s->verdict == PSCAN_NEED_MORE ? s->pos : s->op_off;
}
