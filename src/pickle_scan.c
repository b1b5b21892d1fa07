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
 * Text arguments are parsed from a PS_LINE_MAX buffer; longer ones are
 * assumed valid. Counted bodies are skipped by counting. A read crossing a
 * FRAME's end is flagged: there pickle.load(file) and loads() part ways. */
#include "zmtpfw/pickle_scan.h"

#include <stdbool.h>
#include <string.h>

#define PS_KINDS 64       /* stack items whose kind is remembered */
#define PS_MARKS 64       /* mark positions remembered */
#define PS_MEMO_MAP 2048  /* memo indexes tracked by a 2-bit map */
#define PS_MEMO_FAR 8     /* larger memo indexes tracked one by one */
#define PS_LINE_MAX 128   /* text argument bytes kept for parsing */
#define PS_NONE UINT64_MAX

/* A declared length >= 2^56 can never be satisfied: loads() reads from a
 * buffer in the address space, and no 64-bit CPU maps 2^56 bytes (x86-64
 * 5-level paging: 2^56 per half). CPython raises (truncated, MemoryError or
 * OverflowError for >= 2^63) before running the next opcode. */
#define PS_HUGE ((uint64_t)1 << 56)

/* Kinds: 0 doubles as "absent" in the memo map. */
enum ps_kind {
	PK_ABSENT = 0,
	PK_ANY,  /* might be a str (str, unknown, out-of-band buffer) */
	PK_BUF,  /* bytes, bytearray, memoryview: not str, has a buffer */
	PK_VAL,  /* int, bool, float, None, containers: not str, no buffer */
	PK_STR,  /* certainly str (unicode opcodes); the memo keeps it as ANY */
};

enum ps_state {
	PS_OPCODE, /* next byte is an opcode */
	PS_FIXED,  /* collecting a fixed-size binary argument */
	PS_SKIP,   /* skipping a counted body */
	PS_LINE,   /* collecting a '\n'-terminated text argument */
	PS_DONE,   /* verdict is final */
};

enum ps_check {
	PC_NONE,  /* line content is not validated byte by byte */
	PC_UTF8,  /* GLOBAL: PyUnicode_DecodeUTF8(..., "strict") */
	PC_ASCII, /* INST, PERSID: PyUnicode_DecodeASCII(..., "strict") */
};

struct pscan {
	enum pscan_verdict verdict;
	enum ps_state state;
	const char *reason;   /* static string for logs */
	uint64_t pos;         /* offset of the next input byte */
	uint64_t op_off;      /* offset of the opcode being executed */
	uint64_t arg_start;   /* offset where the current argument read began */
	uint64_t buf_end;     /* end of the FRAME a file-mode load buffers */
	uint8_t op;           /* opcode being executed */

	/* Fixed-size argument being collected (at most 8 bytes). */
	uint8_t need;
	uint8_t have;
	uint8_t arg[8];

	/* Counted body being skipped, and what it pushes when done. */
	uint64_t skip;
	uint8_t body_kind;

	/* Text line being collected. */
	uint8_t line_no;      /* GLOBAL/INST read two lines: 0 or 1 */
	uint8_t check;        /* enum ps_check for this line */
	bool keep;            /* copy bytes into line[] for parsing */
	bool bad;             /* validation failed */
	uint8_t u8_need;      /* UTF-8 continuation bytes still expected */
	uint8_t u8_lo, u8_hi; /* range allowed for the next continuation */
	uint8_t first, last;  /* STRING quote check, LONG's trailing 'L' */
	uint64_t line_len;    /* bytes before '\n' */
	uint64_t nul_at;      /* first NUL within line[], or PS_NONE */
	uint8_t line[PS_LINE_MAX];

	/* Stack model. */
	bool lost;            /* depth/marks no longer exact: never raise */
	bool exotic;          /* NEXT_BUFFER ran: stack may hold a non-data
	                         object, so calls might succeed */
	uint64_t depth;       /* Py_SIZE(stack) */
	uint64_t fence;       /* position of the top mark, 0 without marks */
	uint64_t kinds_lo;    /* items [kinds_lo, depth) have a known kind */
	uint8_t kinds[PS_KINDS];
	uint64_t nmarks;      /* number of marks */
	uint64_t marks_lo;    /* marks [marks_lo, nmarks) have known positions */
	uint64_t marks[PS_MARKS];

	/* Memo model. */
	uint64_t memo_len;    /* CPython's memo_len: where MEMOIZE writes */
	bool memo_len_unknown;
	bool far_lost;        /* a large index was stored but not recorded */
	bool memo_blind;      /* a store went to an unknown index */
	uint8_t far_n;
	uint8_t far_kind[PS_MEMO_FAR];
	uint64_t far_idx[PS_MEMO_FAR];
	uint8_t memo_map[PS_MEMO_MAP / 4]; /* 2 bits per index: enum ps_kind */
};

_Static_assert(sizeof(struct pscan) <= PSCAN_STATE_SIZE,
	       "PSCAN_STATE_SIZE too small");
_Static_assert(_Alignof(struct pscan) <= 8, "state alignment");

/* The state lives in the caller's opaque buffer. */
#define PS_GET(st) ((struct pscan *)(void *)(st)->opaque)
#define PS_CGET(st) ((const struct pscan *)(const void *)(st)->opaque)

/* ---- verdicts ---------------------------------------------------------- */

static void ps_decide(struct pscan *s, enum pscan_verdict v, const char *why)
{
	s->verdict = v;
	s->reason = why;
	s->state = PS_DONE;
}

#define ps_clean(s, why) ps_decide((s), PSCAN_CLEAN, (why))
#define ps_flag(s, why) ps_decide((s), PSCAN_PICKLE, (why))

/* ---- stack and marks --------------------------------------------------- */

static void ps_push(struct pscan *s, uint8_t kind)
{
	if (s->lost)
		return;
	s->kinds[s->depth % PS_KINDS] = kind;
	s->depth++;
	if (s->depth - s->kinds_lo > PS_KINDS)
		s->kinds_lo = s->depth - PS_KINDS;
}

/* Shrink the stack to `to` items (to <= depth). */
static void ps_cut(struct pscan *s, uint64_t to)
{
	if (s->lost)
		return;
	s->depth = to;
	if (s->kinds_lo > to)
		s->kinds_lo = to;
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
	else
		s->lost = true; /* the next fence was forgotten */
	return true;
}

/* ---- memo -------------------------------------------------------------- */

/* Returns PK_ABSENT only when the index is certainly empty. */
static uint8_t ps_memo_get(const struct pscan *s, uint64_t idx)
{
	if (s->memo_blind)
		return PK_ANY;
	if (idx < PS_MEMO_MAP)
		return (s->memo_map[idx / 4] >> (2 * (idx % 4))) & 3;
	for (unsigned i = 0; i < s->far_n; i++)
		if (s->far_idx[i] == idx)
			return s->far_kind[i];
	return s->far_lost ? PK_ANY : PK_ABSENT;
}

static void ps_memo_put(struct pscan *s, uint64_t idx, uint8_t kind)
{
	if (s->memo_blind)
		return;
	if (kind == PK_STR)
		kind = PK_ANY; /* 2-bit map; ANY is the safe approximation */
	if (idx < PS_MEMO_MAP) {
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

static void ps_memoize(struct pscan *s, uint8_t kind)
{
	if (s->memo_len_unknown)
		s->memo_blind = true; /* stored at an index we cannot name */
	else
		ps_memo_put(s, s->memo_len, kind);
}

/* ---- text argument parsing --------------------------------------------- */

static bool ps_space(uint8_t c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static unsigned ps_digit(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	return 99;
}

/* Leading whitespace and sign: strtol() and PyLong_FromString() both skip
 * them. Returns the index after them. */
static size_t ps_lead(const uint8_t *b, size_t n, bool *neg)
{
	size_t i = 0;
	while (i < n && ps_space(b[i]))
		i++;
	*neg = i < n && b[i] == '-';
	return i < n && (b[i] == '+' || b[i] == '-') ? i + 1 : i;
}

/* glibc strtol(s, &end, 0) followed by load_int's test "*end is '\n' or
 * '\0'". b[0..n) is the line up to its terminator. */
static bool ps_strtol_ok(const uint8_t *b, size_t n)
{
	bool neg;
	size_t i = ps_lead(b, n, &neg);
	if (n == 0)
		return true; /* no digits, end == s == "\0": taken as 0 */
	if (i < n && b[i] >= 0x80)
		return true; /* isspace() of a high byte depends on the locale */
	unsigned base = 10;
	if (i < n && b[i] == '0') {
		if (i + 2 < n && (b[i + 1] | 0x20) == 'x' && ps_digit(b[i + 2]) < 16) {
			base = 16;
			i += 2;
		} else {
			base = 8;
		}
	}
	size_t start = i;
	uint64_t mag = 0;
	bool ovf = false;
	for (; i < n; i++) {
		unsigned d = ps_digit(b[i]);
		if (d >= base)
			break;
		if (mag > (UINT64_MAX - d) / base)
			ovf = true;
		else
			mag = mag * base + d;
	}
	if (i == start || i != n)
		return false;
	/* ERANGE makes CPython fall back to PyLong_FromString. */
	return !ovf && mag <= (neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1);
}

/* PyLong_FromString(s, NULL, base) for base 0 or 10. On success stores
 * the magnitude (saturated at UINT64_MAX) and sign. */
static bool ps_pylong(const uint8_t *b, size_t n, unsigned base,
		      uint64_t *val, bool *neg)
{
	bool old_octal = false, ng, nonzero = false;
	size_t i = ps_lead(b, n, &ng);
	uint8_t c0 = i < n ? b[i] : 0;
	uint8_t c1 = i + 1 < n ? (uint8_t)(b[i + 1] | 0x20) : 0;
	if (base == 0) {
		if (c0 != '0')
			base = 10;
		else if (c1 == 'x')
			base = 16;
		else if (c1 == 'o')
			base = 8;
		else if (c1 == 'b')
			base = 2;
		else {
			base = 10; /* "0..." only valid if the value is zero */
			old_octal = true;
		}
	}
	if (c0 == '0' && ((base == 16 && c1 == 'x') || (base == 8 && c1 == 'o') ||
			  (base == 2 && c1 == 'b'))) {
		i += 2;
		if (i < n && b[i] == '_')
			i++; /* one underscore allowed after the prefix */
	}
	if (i < n && b[i] == '_')
		return false;
	size_t digits = 0;
	uint8_t prev = 0;
	uint64_t v = 0;
	for (; i < n; i++) {
		uint8_t c = b[i];
		if (c == '_') {
			if (prev == '_')
				return false;
		} else {
			unsigned d = ps_digit(c);
			if (d >= base)
				break;
			digits++;
			nonzero |= d != 0;
			v = v > (UINT64_MAX - d) / base ? UINT64_MAX : v * base + d;
		}
		prev = c;
	}
	if (prev == '_' || digits == 0 || (old_octal && nonzero))
		return false;
	while (i < n && ps_space(b[i]))
		i++;
	if (i != n)
		return false;
	if (val)
		*val = v;
	if (neg)
		*neg = ng && nonzero;
	return true;
}

/* PyOS_string_to_double() must consume the whole line. A superset: leading
 * spaces and overflowing exponents are accepted here although CPython
 * rejects them. */
static bool ps_float_ok(const uint8_t *b, size_t n)
{
	bool neg;
	size_t i = ps_lead(b, n, &neg), d = 0;
	if (n - i >= 3 && n - i <= 8) { /* inf, infinity, nan in any case */
		char w[9] = { 0 };
		for (size_t j = i; j < n; j++)
			w[j - i] = (char)(b[j] | 0x20);
		if (!strcmp(w, "inf") || !strcmp(w, "infinity") || !strcmp(w, "nan"))
			return true;
	}
	for (; i < n && b[i] >= '0' && b[i] <= '9'; i++)
		d++;
	if (i < n && b[i] == '.')
		for (i++; i < n && b[i] >= '0' && b[i] <= '9'; i++)
			d++;
	if (d == 0)
		return false;
	if (i < n && (b[i] | 0x20) == 'e') {
		size_t e = 0;
		i++;
		if (i < n && (b[i] == '+' || b[i] == '-'))
			i++;
		for (; i < n && b[i] >= '0' && b[i] <= '9'; i++)
			e++;
		if (e == 0)
			return false;
	}
	return i == n;
}

/* The C string CPython parses: the line up to the first NUL (CopyLine
 * appends one). strip_L drops LONG's trailing 'L'. Returns false when the
 * string did not fit in line[]: its value is unknown. */
static bool ps_body(const struct pscan *s, bool strip_L, size_t *n)
{
	uint64_t len = s->line_len;
	if (strip_L && len > 0 && s->last == 'L')
		len--;
	if (s->nul_at < len)
		len = s->nul_at;
	if (len > PS_LINE_MAX)
		return false;
	*n = (size_t)len;
	return true;
}

/* ---- line collection --------------------------------------------------- */

static void ps_line_start(struct pscan *s, uint8_t check, bool keep)
{
	s->state = PS_LINE;
	s->arg_start = s->pos;
	s->check = check;
	s->keep = keep;
	s->bad = false;
	s->u8_need = 0;
	s->line_len = 0;
	s->nul_at = PS_NONE;
}

/* Strict UTF-8 as CPython decodes it: no overlongs, no surrogates, nothing
 * above U+10FFFF. Once bad, the caller stops feeding. */
static void ps_utf8(struct pscan *s, uint8_t c)
{
	if (s->u8_need) {
		bool ok = c >= s->u8_lo && c <= s->u8_hi;
		s->bad |= !ok;
		s->u8_need = ok ? (uint8_t)(s->u8_need - 1) : 0;
		s->u8_lo = 0x80;
		s->u8_hi = 0xBF;
		return;
	}
	if (c < 0x80)
		return;
	s->bad |= c < 0xC2 || c > 0xF4;
	s->u8_need = c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
	s->u8_lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
	s->u8_hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
}

static void ps_line_bytes(struct pscan *s, const uint8_t *b, size_t k)
{
	if (k == 0)
		return;
	if (s->keep && s->line_len < PS_LINE_MAX) {
		size_t room = PS_LINE_MAX - (size_t)s->line_len;
		size_t c = k < room ? k : room;
		memcpy(s->line + s->line_len, b, c);
		if (s->nul_at == PS_NONE) {
			const uint8_t *z = memchr(b, 0, c);
			if (z)
				s->nul_at = s->line_len + (uint64_t)(z - b);
		}
	}
	if (s->line_len == 0)
		s->first = b[0];
	s->last = b[k - 1];
	s->line_len += k;
	if (s->check == PC_ASCII) {
		for (size_t i = 0; i < k; i++)
			s->bad |= b[i] >= 0x80;
	} else if (s->check == PC_UTF8) {
		for (size_t i = 0; i < k && !s->bad; i++)
			ps_utf8(s, b[i]);
	}
}

/* GLOBAL/INST/PERSID argument: non-empty (len >= 2 with the '\n', PERSID
 * excepted) and decodable. */
static bool ps_name_ok(const struct pscan *s, bool may_be_empty)
{
	return !s->bad && s->u8_need == 0 && (may_be_empty || s->line_len > 0);
}

/* ---- opcode execution -------------------------------------------------- */

static void ps_body_skip(struct pscan *s, uint64_t len, uint8_t kind)
{
	if (len >= PS_HUGE) {
		ps_clean(s, "length-too-large");
		return;
	}
	if (len == 0) {
		ps_push(s, kind);
		return;
	}
	s->state = PS_SKIP;
	s->arg_start = s->pos;
	s->skip = len;
	s->body_kind = kind;
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
		ps_flag(s, "FRAME-straddle");
		return true;
	}
	return false;
}

/* idx PS_NONE: the index is unknown (long text argument). */
static void ps_get_idx(struct pscan *s, uint64_t idx)
{
	uint8_t k = idx == PS_NONE ? PK_ANY : ps_memo_get(s, idx);
	if (k == PK_ABSENT)
		ps_clean(s, "memo-missing");
	else
		ps_push(s, k);
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
			ps_flag(s, "FRAME-straddle"); /* nested, reads past it */
		break;
	case 0x80: /* PROTO */
		if (v > 5)
			ps_clean(s, "bad-protocol");
		break;
	case 0x82: case 0x83: /* EXT1, EXT2: unsigned code */
		if (v == 0)
			ps_clean(s, "bad-ext-code");
		else
			ps_flag(s, s->op == 0x82 ? "EXT1" : "EXT2");
		break;
	case 0x84: /* EXT4: signed code, <= 0 raises */
		if (v == 0 || (v & 0x80000000u))
			ps_clean(s, "bad-ext-code");
		else
			ps_flag(s, "EXT4");
		break;
	case 'h': case 'j': /* BINGET, LONG_BINGET */
		ps_get_idx(s, v);
		break;
	case 'q': case 'r': /* BINPUT, LONG_BINPUT */
		if (ps_avail(s, 1))
			ps_memo_put(s, v, ps_kind(s, 0));
		break;
	}
}

/* After a text line's '\n'. */
static void ps_line_done(struct pscan *s)
{
	size_t n = 0;
	uint64_t v = 0;
	bool neg = false, known;

	switch (s->op) {
	case 'I': case 'L': case 'F':
		/* INT: strtol base 0, else PyLong_FromString base 0. LONG:
		 * PyLong_FromString base 0 without a trailing 'L'. FLOAT:
		 * PyOS_string_to_double. All must consume the whole line. */
		if (s->line_len == 0)
			goto bad;
		if (ps_body(s, s->op == 'L', &n) &&
		    !(s->op == 'F' ? ps_float_ok(s->line, n) :
		      (s->op == 'I' && ps_strtol_ok(s->line, n)) ||
		      ps_pylong(s->line, n, 0, NULL, NULL)))
			goto bad;
		ps_push(s, PK_VAL);
		break;
	case 'S': /* STRING: must be quoted; escapes assumed fine */
		if (s->line_len < 2 || s->first != s->last ||
		    (s->first != '\'' && s->first != '"'))
			goto bad;
		ps_push(s, PK_ANY);
		break;
	case 'V': /* UNICODE: raw-unicode-escape errors assumed absent */
		ps_push(s, PK_STR);
		break;
	case 'g': case 'p':
		/* GET, PUT: PyLong_FromString base 10; negative or overflowing
		 * indexes raise. PUT tests for underflow before parsing. */
		if (s->line_len == 0)
			goto bad;
		if (s->op == 'p' && !ps_avail(s, 1))
			break;
		known = ps_body(s, false, &n);
		if (known && (!ps_pylong(s->line, n, 10, &v, &neg) || v > INT64_MAX))
			goto bad;
		if (s->op == 'g' && known && neg)
			ps_clean(s, "memo-missing"); /* MemoGet((size_t)-k) */
		else if (neg)
			goto bad; /* "negative PUT argument" */
		else if (s->op == 'g')
			ps_get_idx(s, known ? v : PS_NONE);
		else if (known)
			ps_memo_put(s, v, ps_kind(s, 0));
		else
			s->memo_blind = true; /* stored at an index we cannot name */
		break;
	case 'P': /* PERSID with a persistent_load: ASCII id, may be empty */
		if (!ps_name_ok(s, true))
			goto bad;
		ps_flag(s, "PERSID");
		break;
	case 'c': case 'i': /* GLOBAL, INST: module line then name line */
		if (!ps_name_ok(s, false))
			goto bad;
		if (s->line_no == 0) {
			s->line_no = 1;
			ps_line_start(s, s->check, false);
		} else {
			ps_flag(s, s->op == 'c' ? "GLOBAL" : "INST");
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
		ps_cut(s, at);
		if (op == 'd' || op == 'l' || op == 't' || op == 0x91)
			ps_push(s, PK_VAL);
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
	case '.':
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
			ps_push(s, ps_kind(s, 0));
		break;
	case 'N': case ')': case ']': case '}': case 0x88: case 0x89: case 0x8f:
		ps_push(s, PK_VAL);
		break;
	case 'I': case 'L': case 'F': case 'g': case 'p':
		ps_line_start(s, PC_NONE, true);
		break;
	case 'S': case 'V':
		ps_line_start(s, PC_NONE, false);
		break;
	case 'P':
		ps_line_start(s, PC_ASCII, false);
		break;
	case 'c':
		s->line_no = 0;
		ps_line_start(s, PC_UTF8, false);
		break;
	case 'i': /* INST pops its mark before reading the names */
		if (!ps_marker(s, &at))
			break;
		s->line_no = 0;
		ps_line_start(s, PC_ASCII, false);
		break;
	case 'Q': /* BINPERSID pops the id, then calls persistent_load */
		if (ps_avail(s, 1))
			ps_flag(s, "BINPERSID");
		break;
	case 0x93: /* STACK_GLOBAL: both operands must be exact str */
		if (!ps_avail(s, 2))
			break;
		if (!ps_maybe_str(ps_kind(s, 0)) || !ps_maybe_str(ps_kind(s, 1)))
			ps_clean(s, "stack-global-not-str");
		else
			ps_flag(s, "STACK_GLOBAL");
		break;
	case 'a': case 'b': /* APPEND; BUILD leaves the instance on top */
		ps_pop_push(s, 2, 1, PK_ABSENT);
		break;
	case 's': /* SETITEM: do_setitems(len - 2) needs len - 2 > fence */
		ps_pop_push(s, 3, 2, PK_ABSENT);
		break;
	case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
		ps_pop_push(s, op - 0x84u, op - 0x84u, PK_VAL);
		break;
	case 'd': case 'u': case 'e': case 0x90: case 'l': case 't': case 0x91:
	case '1':
		ps_mark_op(s, op);
		break;
	case 0x94: /* MEMOIZE */
		if (ps_avail(s, 1))
			ps_memoize(s, ps_kind(s, 0));
		break;
	case 'R': case 0x81: case 0x92: /* REDUCE, NEWOBJ: 2 operands; NEWOBJ_EX: 3 */
		at = op == 0x92 ? 3 : 2;
		if (!ps_calls_fail(s, at))
			ps_pop_push(s, at, at, PK_ANY);
		break;
	case 'o': /* OBJ: marker, then cls and args above it */
		if (!ps_marker(s, &at))
			break;
		if (!s->lost && s->depth - at < 1)
			ps_clean(s, "stack-underflow");
		else if (!s->exotic)
			ps_clean(s, "not-callable");
		else {
			ps_cut(s, at);
			ps_push(s, PK_ANY);
		}
		break;
	case 0x97: /* NEXT_BUFFER: raises unless loads() got buffers= */
		s->exotic = true;
		ps_push(s, PK_ANY);
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

/* ---- public API -------------------------------------------------------- */

void pscan_init(struct pscan_state *st)
{
	struct pscan *s = PS_GET(st);
	memset(s, 0, sizeof(*s));
	s->verdict = PSCAN_NEED_MORE;
	s->state = PS_OPCODE;
	s->reason = "need-more";
	s->nul_at = PS_NONE;
}

enum pscan_verdict pscan_feed(struct pscan_state *st, const uint8_t *p, size_t n)
{
	struct pscan *s = PS_GET(st);
	size_t i = 0;

	while (i < n && s->verdict == PSCAN_NEED_MORE) {
		switch (s->state) {
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
			s->skip -= k;
			i += (size_t)k;
			s->pos += k;
			if (s->skip == 0) {
				s->state = PS_OPCODE;
				/* PK_BUF bodies are the ReadInto ones */
				if (s->body_kind == PK_BUF || !ps_straddles(s))
					ps_push(s, s->body_kind);
			}
			break;
		}
		case PS_LINE: {
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			size_t k = nl ? (size_t)(nl - (p + i)) : n - i;
			ps_line_bytes(s, p + i, k);
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
		if (s->state == PS_OPCODE)
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
