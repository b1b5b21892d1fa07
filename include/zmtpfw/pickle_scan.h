/* pickle_scan: decides, incrementally, whether CPython's pickle.loads() on a
 * byte string could import or call anything. Pure: no allocation, no I/O.
 *
 * It emulates the dispatch loop of Modules/_pickle.c from byte 0 without
 * building objects, tracking just enough (stack depth, marks, memo, the types
 * of the top stack items) to know when CPython would certainly raise. It flags
 * the frame as soon as execution could reach GLOBAL, INST, STACK_GLOBAL,
 * EXT1/2/4 or PERSID/BINPERSID. When unsure it keeps scanning; it reports
 * CLEAN only when CPython would certainly raise or stop first. */
#ifndef ZMTPFW_PICKLE_SCAN_H
#define ZMTPFW_PICKLE_SCAN_H

#include <stddef.h>
#include <stdint.h>

enum pscan_verdict {
	PSCAN_NEED_MORE = 0, /* undecided: feed more bytes or call finish */
	PSCAN_CLEAN,         /* loads() would stop or raise before importing */
	PSCAN_PICKLE,        /* loads() could reach an import/call opcode */
};

struct pscan; /* opaque state lives in pickle_scan.c; size below */

/* Fixed-size state so callers can embed it without allocation (about 1.4 KiB
 * used: stack kinds, 64 mark positions, a 2048-entry memo map, a 128-byte
 * text-argument buffer). pickle_scan.c checks the fit at compile time. */
#define PSCAN_STATE_SIZE 1536

struct pscan_state {
	_Alignas(8) unsigned char opaque[PSCAN_STATE_SIZE];
};

void pscan_init(struct pscan_state *st);

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
 * "stack-global-not-str", "not-a-buffer", "truncated"), or "need-more". */
const char *pscan_reason(const struct pscan_state *st);

/* Byte offset in the frame of the opcode that decided the verdict (for
 * "truncated": of the unfinished opcode, or the end when between opcodes). */
uint64_t pscan_offset(const struct pscan_state *st);

#endif
