/* pickle_scan_emul: what each opcode does to the modelled unpickler
 * (pickle_scan_model.c), after pickle_scan.c has read it and its argument:
 * pushes, pops, calls, imports and, in collect mode with names, the shapes
 * a policy refuses. Mirrors load_* in CPython's Modules/_pickle.c. */
#include "pickle_scan_int.h"

#include <string.h>

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
	ps_shape_flush(s);
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
	ps_sym_clear(s, at);
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
	if (kind == PK_BUF && s->nest) { /* pickle_scan.c feeds it to the next level */
		s->child_on = true;
		s->child_new = true;
	}
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
void ps_body_done(struct pscan *s)
{
	struct ps_ref r = ps_noref;
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
void ps_fixed_done(struct pscan *s)
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
void ps_line_done(struct pscan *s)
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

/* Needs `need` items above the fence, pops `pop`, pushes `kind` (if any). */
static void ps_pop_push(struct pscan *s, uint64_t need, uint64_t pop, uint8_t kind)
{
	if (!ps_avail(s, need))
		return;
	ps_cut(s, s->depth - pop);
	if (kind != PK_ABSENT)
		ps_push(s, kind);
}

void ps_opcode(struct pscan *s, uint8_t op)
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
				ps_sym_clear(s, at);
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
	default: /* opcodes with a fixed argument never get here */
		ps_clean(s, "not-an-opcode");
		break;
	}
}
