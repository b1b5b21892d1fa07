/* pickle_scan_int.h: what the scanner's layers share, and what each
 * offers the one above it. Internal to the scanner: not under include/, so
 * callers of the public API still see an opaque buffer.
 *
 *   pickle_scan.c       reads opcodes and arguments (public API)
 *     -> pickle_scan_emul.c   runs each opcode (ps_opcode, ps_*_done)
 *       -> pickle_scan_model.c  the modelled stack, marks, memo (ps_push...)
 *         -> pickle_scan_text.c   text arguments (pscan_text_*)
 *
 * Code that pscan_feed runs per line or per byte (line collection, the
 * names arena) is static inline here, so the split did not turn it into
 * calls across files; release builds use link-time optimisation for the
 * rest. */
#ifndef ZMTPFW_PICKLE_SCAN_INT_H
#define ZMTPFW_PICKLE_SCAN_INT_H

#include "zmtpfw/pickle_scan.h"

#include <string.h>

#define PS_KINDS 64       /* stack items whose kind is remembered */
#define PS_MARKS 64       /* mark positions remembered */
#define PS_MEMO_MAP 2048  /* memo indexes tracked by a 2-bit map */
#define PS_MEMO_FAR 8     /* larger memo indexes tracked one by one */
#define PS_LINE_MAX 128   /* text argument bytes kept for parsing */
#define PS_NONE UINT64_MAX
#define PS_INST UINT64_MAX /* ps_reach: INST pops down to its mark */

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
	PS_START,  /* nothing fed yet: registers not initialised */
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

/* ---- collect mode: names memory ----------------------------------------- */

#define PS_NOREF UINT32_MAX
#define PS_PERSID_VALUE 0x100u /* inside bytes: persistent_load exists */
#define PS_DEEP 64             /* non-data items remembered below the window */

/* What a stack item or memo entry is, as far as a policy cares (collect
 * mode with names). Anything the scanner cannot vouch for is SY_UNKNOWN. */
enum ps_sym {
	SY_DATA = 0,  /* built by data opcodes, or returned by a call */
	SY_UNKNOWN,   /* lost track: could be anything, even a global */
	SY_GLOBAL,    /* an imported object the policy did not allow */
	SY_GLOBAL_OK, /* an imported object the policy allowed */
	SY_GETATTR,   /* builtins.getattr: callable only in the Enum shape */
	SY_OR,        /* _operator.or_: only over Enum members */
	SY_GA_ARGS,   /* (allowed global, public identifier) */
	SY_OR_ARGS,   /* (Enum member, Enum member) */
	SY_ENUM,      /* what getattr/or_ returned in the Enum shape */
};

/* A string value in the arena: arena bytes [at, at + len) in absolute
 * (never wrapping) positions; len PS_NOREF: not a known string. */
struct ps_ref {
	uint64_t at;
	uint32_t len;
};

/* Only "interesting" entries (a known string, or a sym other than
 * SY_DATA) take a slot. `collided` records that one was evicted from it,
 * so a miss on a collided slot is unknown rather than plain data. */
struct ps_nmemo {
	uint64_t idx;  /* memo index this slot describes */
	uint64_t at;   /* its string value, as in ps_ref */
	uint32_t len;
	uint32_t gen;  /* scan that wrote it: older slots are empty */
	uint8_t sym;   /* enum ps_sym */
	bool collided; /* an interesting entry was evicted (this gen) */
};

struct ps_names {
	uint64_t wr;    /* arena bytes ever reserved; a ref is intact while
			   wr <= at + arena_size (nothing wrapped onto it) */
	uint32_t gen;   /* current scan, tags memo slots */
	uint32_t arena_size; /* power of two */
	uint32_t nmemo;      /* power of two */
	struct ps_ref stack[PS_KINDS]; /* parallel to pscan.kinds */
	uint8_t sym[PS_KINDS];         /* parallel to pscan.kinds */
	/* Items below the window that are not plain data (a callable under
	 * its long argument list), by position, ascending. */
	uint64_t deep_pos[PS_DEEP];
	uint8_t deep_sym[PS_DEEP];
	uint32_t n_deep;
	struct ps_ref body;            /* str body being copied (pscan.cap) */
	uint64_t body_done;            /* bytes of it copied so far */
	uint64_t line_len[2];          /* GLOBAL/INST lines, UNICODE/STRING */
	uint8_t line[2][PSCAN_NAME_MAX];
	struct ps_nmemo *memo;         /* nmemo slots, right after the struct */
	uint8_t *arena;                /* arena_size bytes, after the slots */
};

static const struct ps_ref ps_noref = { 0, PS_NOREF };

struct pscan {
	/* ---- set by pscan_init / pscan_collect / pscan_nest ---- */
	enum pscan_verdict verdict;
	enum ps_state state;
	const char *reason;   /* static string for logs */
	uint64_t pos;         /* offset of the next input byte */
	uint64_t op_off;      /* offset of the opcode being executed */
	uint64_t imports;     /* collect mode: imports reported */
	unsigned opts;        /* PSCAN_EXT_UNREGISTERED, _NO_PERSID, _NO_BUFFERS */
	pscan_import_fn fn;   /* collect mode when set */
	void *ctx;
	struct ps_names *nm;  /* collect mode: string values, or NULL */
	bool nest;            /* pscan_nest was called: judge bytes values */
	unsigned level;       /* 0: the frame's pickle */
	unsigned nest_n;      /* levels still available below this one */
	struct pscan_state *chain;          /* state of the next level */
	struct pscan_names *const *chain_nm; /* its names */

	/* ---- registers: zeroed by ps_start() at the first opcode ---- */
	uint64_t arg_start;   /* offset where the current argument read began */
	uint64_t buf_end;     /* end of the FRAME a file-mode load buffers */
	uint8_t op;           /* opcode being executed */
	uint8_t proto;        /* PROTO's argument, 0 before any */
	bool child_on;        /* a bytes body is being fed to chain */
	bool child_new;       /* set by the emulator: it starts with the next
				 body byte */
	uint8_t zip_have;     /* body bytes matched against the zip magic */
	uint8_t magic_have;   /* ... against torch's legacy magic pickle */
	uint8_t seq_left;     /* pickles of this bytes value still to read */
	const char *shape_held; /* shape seen before any import of this pickle */
	uint64_t shape_off;   /* its offset */

	/* Fixed-size argument being collected (at most 8 bytes). */
	uint8_t need;
	uint8_t have;
	uint8_t arg[8];

	/* Counted body being skipped, and what it pushes when done. */
	uint64_t skip;
	uint8_t body_kind;
	bool cap;             /* collect mode: body copied to nm->body */

	/* Text line being collected. */
	uint8_t line_no;      /* GLOBAL/INST read two lines: 0 or 1 */
	uint8_t check;        /* enum ps_check for this line */
	bool keep;            /* copy bytes into line[] for parsing */
	bool keep_name;       /* collect mode: copy bytes into nm->line[] */
	bool bad;             /* validation failed */
	uint8_t u8_need;      /* UTF-8 continuation bytes still expected */
	uint8_t u8_lo, u8_hi; /* range allowed for the next continuation */
	bool u8_surr;         /* surrogatepass: ED A0..BF allowed */
	uint8_t first, last;  /* STRING quote check, LONG's trailing 'L' */
	uint64_t line_len;    /* bytes before '\n' */
	uint64_t nul_at;      /* first NUL within line[], or PS_NONE */

	/* Stack model. */
	bool lost;            /* depth/marks no longer exact: never raise */
	bool exotic;          /* NEXT_BUFFER ran, or (collect mode) an import
				 succeeded: the stack may hold a non-data
				 object, so calls might succeed */
	uint64_t depth;       /* Py_SIZE(stack) */
	uint64_t fence;       /* position of the top mark, 0 without marks */
	uint64_t kinds_lo;    /* items [kinds_lo, depth) have a known kind */
	uint64_t evict_hi;    /* items below kinds_lo and at or above this were
				 plain data when forgotten (collect mode) */
	uint64_t nmarks;      /* number of marks */
	uint64_t marks_lo;    /* marks [marks_lo, nmarks) have known positions */
	uint64_t inst_at;     /* INST: where its mark was */

	/* Memo model. */
	uint64_t memo_len;    /* CPython's memo_len: where MEMOIZE writes */
	uint64_t memo_hi;     /* memo_map bytes [0, memo_hi) are initialised */
	bool memo_len_unknown;
	bool far_lost;        /* a large index was stored but not recorded */
	bool memo_blind;      /* a store went to an unknown index */
	uint8_t far_n;

	/* ---- arrays: never cleared, read only where this frame wrote ---- */
	uint8_t line[PS_LINE_MAX];  /* [0, min(line_len, PS_LINE_MAX)) */
	uint8_t kinds[PS_KINDS];    /* items [kinds_lo, depth) */
	uint64_t marks[PS_MARKS];   /* marks [marks_lo, nmarks) */
	uint8_t far_kind[PS_MEMO_FAR]; /* [0, far_n) */
	uint64_t far_idx[PS_MEMO_FAR];
	uint8_t memo_map[PS_MEMO_MAP / 4]; /* 2 bits per index: enum ps_kind */
};

_Static_assert(sizeof(struct pscan) <= PSCAN_STATE_SIZE,
	       "PSCAN_STATE_SIZE too small");
_Static_assert(_Alignof(struct pscan) <= 8, "state alignment");

/* The state lives in the caller's opaque buffer. */
#define PS_GET(st) ((struct pscan *)(void *)(st)->opaque)
#define PS_CGET(st) ((const struct pscan *)(const void *)(st)->opaque)

/* ---- names (collect mode) ---------------------------------------------- */

static inline bool ps_ref_known(const struct ps_names *nm, struct ps_ref r)
{
	return r.len != PS_NOREF && nm->wr <= r.at + nm->arena_size;
}

/* Reserve len <= PSCAN_NAME_MAX contiguous arena bytes. */
static inline struct ps_ref ps_reserve(struct ps_names *nm, uint64_t len)
{
	uint64_t in = nm->wr & (nm->arena_size - 1);
	if (in + len > nm->arena_size)
		nm->wr += nm->arena_size - in;
	struct ps_ref r = { nm->wr, (uint32_t)len };
	nm->wr += len;
	return r;
}

static inline uint8_t *ps_bytes(struct ps_names *nm, struct ps_ref r)
{
	return nm->arena + (r.at & (nm->arena_size - 1));
}

static inline struct ps_ref ps_store(struct ps_names *nm, const uint8_t *b, uint64_t len)
{
	struct ps_ref r = ps_reserve(nm, len);
	if (len)
		memcpy(ps_bytes(nm, r), b, len);
	return r;
}

/* ---- the model: pickle_scan_model.c ------------------------------------- */

void ps_decide(struct pscan *s, enum pscan_verdict v, const char *why);
void ps_clean(struct pscan *s, const char *why); /* STOP or a certain raise */
bool ps_shapes(const struct pscan *s);           /* shape events are on */
void ps_shape(struct pscan *s, const char *shape);
void ps_shape_flush(struct pscan *s); /* the first import: report a held shape */
bool ps_sym_restricted(uint8_t sym);
void ps_push_sym(struct pscan *s, uint8_t kind, struct ps_ref ref, uint8_t sym);
void ps_push_ref(struct pscan *s, uint8_t kind, struct ps_ref ref);
void ps_push(struct pscan *s, uint8_t kind);
void ps_cut(struct pscan *s, uint64_t to);
uint8_t ps_sym_at(const struct pscan *s, uint64_t at);
void ps_sym_clear(struct pscan *s, uint64_t at);
uint8_t ps_sym(const struct pscan *s, uint64_t down);
uint8_t ps_kind(const struct pscan *s, uint64_t down);
struct ps_ref ps_ref(const struct pscan *s, uint64_t down);
bool ps_maybe_str(uint8_t kind);
bool ps_avail(struct pscan *s, uint64_t n);
void ps_mark(struct pscan *s);
bool ps_marker(struct pscan *s, uint64_t *at);
uint8_t ps_memo_get(const struct pscan *s, uint64_t idx);
struct ps_ref ps_memo_ref(const struct pscan *s, uint64_t idx, uint8_t *sym);
void ps_memo_put(struct pscan *s, uint64_t idx);
void ps_memoize(struct pscan *s);
void ps_straddle_hit(struct pscan *s);

/* ---- opcodes: pickle_scan_emul.c ---------------------------------------- */

void ps_opcode(struct pscan *s, uint8_t op); /* one without a fixed argument */
void ps_fixed_done(struct pscan *s);         /* its fixed argument is in arg[] */
void ps_line_done(struct pscan *s);          /* its text line ended */
void ps_body_done(struct pscan *s);          /* its counted body ended */

/* ---- text arguments: pickle_scan_text.c -------------------------------- */

bool pscan_text_strtol_ok(const uint8_t *b, size_t n);
bool pscan_text_pylong(const uint8_t *b, size_t n, unsigned base,
		       uint64_t *val, bool *neg);
bool pscan_text_float_ok(const uint8_t *b, size_t n);
void pscan_text_utf8_bytes(struct pscan *s, const uint8_t *b, size_t k);
struct ps_ref pscan_text_plain_str(struct pscan *s, const uint8_t *b, uint64_t n);

/* ---- text arguments: line collection, inline --------------------------- */

static inline bool ps_space(uint8_t c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Bytes no INT/LONG/FLOAT/GET/PUT argument can contain before its first
 * NUL: anything outside alphanumerics, "_+-.", ASCII whitespace and bytes
 * >= 0x80 (kept: locale-dependent isspace in strtol). Such a byte proves an
 * argument too long for line[] invalid. */
static inline bool ps_num_junk(uint8_t c)
{
	if (c >= 0x80 || ps_space(c) || c == '_' || c == '+' || c == '-' || c == '.')
		return false;
	return !((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'));
}

static inline void pscan_text_line_start(struct pscan *s, uint8_t check, bool keep)
{
	s->state = PS_LINE;
	s->arg_start = s->pos;
	s->check = check;
	s->keep = keep;
	s->bad = false;
	s->u8_need = 0;
	s->u8_surr = false;
	s->line_len = 0;
	s->nul_at = PS_NONE;
	/* Collect mode names GLOBAL/INST lines and UNICODE/STRING values. */
	s->keep_name = s->nm && (s->op == 'c' || s->op == 'i' || s->op == 'V' || s->op == 'S');
	if (s->keep_name)
		s->nm->line_len[s->line_no] = 0;
}

static inline void pscan_text_line_bytes(struct pscan *s, const uint8_t *b, size_t k)
{
	if (k == 0)
		return;
	if (s->keep && s->nul_at == PS_NONE) {
		for (size_t i = 0; i < k && b[i] != 0; i++)
			s->bad |= ps_num_junk(b[i]);
	}
	if (s->keep && s->line_len < PS_LINE_MAX) {
		size_t room = PS_LINE_MAX - (size_t)s->line_len;
		size_t c = k < room ? k : room;
		memcpy(s->line + s->line_len, b, c);
	}
	if (s->keep && s->nul_at == PS_NONE) {
		const uint8_t *z = memchr(b, 0, k);
		if (z)
			s->nul_at = s->line_len + (uint64_t)(z - b);
	}
	if (s->keep_name) {
		uint64_t *have = &s->nm->line_len[s->line_no];
		if (*have < PSCAN_NAME_MAX) {
			size_t c = PSCAN_NAME_MAX - (size_t)*have;
			memcpy(s->nm->line[s->line_no] + *have, b, k < c ? k : c);
		}
		*have += k;
	}
	if (s->line_len == 0)
		s->first = b[0];
	s->last = b[k - 1];
	s->line_len += k;
	if (s->check == PC_ASCII) {
		for (size_t i = 0; i < k; i++)
			s->bad |= b[i] >= 0x80;
	} else if (s->check == PC_UTF8) {
		pscan_text_utf8_bytes(s, b, k);
	}
}

/* The C string CPython parses: the line up to the first NUL (CopyLine
 * appends one). strip_L drops LONG's trailing 'L'. Returns false when the
 * string did not fit in line[]: its value is unknown. */
static inline bool pscan_text_body(const struct pscan *s, bool strip_L, size_t *n)
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

/* GLOBAL/INST/PERSID argument: non-empty (len >= 2 with the '\n', PERSID
 * excepted) and decodable. */
static inline bool pscan_text_name_ok(const struct pscan *s, bool may_be_empty)
{
	return !s->bad && s->u8_need == 0 && (may_be_empty || s->line_len > 0);
}

#endif
