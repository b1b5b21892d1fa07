/* pickle_scan_model: the unpickler's state as the scanner models it:
 * the stack (depth exact, kinds and symbols of the top PS_KINDS items),
 * marks, the memo (presence exactly for small indexes, string values and
 * symbols in the names cache), and the verdict helpers. The lowest layer
 * of the scanner: it calls nothing above it (pickle_scan_emul.c runs the
 * opcodes on it, pickle_scan.c reads them). */
#include "pickle_scan_int.h"

#include <string.h>

/* ---- verdicts ---------------------------------------------------------- */

void ps_decide(struct pscan *s, enum pscan_verdict v, const char *why)
{
	s->verdict = v;
	s->reason = why;
	s->state = PS_DONE;
}

/* Emulation ends without an import from here on: STOP or a certain raise.
 * In collect mode earlier imports still make the verdict PICKLE. */
void ps_clean(struct pscan *s, const char *why)
{
	ps_decide(s, s->imports ? PSCAN_PICKLE : PSCAN_CLEAN, why);
}

/* ---- stack and marks --------------------------------------------------- */

/* Shapes are judged in collect mode with names: the policy's mode. */
bool ps_shapes(const struct pscan *s)
{
	return s->fn && s->nm;
}

/* A use no pickler emits, for the policy to refuse. Not an import: it
 * leaves the verdict alone (a pickle without imports is harmless whatever
 * its shape; with one, the policy sees the shape). */
void ps_shape(struct pscan *s, const char *shape)
{
	struct pscan_import imp = { .opcode = "shape", .offset = s->op_off, .shape = shape,
				    .proto = s->proto, .depth = s->level };
	/* Before this pickle's first import it is kept back: a pickle that
	 * imports nothing does nothing, whatever its shape (random bytes
	 * inside a numpy buffer are read as one). ps_shape_flush reports it
	 * at the first import. */
	if (s->imports == 0) {
		if (!s->shape_held) {
			s->shape_held = shape;
			s->shape_off = s->op_off;
		}
		return;
	}
	s->fn(s->ctx, &imp);
}

void ps_shape_flush(struct pscan *s)
{
	if (!s->shape_held)
		return;
	struct pscan_import imp = { .opcode = "shape", .offset = s->shape_off,
				    .shape = s->shape_held, .proto = s->proto, .depth = s->level };
	s->shape_held = NULL;
	s->fn(s->ctx, &imp);
}

bool ps_sym_restricted(uint8_t sym)
{
	return sym == SY_GETATTR || sym == SY_OR;
}

void ps_push_sym(struct pscan *s, uint8_t kind, struct ps_ref ref, uint8_t sym)
{
	if (s->lost)
		return;
	if (s->nm && s->depth - s->kinds_lo == PS_KINDS) { /* leaves the window */
		struct ps_names *nm = s->nm;
		uint8_t old = nm->sym[s->kinds_lo % PS_KINDS];
		if (old != SY_DATA && nm->n_deep < PS_DEEP) {
			nm->deep_pos[nm->n_deep] = s->kinds_lo;
			nm->deep_sym[nm->n_deep++] = old;
		} else if (old != SY_DATA) {
			s->evict_hi = s->kinds_lo + 1; /* forgotten */
			if (ps_sym_restricted(old) && ps_shapes(s))
				ps_shape(s, "restricted-use");
		}
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

void ps_push_ref(struct pscan *s, uint8_t kind, struct ps_ref ref)
{
	ps_push_sym(s, kind, ref, SY_DATA);
}

void ps_push(struct pscan *s, uint8_t kind)
{
	ps_push_sym(s, kind, ps_noref, SY_DATA);
}

/* Shrink the stack to `to` items (to <= depth). getattr and or_ may only
 * leave the stack as the callable of their REDUCE, which clears them
 * first: any other pop is a use no pickler emits. */
void ps_cut(struct pscan *s, uint64_t to)
{
	if (s->lost)
		return;
	if (ps_shapes(s)) {
		bool bad = false;
		for (uint64_t i = to > s->kinds_lo ? to : s->kinds_lo; i < s->depth; i++)
			bad |= ps_sym_restricted(s->nm->sym[i % PS_KINDS]);
		for (uint32_t k = s->nm->n_deep; k > 0 && s->nm->deep_pos[k - 1] >= to; k--)
			bad |= ps_sym_restricted(s->nm->deep_sym[k - 1]);
		if (bad)
			ps_shape(s, "restricted-use");
	}
	while (s->nm && s->nm->n_deep > 0 && s->nm->deep_pos[s->nm->n_deep - 1] >= to)
		s->nm->n_deep--;
	s->depth = to;
	if (s->kinds_lo > to)
		s->kinds_lo = to;
	if (s->evict_hi > to)
		s->evict_hi = to;
}

/* Below the window: the remembered entry of position at, or NULL. */
static uint8_t *ps_deep(const struct pscan *s, uint64_t at)
{
	for (uint32_t k = s->nm->n_deep; k > 0; k--)
		if (s->nm->deep_pos[k - 1] == at)
			return &s->nm->deep_sym[k - 1];
	return NULL;
}

/* What the item at absolute position `at` is. Below the window: a
 * remembered non-data item, plain data, or unknown when forgotten. */
uint8_t ps_sym_at(const struct pscan *s, uint64_t at)
{
	if (!s->nm || s->lost || at >= s->depth)
		return SY_UNKNOWN;
	if (at < s->kinds_lo) {
		const uint8_t *d = ps_deep(s, at);
		return d ? *d : at >= s->evict_hi ? SY_DATA : SY_UNKNOWN;
	}
	return s->nm->sym[at % PS_KINDS];
}

/* The item at `at` was consumed as a callable: popping it is no use. */
void ps_sym_clear(struct pscan *s, uint64_t at)
{
	uint8_t *d;
	if (!s->nm || s->lost || at >= s->depth)
		return;
	if (at >= s->kinds_lo)
		s->nm->sym[at % PS_KINDS] = SY_DATA;
	else if ((d = ps_deep(s, at)) != NULL)
		*d = SY_DATA;
}

uint8_t ps_sym(const struct pscan *s, uint64_t down)
{
	return down >= s->depth ? SY_UNKNOWN : ps_sym_at(s, s->depth - 1 - down);
}

/* Kind of the item `down` places below the top (0 = top). */
uint8_t ps_kind(const struct pscan *s, uint64_t down)
{
	if (s->lost || down >= s->depth)
		return PK_ANY;
	uint64_t at = s->depth - 1 - down;
	if (at < s->kinds_lo)
		return PK_ANY;
	return s->kinds[at % PS_KINDS];
}

/* String value of the item `down` places below the top, if known. */
struct ps_ref ps_ref(const struct pscan *s, uint64_t down)
{
	if (!s->nm || s->lost || down >= s->depth)
		return ps_noref;
	uint64_t at = s->depth - 1 - down;
	if (at < s->kinds_lo)
		return ps_noref;
	struct ps_ref r = s->nm->stack[at % PS_KINDS];
	return ps_ref_known(s->nm, r) ? r : ps_noref;
}

bool ps_maybe_str(uint8_t kind)
{
	return kind == PK_ANY || kind == PK_STR;
}

/* Pdata's underflow test: fewer than n items above the fence raises. */
bool ps_avail(struct pscan *s, uint64_t n)
{
	if (s->lost || s->depth - s->fence >= n)
		return true;
	ps_clean(s, "stack-underflow");
	return false;
}

void ps_mark(struct pscan *s)
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
bool ps_marker(struct pscan *s, uint64_t *at)
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
uint8_t ps_memo_get(const struct pscan *s, uint64_t idx)
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
struct ps_ref ps_memo_ref(const struct pscan *s, uint64_t idx, uint8_t *sym)
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
void ps_memo_put(struct pscan *s, uint64_t idx)
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

void ps_memoize(struct pscan *s)
{
	if (s->memo_len_unknown)
		s->memo_blind = true; /* stored at an index we cannot name */
	else
		ps_memo_put(s, s->memo_len);
}


/* A read crossed a FRAME's end (see ps_straddles): which program runs next
 * depends on how the pickle is loaded. Ends emulation in both modes. */
void ps_straddle_hit(struct pscan *s)
{
	if (s->fn) {
		struct pscan_import imp = { .opcode = "FRAME-straddle", .offset = s->op_off };
		s->imports++;
		s->fn(s->ctx, &imp);
		ps_shape_flush(s);
	}
	ps_decide(s, PSCAN_PICKLE, "FRAME-straddle");
}
