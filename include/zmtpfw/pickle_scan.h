/* pickle_scan: decides, incrementally, whether CPython's pickle.loads() on a
 * byte string could import or call anything. Pure: no allocation, no I/O.
 *
 * It emulates the dispatch loop of Modules/_pickle.c from byte 0 without
 * building objects, tracking just enough (stack depth, marks, memo, the types
 * of the top stack items) to know when CPython would certainly raise. It flags
 * the frame as soon as execution could reach GLOBAL, INST, STACK_GLOBAL,
 * EXT1/2/4 or PERSID/BINPERSID. When unsure it keeps scanning; it reports
 * CLEAN only when CPython would certainly raise or stop first.
 *
 * Two modes share the emulator:
 *  - flag-and-stop (pscan_init): the relay's mode. The first reachable
 *    import decides PICKLE and scanning stops. Nothing but the fixed state
 *    is touched; init is O(1).
 *  - collect (pscan_init + pscan_collect): for offline scanning (zmtpfw
 *    scan). Every reachable import is reported to a callback, with its
 *    module and name when the scanner can name them, and emulation goes on
 *    as if the import succeeded (from then on any call may succeed), until
 *    STOP, a certain raise, or the end of the input. */
#ifndef ZMTPFW_PICKLE_SCAN_H
#define ZMTPFW_PICKLE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pscan_verdict {
	PSCAN_NEED_MORE = 0, /* undecided: feed more bytes or call finish */
	PSCAN_CLEAN,         /* loads() would stop or raise before importing */
	PSCAN_PICKLE,        /* loads() could reach an import/call opcode */
};

struct pscan; /* opaque: defined in src/pickle_scan_int.h; size below */

/* Fixed-size state so callers can embed it without allocation (about 1.5 KiB
 * used: stack kinds, 64 mark positions, a 2048-entry memo map, a 128-byte
 * text-argument buffer). pickle_scan_int.h checks the fit at compile time. Only
 * the few bytes a frame actually uses are ever written: init is O(1). */
#define PSCAN_STATE_SIZE 1600

struct pscan_state {
	_Alignas(8) unsigned char opaque[PSCAN_STATE_SIZE];
};

/* Loader assumptions (pscan_init_opts). 0, the default, is the most
 * permissive loader: a worker may have registered copyreg extension codes,
 * may unpickle with a persistent_load and may pass buffers=, so EXT with a
 * code > 0 and PERSID/BINPERSID count as imports and NEXT_BUFFER may push
 * anything (even a callable). PSCAN_STOCK is plain pickle.loads(frame) on
 * stock CPython. */
#define PSCAN_EXT_UNREGISTERED 0x1u /* the copyreg extension registry is empty
				       (stock CPython): EXT1/2/4 raise
				       ValueError without reaching find_class */
#define PSCAN_NO_PERSID 0x2u /* no persistent_load (always so for
				pickle.loads()): PERSID/BINPERSID raise */
#define PSCAN_NO_BUFFERS 0x4u /* loads() without buffers= (pickle.loads of
				 a frame): NEXT_BUFFER raises */
#define PSCAN_STOCK (PSCAN_EXT_UNREGISTERED | PSCAN_NO_PERSID | PSCAN_NO_BUFFERS)

/* Start a frame (flag-and-stop mode, default options). O(1). */
void pscan_init(struct pscan_state *st);
void pscan_init_opts(struct pscan_state *st, unsigned opts);

/* Does a frame starting with byte b get CLEAN from that byte alone (not an
 * opcode, or one that raises on an empty stack), whatever follows and
 * whatever the options? The same table pscan_feed consults first: the
 * relay's fast path skips init and feed for such frames. */
bool pscan_first_byte_clean(uint8_t b);

/* Feed the next n bytes of the frame. Returns the verdict so far; once CLEAN
 * or PICKLE it is final and further bytes are ignored. */
enum pscan_verdict pscan_feed(struct pscan_state *st, const uint8_t *p, size_t n);

/* The frame ended. Turns NEED_MORE into CLEAN (CPython raises on truncated
 * input before importing); returns the final verdict. Only call it at the
 * real end of the frame: a caller that stops scanning early (a byte budget,
 * a timeout) must treat NEED_MORE as PICKLE, not call finish. */
enum pscan_verdict pscan_finish(struct pscan_state *st);

/* For logs, a static string: the opcode name that made the verdict PICKLE
 * ("GLOBAL", "INST", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4", "PERSID",
 * "BINPERSID", or "FRAME-straddle": a read crossing a FRAME's end, where
 * pickle.load(file) and pickle.loads() would run different opcodes), why it
 * is CLEAN ("stop", "not-an-opcode", "stack-underflow", "no-mark",
 * "odd-items", "memo-missing", "bad-argument", "bad-protocol",
 * "bad-ext-code", "negative-length", "length-too-large", "not-callable",
 * "stack-global-not-str", "not-a-buffer", "truncated"; with options also
 * "ext-unregistered", "no-persistent-load", "no-buffers"), or
 * "need-more".
 * In collect mode: how emulation ended (one of the CLEAN reasons, or
 * "FRAME-straddle"), whatever the verdict. */
const char *pscan_reason(const struct pscan_state *st);

/* Byte offset in the frame of the opcode that decided the verdict (for
 * "truncated": of the unfinished opcode, or the end when between opcodes).
 * In collect mode: of the opcode that ended emulation. */
uint64_t pscan_offset(const struct pscan_state *st);

/* ---- collect mode ------------------------------------------------------ */

/* Strings longer than this are not kept: a STACK_GLOBAL operand that long
 * is reported unknown, a GLOBAL/INST line that long is cut (truncated). */
#define PSCAN_NAME_MAX 512

/* One reachable import, or a shape event, as reported to the callback.
 * Pointers are valid only during the call. */
struct pscan_import {
	const char *opcode;    /* "GLOBAL", "INST", "STACK_GLOBAL", "EXT1",
				  "EXT2", "EXT4", "PERSID", "BINPERSID",
				  "FRAME-straddle" (emulation stops there) */
	uint64_t offset;       /* of the opcode, in the pickle being run */
	const uint8_t *module; /* as find_class() would receive it (UTF-8,
				  before fix_imports mapping); NULL: unknown */
	size_t module_len;
	const uint8_t *name;   /* NULL: unknown */
	size_t name_len;
	bool truncated;        /* GLOBAL/INST: a line was cut at NAME_MAX */
	int64_t ext_code;      /* EXT1/2/4: the extension code */
	uint8_t proto;         /* protocol in force (fix_imports maps Python 2
				  names below 3; dotted names resolve from 4) */
	unsigned depth;        /* 0: the frame's pickle; n: a pickle inside a
				  bytes value n levels down (pscan_nest) */
	const char *shape;     /* NULL for an import. Otherwise not an import
				  but a use no pickler emits and a policy must
				  refuse (collect mode with names only):
				  "getattr-shape" (getattr called other than
				  on an allowed global with a public
				  identifier), "or-shape", "restricted-use"
				  (getattr/or_ used other than as a call),
				  "unknown-callable", "unknown-class",
				  "build-on-global", "second-proto",
				  "model-lost", "nested-too-deep",
				  "zip-in-bytes" (torch.load would open it) */
	bool allowed;          /* out, set by the callback: the import is
				  allowed, so the scanner may treat the object
				  as a listed global (getattr's Enum shape) */
};

typedef void (*pscan_import_fn)(void *ctx, struct pscan_import *imp);

/* Memory for naming STACK_GLOBAL operands and tracking what each stack
 * item and memo entry is (a string constant, an imported global, the
 * result of getattr...): the top stack items and a direct-mapped cache of
 * memo entries, with string bytes in a ring arena. A value pushed out of
 * the arena or the cache is reported unknown, never wrong. Caller
 * allocated (pscan_names_size bytes, 8-aligned), pscan_names_init() once,
 * then reused for any number of scans (one scan at a time). arena and
 * memo_slots must be powers of two. */
struct pscan_names;

#define PSCAN_NAMES_ARENA (1u << 20) /* offline scanning: 1 MiB of strings */
#define PSCAN_NAMES_MEMO 8192u

size_t pscan_names_size(uint32_t arena, uint32_t memo_slots);
struct pscan_names *pscan_names_init(void *mem, uint32_t arena, uint32_t memo_slots);

/* Switch a freshly initialised state (no byte fed yet) to collect mode.
 * fn is called once per reachable import, in stream order. nm may be NULL:
 * STACK_GLOBAL operands are then unknown and GLOBAL/INST lines unnamed. */
void pscan_collect(struct pscan_state *st, struct pscan_names *nm,
		   pscan_import_fn fn, void *ctx);

/* Judge bytes values (BINBYTES*, BYTEARRAY8) as pickles too, as a sequence
 * of pickles (torch.load of a legacy stream reads several), up to n levels
 * down: chain[i] is the state for level i + 1 and, in collect mode,
 * names[i] its names (names may be NULL). Call after init/collect, before
 * the first byte. A bytes value at level n + 1 that could start a pickle
 * flags the frame (flag mode) or reports "nested-too-deep" (collect).
 * Inside bytes, PERSID pushes a value (torch.load has a persistent_load)
 * instead of raising. Without this call bytes values are not looked into. */
void pscan_nest(struct pscan_state *st, struct pscan_state *chain,
		struct pscan_names *const *names, unsigned n);

/* Collect mode: imports reported so far. The verdict is PICKLE when this is
 * not zero, CLEAN otherwise. */
uint64_t pscan_imports(const struct pscan_state *st);

#endif
