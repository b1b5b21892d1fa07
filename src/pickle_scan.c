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
 * memo map up to memo_hi, which grows as indexes are stored). */
#include "pickle_scan_int.h"

#include <stddef.h>
#include <string.h>

/* ---- verdicts ---------------------------------------------------------- */

static void ps_decide(struct pscan *s, enum pscan_verdict v, const char *why)
{
	s->verdict = v;
	s->reason = why;
	s->state = PS_DONE;
}

/* Emulation ends without an import from here on: STOP or a certain raise.
 * In collect mode earlier imports still make the verdict PICKLE. */
static void ps_clean(struct pscan *s, const char *why)
{
	ps_decide(s, s->imports ? PSCAN_PICKLE : PSCAN_CLEAN, why);
}

/* ---- stack and marks --------------------------------------------------- */

/* Shapes are judged in collect mode with names: the policy's mode. */
static bool ps_shapes(const struct pscan *s)
{
	return s->fn && s->nm;
}

/* A use no pickler emits, for the policy to refuse. Not an import: it
 * leaves the verdict alone (a pickle without imports is harmless whatever
 * its shape; with one, the policy sees the shape). */
static void ps_shape(struct pscan *s, const char *shape)
{
	struct pscan_import imp = { .opcode = "shape", .offset = s->op_off, .shape = shape,
				    .proto = s->proto, .depth = s->level };
	s->fn(s->ctx, &imp);
}

static bool ps_sym_restricted(uint8_t sym)
{
	return sym == SY_GETATTR || sym == SY_OR;
}

static void ps_push_sym(struct pscan *s, uint8_t kind, struct ps_ref ref, uint8_t sym)
{
	if (s->lost)
		return;
	if (s->nm && s->depth - s->kinds_lo == PS_KINDS) { /* about to be forgotten */
		uint8_t old = s->nm->sym[s->kinds_lo % PS_KINDS];
		if (old != SY_DATA)
			s->evict_hi = s->kinds_lo + 1;
		if (ps_sym_restricted(old) && ps_shapes(s))
			ps_shape(s, "restricted-use");
	}
	s->kinds[s->depth % PS_KINDS] = kind;
	if (s->nm) {
		s->nm->stack[s->depth % PS_KINDS] = ref;
		s->nm->sym[s->depth % PS_KINDS] = sym;
	}
	s->depth++;
	if (s->depth - s->kinds_lo > PS_KINDS)
		s->kinds_lo = s->depth - PS_KINDS;
}

static void ps_push_ref(struct pscan *s, uint8_t kind, struct ps_ref ref)
{
	ps_push_sym(s, kind, ref, SY_DATA);
}

static void ps_push(struct pscan *s, uint8_t kind)
{
	ps_push_sym(s, kind, ps_noref, SY_DATA);
}

/* Shrink the stack to `to` items (to <= depth). getattr and or_ may only
 * leave the stack as the callable of their REDUCE, which clears them
 * first: any other pop is a use no pickler emits. */
static void ps_cut(struct pscan *s, uint64_t to)
{
	if (s->lost)
		return;
	if (ps_shapes(s)) {
		for (uint64_t i = to > s->kinds_lo ? to : s->kinds_lo; i < s->depth; i++) {
			if (ps_sym_restricted(s->nm->sym[i % PS_KINDS])) {
				ps_shape(s, "restricted-use");
				break;
			}
		}
	}
	s->depth = to;
	if (s->kinds_lo > to)
		s->kinds_lo = to;
	if (s->evict_hi > to)
		s->evict_hi = to;
}

/* What the item at absolute position `at` is. Below the window only
 * whether it was plain data is remembered. */
static uint8_t ps_sym_at(const struct pscan *s, uint64_t at)
{
	if (!s->nm || s->lost || at >= s->depth)
		return SY_UNKNOWN;
	if (at < s->kinds_lo)
		return at >= s->evict_hi ? SY_DATA : SY_UNKNOWN;
	return s->nm->sym[at % PS_KINDS];
}

static uint8_t ps_sym(const struct pscan *s, uint64_t down)
{
	return down >= s->depth ? SY_UNKNOWN : ps_sym_at(s, s->depth - 1 - down);
}

/* Kind of the item `down` places below the top (0 = top). */
static uint8_t ps_kind(const struct pscan *s, uint64_t down)
{
	if (s->lost || down >= s->depth)
		return PK_ANY;
	uint64_t at = s->depth - 1 - down;
	if (at < s->kinds_lo)
		return PK_ANY;
	return s->kinds[at % PS_KINDS];
}

/* String value of the item `down` places below the top, if known. */
static struct ps_ref ps_ref(const struct pscan *s, uint64_t down)
{
	if (!s->nm || s->lost || down >= s->depth)
		return ps_noref;
	uint64_t at = s->depth - 1 - down;
	if (at < s->kinds_lo)
		return ps_noref;
	struct ps_ref r = s->nm->stack[at % PS_KINDS];
	return ps_ref_known(s->nm, r) ? r : ps_noref;
}

static bool ps_maybe_str(uint8_t kind)
{
	return kind == PK_ANY || kind == PK_STR;
}

/* Pdata's underflow test: fewer than n items above the fence raises. */
static bool ps_avail(struct pscan *s, uint64_t n)
{
	if (s->lost || s->depth - s->fence >= n)
		return true;
	ps_clean(s, "stack-underflow");
	return false;
}

static void ps_mark(struct pscan *s)
{
	if (s->lost)
		return;
	if (s->nmarks - s->marks_lo == PS_MARKS)
		s->marks_lo++; /* forget the oldest position */
	s->marks[s->nmarks % PS_MARKS] = s->depth;
	s->nmarks++;
	s->fence = s->depth;
}

/* CPython's marker(): pops the top mark into *at. Returns false when it
 * certainly raises ("could not find MARK"). May switch to lost mode, in
 * which case *at is not to be used. */
static bool ps_marker(struct pscan *s, uint64_t *at)
{
	if (s->lost)
		return true;
	if (s->nmarks == 0) {
		ps_clean(s, "no-mark");
		return false;
	}
	s->nmarks--;
	*at = s->marks[s->nmarks % PS_MARKS];
	if (s->nmarks == 0)
		s->fence = 0;
	else if (s->nmarks - 1 >= s->marks_lo)
		s->fence = s->marks[(s->nmarks - 1) % PS_MARKS];
	else {
		s->lost = true; /* the next fence was forgotten */
		if (ps_shapes(s))
			ps_shape(s, "model-lost"); /* symbols gone too */
	}
	return true;
}

/* ---- memo -------------------------------------------------------------- */

/* Returns PK_ABSENT only when the index is certainly empty. */
static uint8_t ps_memo_get(const struct pscan *s, uint64_t idx)
{
	if (s->memo_blind)
		return PK_ANY;
	if (idx < PS_MEMO_MAP) {
		if (idx / 4 >= s->memo_hi)
			return PK_ABSENT; /* never written in this frame */
		return (s->memo_map[idx / 4] >> (2 * (idx % 4))) & 3;
	}
	for (unsigned i = 0; i < s->far_n; i++)
		if (s->far_idx[i] == idx)
			return s->far_kind[i];
	return s->far_lost ? PK_ANY : PK_ABSENT;
}

/* String value and symbol of memo entry idx (collect mode with names). */
static struct ps_ref ps_memo_ref(const struct pscan *s, uint64_t idx, uint8_t *sym)
{
	*sym = SY_UNKNOWN;
	if (!s->nm || s->memo_blind || idx == PS_NONE)
		return ps_noref;
	const struct ps_nmemo *m = &s->nm->memo[idx & (s->nm->nmemo - 1)];
	if (m->gen != s->nm->gen) {
		*sym = SY_DATA; /* no interesting entry ever used this slot */
		return ps_noref;
	}
	if (m->idx != idx) {
		/* idx was plain data, unless an interesting entry was evicted */
		*sym = m->collided ? SY_UNKNOWN : SY_DATA;
		return ps_noref;
	}
	*sym = m->sym;
	struct ps_ref r = { m->at, m->len };
	return ps_ref_known(s->nm, r) ? r : ps_noref;
}

/* Store the stack top at memo index idx. */
static void ps_memo_put(struct pscan *s, uint64_t idx)
{
	uint8_t kind = ps_kind(s, 0);
	if (s->memo_blind)
		return;
	if (s->nm) {
		/* An interesting value evicts whatever index shared the slot:
		 * that one becomes unknown, never wrong. */
		struct ps_nmemo *m = &s->nm->memo[idx & (s->nm->nmemo - 1)];
		struct ps_ref r = ps_ref(s, 0);
		uint8_t sym = ps_sym(s, 0);
		bool interesting = r.len != PS_NOREF || sym != SY_DATA;
		bool live = m->gen == s->nm->gen;
		if (live && m->idx == idx) {
			m->at = r.at;
			m->len = r.len;
			m->sym = sym;
		} else if (interesting) {
			bool collided = live && (m->collided || m->len != PS_NOREF || m->sym != SY_DATA);
			*m = (struct ps_nmemo){ .idx = idx, .at = r.at, .len = r.len,
						.gen = s->nm->gen, .sym = sym, .collided = collided };
		}
	}
	if (kind == PK_STR)
		kind = PK_ANY; /* 2-bit map; ANY is the safe approximation */
	if (idx < PS_MEMO_MAP) {
		if (idx / 4 >= s->memo_hi) { /* first use of these bytes */
			memset(s->memo_map + s->memo_hi, 0, idx / 4 + 1 - s->memo_hi);
			s->memo_hi = idx / 4 + 1;
		}
		unsigned sh = 2 * (idx % 4);
		uint8_t *b = &s->memo_map[idx / 4];
		if (((*b >> sh) & 3) == PK_ABSENT)
			s->memo_len++;
		*b = (uint8_t)((*b & ~(3u << sh)) | ((unsigned)kind << sh));
		return;
	}
	for (unsigned i = 0; i < s->far_n; i++) {
		if (s->far_idx[i] == idx) {
			s->far_kind[i] = kind;
			return;
		}
	}
	if (s->far_n < PS_MEMO_FAR) {
		s->far_idx[s->far_n] = idx;
		s->far_kind[s->far_n++] = kind;
		s->memo_len++;
		return;
	}
	/* Table full. Until now every large index was recorded, so this one
	 * is new; after this, a repeat may or may not be new. */
	if (s->far_lost)
		s->memo_len_unknown = true;
	else
		s->memo_len++;
	s->far_lost = true;
}

static void ps_memoize(struct pscan *s)
{
	if (s->memo_len_unknown)
		s->memo_blind = true; /* stored at an index we cannot name */
	else
		ps_memo_put(s, s->memo_len);
}

/* ---- imports ----------------------------------------------------------- */

/* Execution reaches an import. Flag-and-stop: that is the verdict. Collect:
 * report it, then model its success: `pop` operands (PS_INST: down to
 * INST's mark) are replaced by an unknown object, and from now on the stack
 * may hold callables. */
static bool ps_is(const uint8_t *b, size_t n, const char *lit)
{
	return b && n == strlen(lit) && memcmp(b, lit, n) == 0;
}

/* What an imported object is. getattr and or_ are tracked by name: they
 * are the only globals a policy accepts in one shape only. */
static uint8_t ps_import_sym(const struct pscan_import *imp)
{
	if (!imp->module || !imp->name || imp->opcode[0] == 'E' || imp->opcode[0] == 'P' ||
	    imp->opcode[0] == 'B')
		return SY_UNKNOWN;
	if (ps_is(imp->name, imp->name_len, "getattr") &&
	    (ps_is(imp->module, imp->module_len, "builtins") ||
	     ps_is(imp->module, imp->module_len, "__builtin__")))
		return SY_GETATTR;
	if (ps_is(imp->name, imp->name_len, "or_") &&
	    (ps_is(imp->module, imp->module_len, "_operator") ||
	     ps_is(imp->module, imp->module_len, "operator")))
		return SY_OR;
	return imp->allowed ? SY_GLOBAL_OK : SY_GLOBAL;
}

static void ps_reach(struct pscan *s, struct pscan_import *imp, uint64_t pop)
{
	if (!s->fn) {
		ps_decide(s, PSCAN_PICKLE, s->level ? "nested" : imp->opcode);
		return;
	}
	imp->offset = s->op_off;
	imp->proto = s->proto;
	imp->depth = s->level;
	s->imports++;
	s->fn(s->ctx, imp);
	s->exotic = true;
	uint8_t sym = ps_import_sym(imp);
	if (pop == PS_INST) {
		/* INST calls the class at once: getattr this way is no Enum */
		if (ps_sym_restricted(sym) && ps_shapes(s))
			ps_shape(s, "getattr-shape");
		sym = SY_DATA;
	}
	ps_cut(s, pop == PS_INST ? s->inst_at : s->depth - pop);
	ps_push_sym(s, PK_ANY, ps_noref, sym);
}

/* A read crossed a FRAME's end (see ps_straddles): which program runs next
 * depends on how the pickle is loaded. Ends emulation in both modes. */
static void ps_straddle_hit(struct pscan *s)
{
	if (s->fn) {
		struct pscan_import imp = { .opcode = "FRAME-straddle", .offset = s->op_off };
		s->imports++;
		s->fn(s->ctx, &imp);
	}
	ps_decide(s, PSCAN_PICKLE, "FRAME-straddle");
}

/* GLOBAL/INST names from the two collected lines. */
static void ps_reach_named(struct pscan *s, const char *what, uint64_t pop)
{
	struct pscan_import imp = { .opcode = what };
	if (s->nm) {
		uint64_t m = s->nm->line_len[0], n = s->nm->line_len[1];
		imp.module = s->nm->line[0];
		imp.module_len = m < PSCAN_NAME_MAX ? (size_t)m : PSCAN_NAME_MAX;
		imp.name = s->nm->line[1];
		imp.name_len = n < PSCAN_NAME_MAX ? (size_t)n : PSCAN_NAME_MAX;
		imp.truncated = m > PSCAN_NAME_MAX || n > PSCAN_NAME_MAX;
	}
	ps_reach(s, &imp, pop);
}

/* ---- shapes (collect mode with names) ----------------------------------- */

/* A public Python identifier: what Enum member names are. */
static bool ps_public_ident(const uint8_t *b, size_t n)
{
	if (n == 0 || b[0] == '_' || (b[0] >= '0' && b[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = b[i];
		if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
			return false;
	}
	return true;
}

/* A 2-tuple of the top two items: is it getattr's or or_'s argument? */
static uint8_t ps_pair_sym(const struct pscan *s)
{
	uint8_t a = ps_sym(s, 1), b = ps_sym(s, 0);
	struct ps_ref r = ps_ref(s, 0);
	if (a == SY_GLOBAL_OK && r.len != PS_NOREF && b == SY_DATA &&
	    ps_public_ident(ps_bytes(s->nm, r), r.len))
		return SY_GA_ARGS;
	if (a == SY_ENUM && b == SY_ENUM)
		return SY_OR_ARGS;
	return SY_DATA;
}

/* A tuple of n items from the top: the symbol it gets. */
static uint8_t ps_tuple_sym(const struct pscan *s, uint64_t n)
{
	return ps_shapes(s) && n == 2 ? ps_pair_sym(s) : SY_DATA;
}

/* REDUCE, NEWOBJ, NEWOBJ_EX: the callable (or class) sits `down` below the
 * top. Judges the shape and returns the result's symbol. The callable's
 * symbol is cleared so popping it is not a "restricted-use". */
static uint8_t ps_call_sym(struct pscan *s, uint8_t op, uint64_t down)
{
	if (!ps_shapes(s) || s->lost || down >= s->depth)
		return SY_DATA;
	uint64_t at = s->depth - 1 - down;
	uint8_t f = ps_sym_at(s, at), args = ps_sym(s, 0), res = SY_DATA;
	if (f == SY_GETATTR || f == SY_OR) {
		if (op != 'R' || args != (f == SY_GETATTR ? SY_GA_ARGS : SY_OR_ARGS))
			ps_shape(s, f == SY_GETATTR ? "getattr-shape" : "or-shape");
		else
			res = SY_ENUM;
	} else if (f != SY_GLOBAL && f != SY_GLOBAL_OK) {
		ps_shape(s, op == 'R' ? "unknown-callable" : "unknown-class");
	}
	if (at >= s->kinds_lo)
		s->nm->sym[at % PS_KINDS] = SY_DATA;
	return res;
}

/* BUILD sets state on the item below the top: never on a global itself
 * (it would set class attributes), nor on what the policy cannot vouch. */
static void ps_build_check(struct pscan *s)
{
	if (!ps_shapes(s))
		return;
	uint8_t t = ps_sym(s, 1);
	if (t != SY_DATA)
		ps_shape(s, "build-on-global");
}

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

static void ps_child_begin(struct pscan *s)
{
	s->child_on = true;
	s->zip_have = 0;
	if (s->nest_n > 0)
		ps_child_init(s);
}

/* The child's pickle ended: fold its imports in, and go on with the next
 * pickle of the sequence only after a STOP (torch.load's legacy stream is
 * pickles back to back; after a raise nothing more is unpickled). */
static void ps_child_ended(struct pscan *s)
{
	struct pscan *c = PS_GET(s->chain);
	if (!s->fn) {
		if (c->verdict == PSCAN_PICKLE)
			ps_decide(s, PSCAN_PICKLE, "nested");
		else if (strcmp(c->reason, "stop") == 0)
			ps_child_init(s);
		else
			s->child_on = false;
		return;
	}
	s->imports += c->imports;
	if (strcmp(c->reason, "stop") == 0)
		ps_child_init(s);
	else
		s->child_on = false;
}

/* Bytes [k] of a bytes value, in order. */
static void ps_child_feed(struct pscan *s, const uint8_t *p, size_t k)
{
	static const uint8_t zip[4] = { 'P', 'K', 3, 4 };
	size_t i = 0;

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
				if (ps_shapes(s))
					ps_shape(s, "nested-too-deep");
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

/* ---- opcode execution -------------------------------------------------- */

static void ps_body_skip(struct pscan *s, uint64_t len, uint8_t kind)
{
	if (len >= PS_HUGE) {
		ps_clean(s, "length-too-large");
		return;
	}
	/* Collect mode keeps short str bodies (BINUNICODE*, BINSTRING*). */
	s->cap = s->nm && (kind == PK_STR || kind == PK_ANY) && len <= PSCAN_NAME_MAX;
	if (s->cap) {
		s->nm->body = ps_reserve(s->nm, len);
		s->nm->body_done = 0;
	}
	if (len == 0) {
		ps_push_ref(s, kind, s->cap ? s->nm->body : ps_noref);
		return;
	}
	if (kind == PK_BUF && s->nest)
		ps_child_begin(s);
	s->state = PS_SKIP;
	s->arg_start = s->pos;
	s->skip = len;
	s->body_kind = kind;
	/* BINUNICODE*: PyUnicode_DecodeUTF8(..., "surrogatepass") */
	s->bad = false;
	s->u8_need = 0;
	s->u8_surr = true;
}

/* A counted body is complete. */
static void ps_body_done(struct pscan *s)
{
	struct ps_ref r = ps_noref;
	if (s->child_on) {
		ps_child_end(s);
		if (s->verdict != PSCAN_NEED_MORE)
			return;
	}
	if (s->body_kind == PK_STR && (s->bad || s->u8_need)) {
		ps_clean(s, "bad-argument"); /* UnicodeDecodeError */
		return;
	}
	if (s->cap && ps_ref_known(s->nm, s->nm->body)) {
		r = s->nm->body;
		/* BINSTRING decodes with the default encoding, ASCII. */
		const uint8_t *b = ps_bytes(s->nm, r);
		for (uint32_t i = 0; s->body_kind == PK_ANY && i < s->nm->body.len; i++) {
			if (b[i] >= 0x80) {
				r = ps_noref;
				break;
			}
		}
	}
	ps_push_ref(s, s->body_kind, r);
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

/* idx PS_NONE: the index is unknown (long text argument). */
static void ps_get_idx(struct pscan *s, uint64_t idx)
{
	uint8_t k = idx == PS_NONE ? PK_ANY : ps_memo_get(s, idx);
	uint8_t sym;
	if (k == PK_ABSENT) {
		ps_clean(s, "memo-missing");
	} else {
		struct ps_ref r = ps_memo_ref(s, idx, &sym);
		if (k == PK_VAL || k == PK_BUF)
			sym = SY_DATA; /* the 2-bit map vouches for it */
		ps_push_sym(s, k, r, sym);
	}
}

/* REDUCE, OBJ, NEWOBJ, NEWOBJ_EX call or type-check a stack item. Without
 * GLOBAL/INST/STACK_GLOBAL/EXT/PERSID (all of which stop the scan) the
 * stack only holds data (None, numbers, str, bytes, containers...): none is
 * callable or a type, so CPython raises. Only NEXT_BUFFER objects (when
 * loads() is given buffers=) could be something else. */
static bool ps_calls_fail(struct pscan *s, uint64_t operands)
{
	if (s->exotic)
		return false;
	if (ps_avail(s, operands))
		ps_clean(s, "not-callable");
	return true;
}

/* EXT1/2/4 with a valid code: the extension registry is consulted. */
static void ps_ext(struct pscan *s, int64_t code)
{
	if (s->opts & PSCAN_EXT_UNREGISTERED) {
		ps_clean(s, "ext-unregistered"); /* ValueError, no find_class */
		return;
	}
	struct pscan_import imp = {
		.opcode = s->op == 0x82 ? "EXT1" : s->op == 0x83 ? "EXT2" : "EXT4",
		.ext_code = code,
	};
	ps_reach(s, &imp, 0);
}

/* After a fixed-size argument is complete. */
static void ps_fixed_done(struct pscan *s)
{
	uint64_t v = 0; /* little-endian, unsigned */
	for (unsigned i = 0; i < s->need; i++)
		v |= (uint64_t)s->arg[i] << (8 * i);

	switch (s->op) {
	case 'G': case 'J': case 'K': case 'M': /* BINFLOAT, BININT* */
		ps_push(s, PK_VAL);
		break;
	case 'T': case 'U': /* BINSTRING: str, or bytes with encoding="bytes" */
		ps_body_skip(s, v, PK_ANY);
		break;
	case 'X': case 0x8c: case 0x8d: /* BINUNICODE* */
		ps_body_skip(s, v, PK_STR);
		break;
	case 'B': case 'C': case 0x8e: case 0x96: /* BINBYTES*, BYTEARRAY8 */
		ps_body_skip(s, v, PK_BUF);
		break;
	case 0x8a: /* LONG1 */
		ps_body_skip(s, v, PK_VAL);
		break;
	case 0x8b: /* LONG4: signed count */
		if (v & 0x80000000u)
			ps_clean(s, "negative-length");
		else
			ps_body_skip(s, v, PK_VAL);
		break;
	case 0x95: /* FRAME: only checks that the frame is there */
		if (v >= PS_HUGE)
			ps_clean(s, "length-too-large");
		else if (s->pos >= s->buf_end)
			s->buf_end = s->pos + v; /* file mode: new buffer */
		else if (s->pos + v > s->buf_end)
			ps_straddle_hit(s); /* nested, reads past it */
		break;
	case 0x80: /* PROTO */
		if (v > 5) {
			ps_clean(s, "bad-protocol");
			break;
		}
		/* Picklers write one, first: another switches dotted names on */
		if (s->op_off != 0 && ps_shapes(s))
			ps_shape(s, "second-proto");
		s->proto = (uint8_t)v;
		break;
	case 0x82: case 0x83: /* EXT1, EXT2: unsigned code */
		if (v == 0)
			ps_clean(s, "bad-ext-code");
		else
			ps_ext(s, (int64_t)v);
		break;
	case 0x84: /* EXT4: signed code, <= 0 raises */
		if (v == 0 || (v & 0x80000000u))
			ps_clean(s, "bad-ext-code");
		else
			ps_ext(s, (int64_t)v);
		break;
	case 'h': case 'j': /* BINGET, LONG_BINGET */
		ps_get_idx(s, v);
		break;
	case 'q': case 'r': /* BINPUT, LONG_BINPUT */
		if (ps_avail(s, 1))
			ps_memo_put(s, v);
		break;
	}
}

/* After a text line's '\n'. */
static void ps_line_done(struct pscan *s)
{
	size_t n = 0;
	uint64_t v = 0;
	bool neg = false, known;
	struct ps_ref r = ps_noref;

	switch (s->op) {
	case 'I': case 'L': case 'F':
		/* INT: strtol base 0, else PyLong_FromString base 0. LONG:
		 * PyLong_FromString base 0 without a trailing 'L'. FLOAT:
		 * PyOS_string_to_double. All must consume the whole line. */
		if (s->line_len == 0)
			goto bad;
		if (!pscan_text_body(s, s->op == 'L', &n) && s->bad)
			goto bad; /* too long to parse, but holds a stray byte */
		if (pscan_text_body(s, s->op == 'L', &n) &&
		    !(s->op == 'F' ? pscan_text_float_ok(s->line, n) :
		      (s->op == 'I' && pscan_text_strtol_ok(s->line, n)) ||
		      pscan_text_pylong(s->line, n, 0, NULL, NULL)))
			goto bad;
		ps_push(s, PK_VAL);
		break;
	case 'S': /* STRING: must be quoted; escapes assumed fine */
		if (s->line_len < 2 || s->first != s->last ||
		    (s->first != '\'' && s->first != '"'))
			goto bad;
		if (s->keep_name && s->line_len <= PSCAN_NAME_MAX)
			r = pscan_text_plain_str(s, s->nm->line[0] + 1, s->line_len - 2);
		ps_push_ref(s, PK_ANY, r);
		break;
	case 'V': /* UNICODE: raw-unicode-escape errors assumed absent */
		if (s->keep_name && s->line_len <= PSCAN_NAME_MAX)
			r = pscan_text_plain_str(s, s->nm->line[0], s->line_len);
		ps_push_ref(s, PK_STR, r);
		break;
	case 'g': case 'p':
		/* GET, PUT: PyLong_FromString base 10; negative or overflowing
		 * indexes raise. PUT tests for underflow before parsing. */
		if (s->line_len == 0)
			goto bad;
		if (s->op == 'p' && !ps_avail(s, 1))
			break;
		known = pscan_text_body(s, false, &n);
		if (!known && s->bad)
			goto bad;
		if (known && (!pscan_text_pylong(s->line, n, 10, &v, &neg) || v > INT64_MAX))
			goto bad;
		if (s->op == 'g' && known && neg)
			ps_clean(s, "memo-missing"); /* MemoGet((size_t)-k) */
		else if (neg)
			goto bad; /* "negative PUT argument" */
		else if (s->op == 'g')
			ps_get_idx(s, known ? v : PS_NONE);
		else if (known)
			ps_memo_put(s, v);
		else
			s->memo_blind = true; /* stored at an index we cannot name */
		break;
	case 'P': { /* PERSID with a persistent_load: ASCII id, may be empty */
		if (!pscan_text_name_ok(s, true))
			goto bad;
		if (s->opts & PS_PERSID_VALUE) {
			ps_push_sym(s, PK_ANY, ps_noref, SY_UNKNOWN);
			break;
		}
		struct pscan_import imp = { .opcode = "PERSID" };
		ps_reach(s, &imp, 0);
		break;
	}
	case 'c': case 'i': /* GLOBAL, INST: module line then name line */
		if (!pscan_text_name_ok(s, false))
			goto bad;
		if (s->line_no == 0) {
			s->line_no = 1;
			pscan_text_line_start(s, s->check, false);
		} else {
			ps_reach_named(s, s->op == 'c' ? "GLOBAL" : "INST",
				       s->op == 'c' ? 0 : PS_INST);
		}
		break;
	}
	return;
bad:
	ps_clean(s, "bad-argument");
}

/* DICT, SETITEMS, APPENDS, ADDITEMS, LIST, TUPLE, FROZENSET, POP_MARK. */
static void ps_mark_op(struct pscan *s, uint8_t op)
{
	uint64_t at = 0;
	if (!ps_marker(s, &at) || s->lost)
		return;
	/* do_setitems, do_append, load_additems: the container sits below the
	 * mark and must be above the next fence. */
	if ((op == 'u' || op == 'e' || op == 0x90) && at <= s->fence) {
		ps_clean(s, "stack-underflow");
	} else if ((op == 'd' || op == 'u') && (s->depth - at) % 2) {
		ps_clean(s, "odd-items");
	} else {
		uint8_t sym = op == 't' ? ps_tuple_sym(s, s->depth - at) : SY_DATA;
		ps_cut(s, at);
		if (op == 'd' || op == 'l' || op == 't' || op == 0x91)
			ps_push_sym(s, PK_VAL, ps_noref, sym);
	}
}

/* Fixed-size argument of each opcode that has one. */
static const uint8_t ps_argsize[256] = {
	['K'] = 1, ['U'] = 1, ['C'] = 1, ['h'] = 1, ['q'] = 1, [0x80] = 1,
	[0x82] = 1, [0x8a] = 1, [0x8c] = 1, ['M'] = 2, [0x83] = 2,
	['J'] = 4, ['T'] = 4, ['X'] = 4, ['B'] = 4, ['j'] = 4, ['r'] = 4,
	[0x84] = 4, [0x8b] = 4, ['G'] = 8, [0x8d] = 8, [0x8e] = 8, [0x95] = 8,
	[0x96] = 8,
};

/* Needs `need` items above the fence, pops `pop`, pushes `kind` (if any). */
static void ps_pop_push(struct pscan *s, uint64_t need, uint64_t pop, uint8_t kind)
{
	if (!ps_avail(s, need))
		return;
	ps_cut(s, s->depth - pop);
	if (kind != PK_ABSENT)
		ps_push(s, kind);
}

static void ps_opcode(struct pscan *s, uint8_t op)
{
	uint64_t at = 0;

	s->op = op;
	switch (op) {
	case '(':
		ps_mark(s);
		break;
	case '.': /* load() then pops the result: Pdata_pop's underflow test */
		if (!s->lost && s->depth - s->fence < 1)
			ps_clean(s, "stack-underflow");
		else
			ps_clean(s, "stop");
		break;
	case '0': /* POP: pops the top mark if it sits at the stack top */
		if (!s->lost && s->nmarks > 0 && s->fence == s->depth)
			(void)ps_marker(s, &at);
		else
			ps_pop_push(s, 1, 1, PK_ABSENT);
		break;
	case '2': /* DUP */
		if (ps_avail(s, 1))
			ps_push_sym(s, ps_kind(s, 0), ps_ref(s, 0), ps_sym(s, 0));
		break;
	case 'N': case ')': case ']': case '}': case 0x88: case 0x89: case 0x8f:
		ps_push(s, PK_VAL);
		break;
	case 'I': case 'L': case 'F': case 'g': case 'p':
		pscan_text_line_start(s, PC_NONE, true);
		break;
	case 'S': case 'V':
		s->line_no = 0;
		pscan_text_line_start(s, PC_NONE, false);
		break;
	case 'P': /* load_persid raises before reading without persistent_load */
		if (s->opts & PSCAN_NO_PERSID)
			ps_clean(s, "no-persistent-load");
		else
			pscan_text_line_start(s, PC_ASCII, false);
		break;
	case 'c':
		s->line_no = 0;
		pscan_text_line_start(s, PC_UTF8, false);
		break;
	case 'i': /* INST pops its mark before reading the names */
		if (!ps_marker(s, &at))
			break;
		s->inst_at = at;
		s->line_no = 0;
		pscan_text_line_start(s, PC_ASCII, false);
		break;
	case 'Q': /* BINPERSID pops the id, then calls persistent_load */
		if (s->opts & PSCAN_NO_PERSID) {
			ps_clean(s, "no-persistent-load");
		} else if ((s->opts & PS_PERSID_VALUE) && ps_avail(s, 1)) {
			/* torch's persistent_load returns a storage, or the
			 * object the id holds (already imported and judged) */
			ps_cut(s, s->depth - 1);
			ps_push_sym(s, PK_ANY, ps_noref, SY_UNKNOWN);
			s->exotic = true;
		} else if (ps_avail(s, 1)) {
			struct pscan_import imp = { .opcode = "BINPERSID" };
			ps_reach(s, &imp, 1);
		}
		break;
	case 0x93: /* STACK_GLOBAL: both operands must be exact str */
		if (!ps_avail(s, 2))
			break;
		if (!ps_maybe_str(ps_kind(s, 0)) || !ps_maybe_str(ps_kind(s, 1))) {
			ps_clean(s, "stack-global-not-str");
		} else {
			struct pscan_import imp = { .opcode = "STACK_GLOBAL" };
			struct ps_ref m = ps_ref(s, 1), n = ps_ref(s, 0);
			if (m.len != PS_NOREF && n.len != PS_NOREF) {
				imp.module = ps_bytes(s->nm, m);
				imp.module_len = m.len;
				imp.name = ps_bytes(s->nm, n);
				imp.name_len = n.len;
			}
			ps_reach(s, &imp, 2);
		}
		break;
	case 'a': /* APPEND */
		ps_pop_push(s, 2, 1, PK_ABSENT);
		break;
	case 'b': /* BUILD leaves the instance on top */
		if (ps_avail(s, 2)) {
			ps_build_check(s);
			ps_cut(s, s->depth - 1);
		}
		break;
	case 's': /* SETITEM: do_setitems(len - 2) needs len - 2 > fence */
		ps_pop_push(s, 3, 2, PK_ABSENT);
		break;
	case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
		if (ps_avail(s, op - 0x84u)) {
			uint8_t sym = ps_tuple_sym(s, op - 0x84u);
			ps_cut(s, s->depth - (op - 0x84u));
			ps_push_sym(s, PK_VAL, ps_noref, sym);
		}
		break;
	case 'd': case 'u': case 'e': case 0x90: case 'l': case 't': case 0x91:
	case '1':
		ps_mark_op(s, op);
		break;
	case 0x94: /* MEMOIZE */
		if (ps_avail(s, 1))
			ps_memoize(s);
		break;
	case 'R': case 0x81: case 0x92: /* REDUCE, NEWOBJ: 2 operands; NEWOBJ_EX: 3 */
		at = op == 0x92 ? 3 : 2;
		if (!ps_calls_fail(s, at) && ps_avail(s, at)) {
			uint8_t sym = ps_call_sym(s, op, at - 1);
			ps_cut(s, s->depth - at);
			ps_push_sym(s, PK_ANY, ps_noref, sym);
		}
		break;
	case 'o': /* OBJ: marker, then cls and args above it */
		if (!ps_marker(s, &at))
			break;
		if (!s->lost && s->depth - at < 1)
			ps_clean(s, "stack-underflow");
		else if (!s->exotic)
			ps_clean(s, "not-callable");
		else {
			if (ps_shapes(s) && !s->lost) {
				uint8_t f = ps_sym_at(s, at);
				if (f != SY_GLOBAL && f != SY_GLOBAL_OK)
					ps_shape(s, ps_sym_restricted(f) ? "getattr-shape" : "unknown-class");
				if (at >= s->kinds_lo && at < s->depth)
					s->nm->sym[at % PS_KINDS] = SY_DATA;
			}
			ps_cut(s, at);
			ps_push(s, PK_ANY);
		}
		break;
	case 0x97: /* NEXT_BUFFER: raises unless loads() got buffers= */
		if (s->opts & PSCAN_NO_BUFFERS) {
			ps_clean(s, "no-buffers");
			break;
		}
		s->exotic = true; /* buffers= may hold any object */
		ps_push_sym(s, PK_ANY, ps_noref, SY_UNKNOWN);
		break;
	case 0x98: /* READONLY_BUFFER: memoryview(top) */
		if (!ps_avail(s, 1))
			break;
		if (ps_kind(s, 0) == PK_VAL || ps_kind(s, 0) == PK_STR)
			ps_clean(s, "not-a-buffer");
		else
			ps_pop_push(s, 1, 1, PK_BUF);
		break;
	default:
		if (ps_argsize[op]) { /* collect the argument first */
			s->state = PS_FIXED;
			s->arg_start = s->pos;
			s->need = ps_argsize[op];
			s->have = 0;
		} else
			ps_clean(s, "not-an-opcode");
		break;
	}
}

/* ---- first byte -------------------------------------------------------- */

/* What CPython does with each byte as the first opcode, when that alone
 * decides: not an opcode ("invalid load key"), or an opcode that raises on
 * an empty stack without reading further (every option alike). 0: run the
 * emulator. Bytes not listed are not opcodes. These are exactly the verdicts ps_opcode() reaches from the
 * initial state; test_pickle_scan checks every byte against the emulator
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
			ps_opcode(s, p[i++]);
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
