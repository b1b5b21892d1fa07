/* Unit tests for pickle_scan's verdicts: a table of byte strings with the
 * expected verdict, reason and offset. Every case is fed whole, split in two
 * at every point, and byte by byte; all runs must agree exactly.
 * Built-at-runtime cases cover the bounds (deep marks, large memo, 64 MiB
 * bodies). The API contract, the first-byte fast path, the options and
 * collect mode are in test_pickle_scan_modes.c.
 *
 * Literals: a hex escape swallows following hex digits, so "\x8c" "abc"
 * is split into two literals wherever that matters. */
#include "zmtpfw/pickle_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pickle_scan_test_util.h"

#define ANYOFF (-1LL)

struct tcase {
	const char *name;
	const uint8_t *data;
	size_t len;
	enum pscan_verdict verdict;
	const char *reason; /* NULL: not checked */
	long long off;      /* ANYOFF: not checked */
};

#define T(name, lit, v, why, off) \
	{ name, (const uint8_t *)(lit), sizeof(lit) - 1, v, why, off }

static const struct tcase cases[] = {
	/* PICKLE.md: protocol 0/1 pickles have no PROTO header */
	T("p0 os.system", "cos\nsystem\n(S'id'\ntR.", P, "GLOBAL", 0),
	T("p0 global then garbage", "cos\nsystem\n\xff\xfe", P, "GLOBAL", 0),
	T("p0 global no stop", "cos\nsystem\n", P, "GLOBAL", 0),
	T("p0 global truncated name", "cos\nsys", C, "truncated", 0),
	T("p0 global empty module", "c\nsystem\n.", C, "bad-argument", 0),
	T("p0 global empty name", "cos\n\n.", C, "bad-argument", 0),
	T("global bad utf8", "c\xff\nx\n.", C, "bad-argument", 0),
	T("global surrogate", "c\xed\xa0\x80\nx\n.", C, "bad-argument", 0),
	T("global overlong", "c\xc0\xaf\nx\n.", C, "bad-argument", 0),
	T("global truncated utf8", "cos\xc3\nx\n.", C, "bad-argument", 0),
	T("global emoji", "c\xf0\x9f\x98\x80\nx\n.", P, "GLOBAL", 0),
	T("global CR kept", "cos\r\nsystem\r\n", P, "GLOBAL", 0),
	T("global after data", "(lp0\nI1\naVa\np1\nacos\nsystem\n.", P, "GLOBAL", 16),
	T("inst", "(ios\nsystem\n.", P, "INST", 1),
	T("inst args before", "(S'id'\nios\nsystem\n.", P, "INST", 7),
	T("inst no mark", "ios\nsystem\n.", C, "no-mark", 0),
	T("inst non-ascii", "(i\xc3\xa9\nx\n.", C, "bad-argument", 1),
	T("inst empty", "(i\n", C, "bad-argument", 1),
	T("persid", "Pid\n.", P, "PERSID", 0),
	T("persid empty id", "P\n.", P, "PERSID", 0),
	T("persid non-ascii", "P\x80\n.", C, "bad-argument", 0),
	T("persid truncated", "Pid", C, "truncated", 0),
	T("binpersid", "NQ.", P, "BINPERSID", 1),
	T("binpersid empty", "Q.", C, "stack-underflow", 0),
	T("binpersid above mark", "N(Q.", C, "stack-underflow", 2),

	/* PICKLE.md: lenient INT/LONG forms are accepted, scanning goes on */
	T("INT 0x10", "I0x10\ncos\nsystem\n.", P, "GLOBAL", 6),
	T("INT 010", "I010\ncos\nsystem\n.", P, "GLOBAL", 5),
	T("INT 0b101", "I0b101\ncos\nsystem\n.", P, "GLOBAL", 7),
	T("INT 1_000", "I1_000\ncos\nsystem\n.", P, "GLOBAL", 7),
	T("INT space 12", "I 12\ncos\nsystem\n.", P, "GLOBAL", 5),
	T("INT +5", "I+5\ncos\nsystem\n.", P, "GLOBAL", 4),
	T("INT 0x1", "I0x1\ncos\nsystem\n.", P, "GLOBAL", 5),
	T("INT bool 01", "I01\ncos\nsystem\n.", P, "GLOBAL", 4),
	T("INT -0x_f", "I-0x_f\ncos\nsystem\n.", P, "GLOBAL", 7),
	T("INT 1 trailing space", "I1 \ncos\nsystem\n.", P, "GLOBAL", 4),
	T("INT huge", "I99999999999999999999999\ncos\nsystem\n.", P, "GLOBAL", 25),
	T("INT NUL ends it", "I\x00" "junk\ncos\nsystem\n.", P, "GLOBAL", 7),
	T("INT only NUL", "I\x00\ncos\nsystem\n.", P, "GLOBAL", 3),
	T("INT 08 rejected", "I08\ncos\nsystem\n.", C, "bad-argument", 0),
	T("INT 1__0 rejected", "I1__0\ncos\nsystem\n.", C, "bad-argument", 0),
	T("INT 1_ rejected", "I1_\ncos\nsystem\n.", C, "bad-argument", 0),
	T("INT _1 rejected", "I_1\ncos\nsystem\n.", C, "bad-argument", 0),
	T("INT 0x rejected", "I 0x\ncos\nsystem\n.", C, "bad-argument", 0),
	T("INT empty rejected", "I\ncos\nsystem\n.", C, "bad-argument", 0),
	T("INT letters rejected", "Iabc\ncos\nsystem\n.", C, "bad-argument", 0),
	T("INT truncated", "I12", C, "truncated", 0),
	T("LONG 12", "L12\ncos\nsystem\n.", P, "GLOBAL", 4),
	T("LONG 12L", "L12L\ncos\nsystem\n.", P, "GLOBAL", 5),
	T("LONG 0o17", "L0o17\ncos\nsystem\n.", P, "GLOBAL", 6),
	T("LONG 012 rejected", "L012\ncos\nsystem\n.", C, "bad-argument", 0),
	T("LONG L rejected", "LL\ncos\nsystem\n.", C, "bad-argument", 0),
	T("LONG 1.5 rejected", "L1.5\ncos\nsystem\n.", C, "bad-argument", 0),
	T("FLOAT", "F1.5\ncos\nsystem\n.", P, "GLOBAL", 5),
	T("FLOAT -nan", "F-nan\ncos\nsystem\n.", P, "GLOBAL", 6),
	T("FLOAT infinity", "FInfinity\ncos\nsystem\n.", P, "GLOBAL", 10),
	T("FLOAT .5e-3", "F.5e-3\ncos\nsystem\n.", P, "GLOBAL", 7),
	T("FLOAT 1e rejected", "F1e\ncos\nsystem\n.", C, "bad-argument", 0),
	T("FLOAT trailing space", "F1.5 \ncos\nsystem\n.", C, "bad-argument", 0),
	T("FLOAT junk", "Fx\ncos\nsystem\n.", C, "bad-argument", 0),
	T("STRING quoted", "S'os'\ncos\nsystem\n.", P, "GLOBAL", 6),
	T("STRING unquoted", "S'os\ncos\nsystem\n.", C, "bad-argument", 0),
	T("STRING one quote", "S'\ncos\nsystem\n.", C, "bad-argument", 0),
	T("STRING mixed quotes", "S'os\"\n.", C, "bad-argument", 0),
	T("UNICODE", "Vos\nVsystem\n\x93.", P, "STACK_GLOBAL", 12),

	/* PUT/GET text arguments: base 10 with PyLong leniency */
	T("PUT 1_0 GET 10", "Np1_0\n0g10\ncos\nsystem\n.", P, "GLOBAL", 11),
	T("PUT +1 GET 1", "Np+1\n0g1\ncos\nsystem\n.", P, "GLOBAL", 9),
	T("PUT/GET spaces", "Np 1 \ng1\ncos\nsystem\n.", P, "GLOBAL", 9),
	T("GET -0", "Np0\ng-0\ncos\nsystem\n.", P, "GLOBAL", 8),
	T("GET absent", "Np1\n0g2\ncos\nsystem\n.", C, "memo-missing", 5),
	T("GET +1 absent", "Ng+1\n.", C, "memo-missing", 1),
	T("GET negative", "Np1\ng-1\n.", C, "memo-missing", 4),
	T("GET 0x0 rejected", "Np0\ng0x0\n.", C, "bad-argument", 4),
	T("PUT 0x1 rejected", "Np0x1\n.", C, "bad-argument", 1),
	T("PUT -1 rejected", "Np-1\n.", C, "bad-argument", 1),
	T("PUT empty stack", "p1\ncos\nsystem\n.", C, "stack-underflow", 0),
	T("PUT above mark", "N(p1\n.", C, "stack-underflow", 2),
	T("BINGET absent", "h\x00.", C, "memo-missing", 0),
	T("LONG_BINGET absent", "Nq\x05j\x06\x00\x00\x00.", C, "memo-missing", 3),
	T("BINPUT empty", "q\x00.", C, "stack-underflow", 0),

	/* STACK_GLOBAL and operand typing */
	T("p5 STACK_GLOBAL", "\x80\x05\x8c\x02os\x8c\x06system\x93.", P, "STACK_GLOBAL", 14),
	T("p4 framed", "\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.",
	  P, "STACK_GLOBAL", 23),
	T("BINUNICODE operands", "\x80\x05X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93.",
	  P, "STACK_GLOBAL", 20),
	T("BINUNICODE8 operands",
	  "\x8d\x02\x00\x00\x00\x00\x00\x00\x00os\x8c\x06system\x93.", P, "STACK_GLOBAL", 19),
	T("BINSTRING operands", "U\x02osT\x06\x00\x00\x00system\x93.", P, "STACK_GLOBAL", 15),
	T("STACK_GLOBAL missing STOP", "\x80\x04\x8c\x02os\x8c\x06system\x93", P,
	  "STACK_GLOBAL", 14),
	T("STACK_GLOBAL empty", "\x93.", C, "stack-underflow", 0),
	T("STACK_GLOBAL one", "\x8c\x02os\x93.", C, "stack-underflow", 4),
	T("STACK_GLOBAL above mark", "\x8c\x02os(\x8c\x01x\x93.", C, "stack-underflow", 8),
	T("STACK_GLOBAL bytes name", "\x8c\x02osC\x06system\x93.", C, "stack-global-not-str", 12),
	T("STACK_GLOBAL bytes module", "C\x02os\x8c\x06system\x93.", C, "stack-global-not-str", 12),
	T("STACK_GLOBAL int", "\x8c\x02osK\x01\x93.", C, "stack-global-not-str", 6),
	T("STACK_GLOBAL None", "\x8c\x02osN\x93.", C, "stack-global-not-str", 5),
	T("STACK_GLOBAL tuple", "\x8c\x02os\x8c\x01x\x86\x93.", C, "stack-underflow", 8),
	T("STACK_GLOBAL DUP", "\x8c\x02os2\x93.", P, "STACK_GLOBAL", 5),
	T("memo-fetched strings",
	  "\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93.", P, "STACK_GLOBAL", 18),
	T("memoized then int fetched", "K\x01\x94\x8c\x02osh\x00\x93.", C,
	  "stack-global-not-str", 9),
	T("MEMOIZE after PUT 0 goes to 1, GET 0 is int",
	  "K\x01p0\n0\x8c\x02os\x94h\x00\x93.", C, "stack-global-not-str", 13),
	T("MEMOIZE after PUT 0 goes to 1, GET 1 is str",
	  "K\x01p0\n0\x8c\x02os\x94h\x01\x93.", P, "STACK_GLOBAL", 13),
	T("PUT overwrites str with int", "\x8c\x02osq\x00K\x01q\x00h\x00\x93.", C,
	  "stack-global-not-str", 12),
	T("PUT 5 text then GET 5", "\x8c\x02osp5\n\x8c\x01xg5\n\x93.", P, "STACK_GLOBAL", 13),
	T("STRING then STACK_GLOBAL", "S'os'\nS'system'\n\x93.", P, "STACK_GLOBAL", 16),
	T("readonly buffer of str", "\x8c\x02os\x8c\x01x\x98\x93.", C, "not-a-buffer", 7),
	T("readonly buffer of bytes", "C\x01" "a\x98\x8c\x01x\x93.", C, "stack-global-not-str", 7),
	T("readonly buffer of None", "N\x98.", C, "not-a-buffer", 1),
	T("readonly buffer of STRING", "S'a'\n\x98.", C, "stop", 6),
	T("NEXT_BUFFER kept conservative", "\x97\x8c\x02os\x93.", P, "STACK_GLOBAL", 5),

	/* EXT: any code > 0 reaches the extension registry */
	T("EXT1", "\x82\x01.", P, "EXT1", 0),
	T("EXT1 code 0", "\x82\x00.", C, "bad-ext-code", 0),
	T("EXT2", "\x83\x00\x01", P, "EXT2", 0),
	T("EXT2 code 0", "\x83\x00\x00.", C, "bad-ext-code", 0),
	T("EXT4", "\x84\x01\x00\x00\x00", P, "EXT4", 0),
	T("EXT4 max", "\x84\xff\xff\xff\x7f.", P, "EXT4", 0),
	T("EXT4 negative", "\x84\xff\xff\xff\xff.", C, "bad-ext-code", 0),
	T("EXT4 zero", "\x84\x00\x00\x00\x00.", C, "bad-ext-code", 0),
	T("EXT1 truncated", "\x82", C, "truncated", 0),
	T("msgpack fixmap 2 keys is EXT1", "\x82\xa1" "a\x01\xa1" "b\x02", P, "EXT1", 0),

	/* calls need a callable: data objects are never callable */
	T("REDUCE on data", "NN)R.", C, "not-callable", 3),
	T("REDUCE empty", "R.", C, "stack-underflow", 0),
	T("OBJ on data", "(NNo.", C, "not-callable", 3),
	T("OBJ no mark", "o.", C, "no-mark", 0),
	T("OBJ nothing above mark", "(o.", C, "stack-underflow", 1),
	T("NEWOBJ on data", "NN\x81.", C, "not-callable", 2),
	T("NEWOBJ_EX on data", "NNN\x92.", C, "not-callable", 3),
	T("NEWOBJ_EX short", "NN\x92.", C, "stack-underflow", 2),

	/* marks and stack underflow */
	T("POP empty", "0.", C, "stack-underflow", 0),
	T("POP pops mark", "(0N.", C, "stop", 3),
	T("POP item above mark", "(N0N.", C, "stop", 4),
	T("POP_MARK no mark", "1.", C, "no-mark", 0),
	T("POP_MARK then GLOBAL", "(NN1cos\nsystem\n.", P, "GLOBAL", 4),
	T("DUP empty", "2.", C, "stack-underflow", 0),
	T("TUPLE no mark", "t.", C, "no-mark", 0),
	T("TUPLE1 empty", "\x85.", C, "stack-underflow", 0),
	T("TUPLE3 short", "NN\x87.", C, "stack-underflow", 2),
	T("TUPLE2 above mark", "N(N\x86.", C, "stack-underflow", 3),
	T("APPEND ok", "]N" "acos\nsystem\n.", P, "GLOBAL", 3),
	T("APPEND short", "Nacos\nsystem\n.", C, "stack-underflow", 1),
	T("APPEND above mark", "(Nacos\nsystem\n.", C, "stack-underflow", 2),
	T("APPENDS ok", "](K\x01" "ecos\nsystem\n.", P, "GLOBAL", 5),
	T("APPENDS no list", "(I1\nK\x02" "ecos\nsystem\n.", C, "stack-underflow", 6),
	T("APPENDS no mark", "]I1\necos\nsystem\n.", C, "no-mark", 4),
	T("SETITEM ok", "}NNscos\nsystem\n.", P, "GLOBAL", 4),
	T("SETITEM short", "NNscos\nsystem\n.", C, "stack-underflow", 2),
	T("SETITEM above mark", "(NNscos\nsystem\n.", C, "stack-underflow", 3),
	T("SETITEMS ok", "}(K\x01K\x02" "ucos\nsystem\n.", P, "GLOBAL", 7),
	T("SETITEMS empty ok", "}(ucos\nsystem\n.", P, "GLOBAL", 3),
	T("SETITEMS odd", "}(K\x01u.", C, "odd-items", 4),
	T("SETITEMS no dict", "(K\x01K\x02u.", C, "stack-underflow", 5),
	T("DICT odd", "(K\x01" "d.", C, "odd-items", 3),
	T("DICT ok", "(K\x01K\x02" "dcos\nsystem\n.", P, "GLOBAL", 6),
	T("ADDITEMS ok", "\x8f(K\x01\x90" "cos\nsystem\n.", P, "GLOBAL", 5),
	T("ADDITEMS no set", "(\x90" "cos\nsystem\n.", C, "stack-underflow", 1),
	T("FROZENSET", "(NN\x91\x85\x85.", C, "stop", 6),
	T("FROZENSET then TUPLE2", "(NN\x91\x86.", C, "stack-underflow", 4),
	T("BUILD ok", "NNbcos\nsystem\n.", P, "GLOBAL", 3),
	T("BUILD short", "Nbcos\nsystem\n.", C, "stack-underflow", 1),
	T("BUILD above mark", "(NNbcos\nsystem\n.", P, "GLOBAL", 4),
	T("BUILD mark below", "N(Nbcos\nsystem\n.", C, "stack-underflow", 3),
	T("LIST", "(NNl\x85.", C, "stop", 5),

	/* PROTO, FRAME, STOP */
	T("PROTO twice and later", "\x80\x02\x80\x05\x80\x00" "cos\nsystem\n.", P, "GLOBAL", 6),
	T("PROTO mid-stream", "\x80\x02N\x80\x04" "cos\nsystem\n.", P, "GLOBAL", 5),
	T("PROTO 6", "\x80\x06" "cos\nsystem\n.", C, "bad-protocol", 0),
	T("FRAME then GLOBAL", "\x95\x0c\x00\x00\x00\x00\x00\x00\x00" "cos\nsystem\n.", P, "GLOBAL", 9),
	T("frame ends, unframed opcodes follow",
	  "\x95\x01\x00\x00\x00\x00\x00\x00\x00N\x8c\x02os\x8c\x01x\x93", P, "STACK_GLOBAL", 17),
	/* A read running past a FRAME's end: pickle.load(file) would drop the
	 * rest of the frame and read on from the file, loads() would not. */
	T("straddle: GLOBAL line", "\x95\x05\x00\x00\x00\x00\x00\x00\x00" "cos\nsystem\n.", P,
	  "FRAME-straddle", 9),
	T("straddle: fixed arg", "\x95\x02\x00\x00\x00\x00\x00\x00\x00M\x01\x02.", P,
	  "FRAME-straddle", 9),
	T("arg starting at frame end is no straddle",
	  "\x95\x01\x00\x00\x00\x00\x00\x00\x00K\x01.", C, "stop", 11),
	T("straddle: INT line", "\x95\x02\x00\x00\x00\x00\x00\x00\x00I1\n.", P, "FRAME-straddle", 9),
	T("straddle: BINUNICODE body", "\x95\x04\x00\x00\x00\x00\x00\x00\x00\x8c\x03osx.", P,
	  "FRAME-straddle", 9),
	T("no straddle: BINBYTES body (ReadInto)",
	  "\x95\x04\x00\x00\x00\x00\x00\x00\x00" "C\x03" "abc.", C, "stop", 14),
	T("straddle: nested FRAME longer", "\x95\x0a\x00\x00\x00\x00\x00\x00\x00"
	  "\x95\x05\x00\x00\x00\x00\x00\x00\x00N.", P, "FRAME-straddle", 9),
	T("nested FRAME inside", "\x95\x0b\x00\x00\x00\x00\x00\x00\x00"
	  "\x95\x01\x00\x00\x00\x00\x00\x00\x00NN.", C, "stop", 20),
	T("straddle truncated: both paths raise", "\x95\x02\x00\x00\x00\x00\x00\x00\x00I12", C,
	  "truncated", 9),
	T("FRAME mid-stream", "N\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.",
	  P, "STACK_GLOBAL", 22),
	T("FRAME overflow", "\x95\xff\xff\xff\xff\xff\xff\xff\xff" "cos\nsystem\n.", C,
	  "length-too-large", 0),
	T("FRAME 2^56", "\x95\x00\x00\x00\x00\x00\x00\x00\x01" "cos\nsystem\n.", C,
	  "length-too-large", 0),
	T("FRAME truncated", "\x80\x04\x95\x01\x00", C, "truncated", 2),
	T("FRAME header straddles FRAME", "\x95\x03\x00\x00\x00\x00\x00\x00\x00N\x95\x01"
	  "\x00\x00\x00\x00\x00\x00\x00N.", P, "FRAME-straddle", 10),
	T("STOP first", "N.cos\nsystem\n", C, "stop", 1),
	/* load() pops the result after STOP: an empty stack raises */
	T("STOP empty stack", ".", C, "stack-underflow", 0),
	T("STOP above mark", "N(.", C, "stack-underflow", 2),
	T("STOP mark below item", "(N.", C, "stop", 2),
	T("STOP inside text arg is data", "S'.'\ncos\nsystem\n.", P, "GLOBAL", 5),

	/* counted bodies */
	T("BINBYTES skipped", "B\x03\x00\x00\x00" "c\nXcos\nsystem\n.", P, "GLOBAL", 8),
	T("SHORT_BINBYTES skipped", "C\x03" "c\nXcos\nsystem\n.", P, "GLOBAL", 5),
	T("BINSTRING skipped", "T\x01\x00\x00\x00\xff" "cos\nsystem\n.", P, "GLOBAL", 6),
	T("LONG1 skipped", "\x8a\x02\x93\x93" "cos\nsystem\n.", P, "GLOBAL", 4),
	T("LONG1 zero", "\x8a\x00" "cos\nsystem\n.", P, "GLOBAL", 2),
	T("LONG4 negative", "\x8b\xff\xff\xff\xff" "cos\nsystem\n.", C, "negative-length", 0),
	T("LONG4", "\x8b\x01\x00\x00\x00\x05" "cos\nsystem\n.", P, "GLOBAL", 6),
	T("BINBYTES8 2^56", "\x8e\x00\x00\x00\x00\x00\x00\x00\x01" "cos\nsystem\n.", C,
	  "length-too-large", 0),
	T("BYTEARRAY8", "\x96\x01\x00\x00\x00\x00\x00\x00\x00" "c" "cos\nsystem\n.", P, "GLOBAL", 10),
	T("BINUNICODE truncated", "X\x05\x00\x00\x00" "ab", C, "truncated", 0),

	/* truncation */
	T("empty", "", C, "truncated", 0),
	T("NONE only", "N", C, "truncated", 1),
	T("PROTO only", "\x80", C, "truncated", 0),
	T("p4 header only", "\x80\x04\x95", C, "truncated", 2),
	T("p4 truncated operand", "\x80\x04\x8c\x02os\x8c\x06sys", C, "truncated", 6),

	/* JSON, msgpack, binary payloads: decided in the first bytes */
	T("json object", "{\"a\": 1}", C, "not-an-opcode", 0),
	T("json array", "[1, 2]", C, "not-an-opcode", 0),
	T("json string", "\"s\"", C, "not-an-opcode", 0),
	T("json 0", "0", C, "stack-underflow", 0),
	T("json 12", "12", C, "no-mark", 0),
	T("json 2", "2", C, "stack-underflow", 0),
	T("json true", "true", C, "no-mark", 0),
	T("json false", "false", C, "not-an-opcode", 0),
	T("json null", "null", C, "not-an-opcode", 0),
	T("json space", " {}", C, "not-an-opcode", 0),
	T("msgpack []", "\x90", C, "no-mark", 0),
	T("msgpack [1,2,3]", "\x93\x01\x02\x03", C, "stack-underflow", 0),
	T("msgpack ['a',1]", "\x92\xa1" "a\x01", C, "stack-underflow", 0),
	T("msgpack 4 items", "\x94\x01\x02\x03\x04", C, "stack-underflow", 0),
	T("msgpack 5 small ints", "\x95\x01\x02\x03\x04\x05", C, "truncated", 0),
	T("msgpack 5 str", "\x95\xa8" "abcdefgh\x01\x02\x03\x04", C, "length-too-large", 0),
	T("msgpack 7 items", "\x97\x01\x02\x03\x04\x05\x06\x07", C, "not-an-opcode", 1),
	T("msgpack 8 items", "\x98\x01\x02\x03\x04\x05\x06\x07\x08", C, "stack-underflow", 0),
	T("msgpack array16", "\xdc\x00\x10", C, "not-an-opcode", 0),
	T("msgpack {}", "\x80", C, "truncated", 0),
	T("msgpack 1-key map", "\x81\xa1" "a\x01", C, "stack-underflow", 0),
	T("msgpack 5-key map", "\x85\xa1" "a\x01", C, "stack-underflow", 0),
	T("float32 tensor", "\x00\x00\x80\x3f\x00\x00\x00\x40", C, "not-an-opcode", 0),
	T("float32 tensor 2", "\xcd\xcc\xcc\x3d", C, "not-an-opcode", 0),
	T("gzip", "\x1f\x8b\x08\x00", C, "not-an-opcode", 0),
	T("jpeg", "\xff\xd8\xff\xe0", C, "not-an-opcode", 0),
	/* PNG: NEWFALSE, then PERSID "NG\r": flagged, as any PERSID would be */
	T("png", "\x89PNG\r\n\x1a\n", P, "PERSID", 1),
	/* "h" is BINGET: memo index 'e' is absent */
	T("text line", "hello world\n", C, "memo-missing", 0),
};

static struct result run_split(const uint8_t *d, size_t len, size_t a, size_t b)
{
	/* Feed [0,a), [a,b), [b,len). */
	struct pscan_state st;
	struct result r;
	poison(&st);
	pscan_init(&st);
	pscan_feed(&st, d, a);
	pscan_feed(&st, d + a, b - a);
	pscan_feed(&st, d + b, len - b);
	r.v = pscan_finish(&st);
	r.reason = pscan_reason(&st);
	r.off = pscan_offset(&st);
	/* Final: more input and a second finish change nothing. */
	if (pscan_feed(&st, (const uint8_t *)"cos\nsystem\n", 11) != r.v ||
	    pscan_finish(&st) != r.v || pscan_offset(&st) != r.off)
		r.reason = "NOT-FINAL";
	return r;
}

static struct result run_bytewise(const uint8_t *d, size_t len)
{
	struct pscan_state st;
	struct result r;
	poison(&st);
	pscan_init(&st);
	for (size_t i = 0; i < len; i++)
		pscan_feed(&st, d + i, 1);
	r.v = pscan_finish(&st);
	r.reason = pscan_reason(&st);
	r.off = pscan_offset(&st);
	return r;
}

static int same(struct result a, struct result b)
{
	return a.v == b.v && strcmp(a.reason, b.reason) == 0 && a.off == b.off;
}

/* full: all two-chunk splits (quadratic; skipped for big inputs, which get
 * a sample of three-chunk splits instead). */
static void check(const char *name, const uint8_t *d, size_t len,
		  enum pscan_verdict v, const char *why, long long off)
{
	struct result whole = run_split(d, len, len, len);
	int ok = 1;

	if (whole.v != v || (why && strcmp(whole.reason, why) != 0) ||
	    (off != ANYOFF && whole.off != (uint64_t)off)) {
		printf("FAIL %s: got %s %s %llu, want %s %s %lld\n", name,
		       vname(whole.v), whole.reason, (unsigned long long)whole.off,
		       vname(v), why ? why : "*", off);
		ok = 0;
	}
	if (len <= 4096) {
		for (size_t a = 0; a <= len && ok; a++) {
			struct result r = run_split(d, len, a, a);
			if (!same(r, whole)) {
				printf("FAIL %s: split at %zu gives %s %s %llu\n", name, a,
				       vname(r.v), r.reason, (unsigned long long)r.off);
				ok = 0;
			}
		}
	} else {
		for (size_t k = 1; k < 64 && ok; k++) {
			size_t a = len * k / 64, b = a + (k * 7919) % (len - a + 1);
			if (!same(run_split(d, len, a, b), whole)) {
				printf("FAIL %s: split at %zu/%zu differs\n", name, a, b);
				ok = 0;
			}
		}
	}
	if (ok && !same(run_bytewise(d, len), whole)) {
		printf("FAIL %s: byte-by-byte differs\n", name);
		ok = 0;
	}
	if (ok)
		n_pass++;
	else
		n_fail++;
}

/* ---- built-at-runtime cases ---------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL) {
			perror("realloc");
			exit(2);
		}
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void rep(struct buf *b, const char *s, size_t n, int times)
{
	for (int i = 0; i < times; i++)
		put(b, s, n);
}

static void le32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	put(b, x, 4);
}

static void built_cases(void)
{
	struct buf b = { 0 };

	/* 30 marks are tracked exactly: the 31st TUPLE finds no mark. */
	b.n = 0;
	rep(&b, "(", 1, 30);
	puts_(&b, "N");
	rep(&b, "t", 1, 31);
	puts_(&b, "cos\nsystem\n.");
	check("30 marks, 31 tuples", b.p, b.n, C, "no-mark", 61);

	/* 70 marks overflow the mark ring: popping below it makes the model
	 * imprecise, so the missing mark is no longer provable (CPython would
	 * raise; the scanner stays conservative). */
	b.n = 0;
	rep(&b, "(", 1, 70);
	puts_(&b, "N");
	rep(&b, "t", 1, 71);
	puts_(&b, "cos\nsystem\n.");
	check("70 marks, 71 tuples: conservative", b.p, b.n, P, "GLOBAL", 142);

	/* ...but 70 marks popped 70 times is still exact where it is known. */
	b.n = 0;
	rep(&b, "(", 1, 70);
	puts_(&b, "N");
	rep(&b, "t", 1, 70);
	puts_(&b, "\x8c\x02os\x93.");
	check("70 marks balanced then STACK_GLOBAL", b.p, b.n, P, "STACK_GLOBAL", 145);

	/* Deep stack: kinds of items beyond the top 64 are unknown. */
	b.n = 0;
	puts_(&b, "\x8c\x02os");
	rep(&b, "N", 1, 100);
	rep(&b, "0", 1, 100);
	puts_(&b, "\x8c\x06system\x93.");
	check("100 items deep, str below", b.p, b.n, P, "STACK_GLOBAL", 212);
	b.n = 0;
	puts_(&b, "K\x01");
	rep(&b, "N", 1, 30);
	rep(&b, "0", 1, 30);
	puts_(&b, "\x8c\x06system\x93.");
	check("30 items deep, int below", b.p, b.n, C, "stack-global-not-str", 70);

	/* Memo: 2050 MEMOIZEs are tracked exactly (map + far table). */
	b.n = 0;
	puts_(&b, "N");
	rep(&b, "\x94", 1, 2050);
	puts_(&b, "j");
	le32(&b, 2049);
	puts_(&b, "j");
	le32(&b, 2050);
	puts_(&b, ".");
	check("memo 2050 entries, get 2050 absent", b.p, b.n, C, "memo-missing", 2056);

	/* 2100 MEMOIZEs overflow the far table: lookups become "maybe". */
	b.n = 0;
	puts_(&b, "N");
	rep(&b, "\x94", 1, 2100);
	puts_(&b, "j");
	le32(&b, 5000);
	puts_(&b, ".");
	check("memo overflow: conservative", b.p, b.n, C, "stop", 2106);

	/* Large explicit memo indexes. */
	b.n = 0;
	puts_(&b, "\x8c\x02osr");
	le32(&b, 1000000);
	puts_(&b, "\x8c\x01xj");
	le32(&b, 1000000);
	puts_(&b, "\x93.");
	check("far memo index", b.p, b.n, P, "STACK_GLOBAL", 17);
	b.n = 0;
	puts_(&b, "K\x01r");
	le32(&b, 3000000000u);
	puts_(&b, "\x8c\x01xj");
	le32(&b, 3000000000u);
	puts_(&b, "\x93.");
	check("far memo index, int", b.p, b.n, C, "stack-global-not-str", 15);

	/* Long text arguments are not parsed: assumed valid. */
	b.n = 0;
	puts_(&b, "I");
	rep(&b, "x", 1, 300);
	puts_(&b, "\ncos\nsystem\n.");
	check("long INT arg: conservative", b.p, b.n, P, "GLOBAL", 302);
	b.n = 0;
	puts_(&b, "c");
	rep(&b, "m", 1, 5000);
	puts_(&b, "\nsystem\n.");
	check("long GLOBAL module", b.p, b.n, P, "GLOBAL", 0);
	b.n = 0;
	puts_(&b, "c");
	rep(&b, "m", 1, 5000);
	puts_(&b, "\xff\nsystem\n.");
	check("long GLOBAL module, bad utf8 at end", b.p, b.n, C, "bad-argument", 0);

	/* 64 MiB BINBYTES8 body: skipped by counting. */
	size_t big = (size_t)64 << 20;
	b.n = 0;
	puts_(&b, "\x80\x04\x8e");
	uint8_t len8[8] = { 0, 0, 0, 4, 0, 0, 0, 0 }; /* 64 MiB */
	put(&b, len8, 8);
	size_t body = b.n;
	if (b.cap < body + big + 64) {
		b.cap = body + big + 64;
		b.p = realloc(b.p, b.cap);
	}
	memset(b.p + body, 'c', big);
	b.n = body + big;
	puts_(&b, "cos\nsystem\n.");
	check("64 MiB BINBYTES8 then GLOBAL", b.p, b.n, P, "GLOBAL", (long long)(body + big));
	check("64 MiB BINBYTES8 truncated", b.p, body + big - 1, C, "truncated", 2);

	free(b.p);
}

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *t = &cases[i];
		check(t->name, t->data, t->len, t->verdict, t->reason, t->off);
	}
	built_cases();
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
