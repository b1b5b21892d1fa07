/* Unit tests for pickle_scan beyond the verdict table: the API contract
 * (need-more, finish, re-init, state size), the first-byte fast path
 * against the emulator, the option sets (stock, no persistent_load, no
 * buffers, unregistered extensions) and collect mode (the imports
 * reported, whole and byte by byte). The verdict table is in
 * test_pickle_scan_verdicts.c. */
#include "zmtpfw/pickle_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pickle_scan_test_util.h"

/* ---- first-byte fast path --------------------------------------------- */

static struct result run_opts(const uint8_t *d, size_t len, unsigned opts)
{
	struct pscan_state st;
	struct result r;
	poison(&st);
	pscan_init_opts(&st, opts);
	pscan_feed(&st, d, len);
	r.v = pscan_finish(&st);
	r.reason = pscan_reason(&st);
	r.off = pscan_offset(&st);
	return r;
}

/* The fast path decides some frames by their first byte alone. After a
 * PROTO header the emulator runs from the same (empty) stack without it:
 * every byte, followed by assorted tails, must get the same verdict and
 * reason there, 2 bytes later, under every option set. */
static void fast_path_checks(void)
{
	static const char *const tails[] = { "", "N.", "cos\nsystem\n.", "\x01\x02\x03\x04\x05\x06\x07\x08",
					     "\n(S'x'\n.", "\x8c\x02os\x8c\x01x\x93." };
	static const unsigned optsets[] = { 0, PSCAN_EXT_UNREGISTERED, PSCAN_NO_PERSID, PSCAN_NO_BUFFERS,
					     PSCAN_STOCK };
	uint8_t a[64], b[66];
	int bad = 0, decided_fast = 0;

	for (unsigned o = 0; o < sizeof(optsets) / sizeof(optsets[0]); o++) {
		for (int c = 0; c < 256; c++) {
			for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
				size_t tl = strlen(tails[t]);
				a[0] = (uint8_t)c;
				memcpy(a + 1, tails[t], tl);
				b[0] = 0x80;
				b[1] = 0x02;
				memcpy(b + 2, a, tl + 1);
				struct result x = run_opts(a, tl + 1, optsets[o]);
				struct result y = run_opts(b, tl + 3, optsets[o]);
				if (x.v != y.v || strcmp(x.reason, y.reason) || x.off + 2 != y.off) {
					printf("FAIL fast path: byte 0x%02x tail %zu opts %u: %s %s %llu vs %s %s %llu\n",
					       c, t, optsets[o], vname(x.v), x.reason, (unsigned long long)x.off,
					       vname(y.v), y.reason, (unsigned long long)y.off);
					bad = 1;
				}
				decided_fast += t == 2 && o == 0 && x.v == C && x.off == 0;
				/* the relay skips the scanner on these bytes: the
				 * emulator must decide CLEAN at them, whatever follows */
				if (pscan_first_byte_clean((uint8_t)c) && !(x.v == C && x.off == 0)) {
					printf("FAIL pscan_first_byte_clean(0x%02x) = %d, emulator: %s at %llu\n",
					       c, pscan_first_byte_clean((uint8_t)c), vname(x.v),
					       (unsigned long long)x.off);
					bad = 1;
				}
			}
		}
	}
	/* ... and it covers what the emulator decides at byte 0 for the tail that
	 * cannot finish an argument (all but the opcodes needing more). */
	int table = 0;
	for (int c = 0; c < 256; c++)
		table += pscan_first_byte_clean((uint8_t)c);
	if (table < 150) {
		printf("FAIL pscan_first_byte_clean: only %d bytes\n", table);
		bad = 1;
	}
	/* Sanity: most bytes are decided at offset 0 (not opcodes, underflow). */
	if (decided_fast < 150) {
		printf("FAIL fast path: only %d first bytes decided at 0\n", decided_fast);
		bad = 1;
	}
	if (bad)
		n_fail++;
	else
		n_pass++;
}

/* ---- options ------------------------------------------------------------- */

struct ocase {
	const char *name;
	const char *data;
	size_t len;
	unsigned opts;
	enum pscan_verdict v;
	const char *reason;
	uint64_t off;
};

#define O(name, lit, opts, v, why, off) { name, lit, sizeof(lit) - 1, opts, v, why, off }

static const struct ocase ocases[] = {
	O("EXT1 default", "\x82\x01.", 0, P, "EXT1", 0),
	O("EXT1 unregistered", "\x82\x01.", PSCAN_EXT_UNREGISTERED, C, "ext-unregistered", 0),
	O("EXT4 unregistered", "N\x84\x01\x00\x00\x00", PSCAN_STOCK, C, "ext-unregistered", 1),
	O("EXT1 code 0 still bad code", "\x82\x00.", PSCAN_STOCK, C, "bad-ext-code", 0),
	O("EXT2 truncated", "\x83\x01", PSCAN_STOCK, C, "truncated", 0),
	O("msgpack 2-key map stock", "\x82\xa1" "a\x01\xa1" "b\x02", PSCAN_STOCK, C, "ext-unregistered", 0),
	O("PERSID no persistent_load", "Pid\n.", PSCAN_NO_PERSID, C, "no-persistent-load", 0),
	O("PERSID raises before its line", "NP", PSCAN_NO_PERSID, C, "no-persistent-load", 1),
	O("BINPERSID no persistent_load", "Q.", PSCAN_STOCK, C, "no-persistent-load", 0),
	O("BINPERSID default", "NQ.", PSCAN_EXT_UNREGISTERED, P, "BINPERSID", 1),
	O("GLOBAL stock", "cos\nsystem\n.", PSCAN_STOCK, P, "GLOBAL", 0),
	O("STACK_GLOBAL stock", "\x8c\x02os\x8c\x01x\x93", PSCAN_STOCK, P, "STACK_GLOBAL", 7),
	O("EXT then GLOBAL stock", "\x82\x01" "cos\nsystem\n.", PSCAN_STOCK, C, "ext-unregistered", 0),
	O("NEXT_BUFFER without buffers=", "\x97\x8c\x02os\x93.", PSCAN_NO_BUFFERS, C, "no-buffers", 0),
	O("NEXT_BUFFER with buffers=", "\x97\x8c\x02os\x93.", PSCAN_NO_PERSID, P, "STACK_GLOBAL", 5),
};

static void option_checks(void)
{
	for (size_t i = 0; i < sizeof(ocases) / sizeof(ocases[0]); i++) {
		const struct ocase *c = &ocases[i];
		struct result r = run_opts((const uint8_t *)c->data, c->len, c->opts);
		int ok = r.v == c->v && strcmp(r.reason, c->reason) == 0 && r.off == c->off;
		/* and byte by byte */
		struct pscan_state st;
		pscan_init_opts(&st, c->opts);
		for (size_t k = 0; k < c->len; k++)
			pscan_feed(&st, (const uint8_t *)c->data + k, 1);
		ok &= pscan_finish(&st) == r.v && strcmp(pscan_reason(&st), r.reason) == 0;
		if (ok) {
			n_pass++;
		} else {
			printf("FAIL options %s: got %s %s %llu\n", c->name, vname(r.v), r.reason,
			       (unsigned long long)r.off);
			n_fail++;
		}
	}
}

/* ---- collect mode ---------------------------------------------------------- */

struct seen {
	char text[1024]; /* "OPCODE@OFF module.name; " for each import */
	size_t n;
};

static void on_import(void *ctx, struct pscan_import *imp)
{
	struct seen *sn = ctx;
	char name[600];
	if (imp->module && imp->name)
		snprintf(name, sizeof(name), "%.*s.%.*s%s", (int)imp->module_len, (const char *)imp->module,
			 (int)imp->name_len, (const char *)imp->name, imp->truncated ? "..." : "");
	else if (imp->shape)
		snprintf(name, sizeof(name), "%s", imp->shape);
	else if (imp->ext_code)
		snprintf(name, sizeof(name), "code=%lld", (long long)imp->ext_code);
	else
		snprintf(name, sizeof(name), "unknown");
	size_t used = strlen(sn->text);
	snprintf(sn->text + used, sizeof(sn->text) - used, "%s@%llu %s; ", imp->opcode,
		 (unsigned long long)imp->offset, name);
	sn->n += imp->shape == NULL; /* shapes are not imports */
}

struct ccase {
	const char *name;
	const char *data;
	size_t len;
	const char *imports;    /* the expected report */
	const char *end;        /* how emulation ended */
	uint64_t end_off;
};

#define CC(name, lit, imports, end, off) { name, lit, sizeof(lit) - 1, imports, end, off }

static const struct ccase ccases[] = {
	CC("two GLOBALs and a call", "cos\nsystem\n(S'id'\ntRcbuiltins\neval\n(Vx\ntR.",
	   "GLOBAL@0 os.system; GLOBAL@20 builtins.eval; ", "stop", 41),
	CC("no import", "(K\x01K\x02l.", "", "stop", 6),
	CC("INST pops to its mark, then BUILD", "(S'a'\nios\nsystem\n}b.",
	   "INST@6 os.system; ", "stop", 19),
	CC("INST result is one item", "(NNios\nsystem\n\x85.", "INST@3 os.system; ", "stop", 15),
	CC("INST result is one item (underflow after)", "(NNios\nsystem\n\x86.",
	   "INST@3 os.system; ", "stack-underflow", 14),
	CC("STACK_GLOBAL names from memo", "\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93)R.",
	   "STACK_GLOBAL@18 os.system; ", "stop", 21),
	CC("STACK_GLOBAL from STRING and UNICODE", "S'os'\nVsystem\n\x93.",
	   "STACK_GLOBAL@14 os.system; ", "stop", 15),
	CC("STACK_GLOBAL escaped operand is unknown", "S'o\\x73'\nVsystem\n\x93.",
	   "STACK_GLOBAL@17 unknown; ", "stop", 18),
	CC("STACK_GLOBAL DUP", "\x8c\x02os2\x93.", "STACK_GLOBAL@5 os.os; ", "stop", 6),
	CC("STACK_GLOBAL BINSTRING", "U\x02osT\x01\x00\x00\x00x\x93.", "STACK_GLOBAL@10 os.x; ", "stop", 11),
	CC("STACK_GLOBAL non-ascii BINSTRING unknown", "U\x02o\xffU\x01x\x93.",
	   "STACK_GLOBAL@7 unknown; ", "stop", 8),
	CC("PUT overwrites memo name", "\x8c\x02osq\x00\x8c\x01xq\x00h\x00\x8c\x01y\x93.",
	   "STACK_GLOBAL@16 x.y; ", "stop", 17),
	CC("long PUT index makes memo names unknown",
	   "\x8c\x02osq\x00p00000000000000000000000000000000000000000000000000000000000000000000000"
	   "0000000000000000000000000000000000000000000000000000000000000001\nh\x00\x8c\x01y\x93.",
	   "STACK_GLOBAL@148 unknown; ", "stop", 149),
	CC("EXT codes", "\x82\x05\x83\x01\x01\x84\xff\xff\xff\x7f.",
	   "EXT1@0 code=5; EXT2@2 code=257; EXT4@5 code=2147483647; ", "stop", 10),
	CC("PERSID and BINPERSID", "Pid\nQ.", "PERSID@0 unknown; BINPERSID@4 unknown; ", "stop", 5),
	CC("import then raise", "cos\nsystem\n0\x93", "GLOBAL@0 os.system; ", "stack-underflow", 12),
	CC("import, then a call may succeed", "cos\nsystem\n)R)R\x93",
	   "GLOBAL@0 os.system; shape@14 unknown-callable; ", "stack-underflow", 15),
	CC("truncated after import", "cos\nsystem\nK", "GLOBAL@0 os.system; ", "truncated", 11),
	CC("FRAME-straddle ends emulation", "\x95\x05\x00\x00\x00\x00\x00\x00\x00" "cos\nsystem\n.",
	   "FRAME-straddle@9 unknown; ", "FRAME-straddle", 9),
	CC("CR kept in names", "cos\r\nsys\r\n.", "GLOBAL@0 os\r.sys\r; ", "stop", 10),
};

static void collect_checks(struct pscan_names *nm)
{
	for (size_t i = 0; i < sizeof(ccases) / sizeof(ccases[0]); i++) {
		const struct ccase *c = &ccases[i];
		struct seen whole = { { 0 }, 0 }, bytes = { { 0 }, 0 };
		struct pscan_state st;
		int ok = 1;

		for (int pass = 0; pass < 2; pass++) {
			struct seen *sn = pass ? &bytes : &whole;
			poison(&st);
			pscan_init(&st);
			pscan_collect(&st, nm, on_import, sn);
			if (pass == 0)
				pscan_feed(&st, (const uint8_t *)c->data, c->len);
			else
				for (size_t k = 0; k < c->len; k++)
					pscan_feed(&st, (const uint8_t *)c->data + k, 1);
			enum pscan_verdict v = pscan_finish(&st);
			ok &= v == (sn->n ? P : C) && pscan_imports(&st) == sn->n;
			ok &= strcmp(pscan_reason(&st), c->end) == 0 && pscan_offset(&st) == c->end_off;
		}
		ok &= strcmp(whole.text, c->imports) == 0 && strcmp(bytes.text, whole.text) == 0;
		if (ok) {
			n_pass++;
		} else {
			printf("FAIL collect %s: got \"%s\" / \"%s\" end %s %llu\n", c->name, whole.text,
			       bytes.text, pscan_reason(&st), (unsigned long long)pscan_offset(&st));
			n_fail++;
		}
	}

	/* Without names memory: imports reported, names unknown. */
	struct seen sn = { { 0 }, 0 };
	struct pscan_state st;
	pscan_init(&st);
	pscan_collect(&st, NULL, on_import, &sn);
	pscan_feed(&st, (const uint8_t *)"cos\nsystem\n\x8c\x01" "a\x8c\x01" "b\x93.", 19);
	if (pscan_finish(&st) == P && strcmp(sn.text, "GLOBAL@0 unknown; STACK_GLOBAL@17 unknown; ") == 0) {
		n_pass++;
	} else {
		printf("FAIL collect without names: %s\n", sn.text);
		n_fail++;
	}

	/* A GLOBAL line longer than PSCAN_NAME_MAX is cut and marked. */
	struct buf { char p[PSCAN_NAME_MAX + 64]; } lb;
	memset(&sn, 0, sizeof(sn));
	size_t n = 0;
	lb.p[n++] = 'c';
	memset(lb.p + n, 'm', PSCAN_NAME_MAX + 5);
	n += PSCAN_NAME_MAX + 5;
	memcpy(lb.p + n, "\nx\n.", 4);
	n += 4;
	pscan_init(&st);
	pscan_collect(&st, nm, on_import, &sn);
	pscan_feed(&st, (const uint8_t *)lb.p, n);
	if (pscan_finish(&st) == P && sn.n == 1 && strstr(sn.text, ".x...; ") &&
	    strncmp(sn.text, "GLOBAL@0 mmm", 12) == 0) {
		n_pass++;
	} else {
		printf("FAIL collect long name: %.80s\n", sn.text);
		n_fail++;
	}
}

static void api_checks(void)
{
	struct pscan_state st;
	int ok = 1;

	pscan_init(&st);
	ok &= pscan_feed(&st, (const uint8_t *)"N", 1) == PSCAN_NEED_MORE;
	ok &= strcmp(pscan_reason(&st), "need-more") == 0;
	ok &= pscan_feed(&st, NULL, 0) == PSCAN_NEED_MORE;
	ok &= pscan_finish(&st) == PSCAN_CLEAN;
	ok &= strcmp(pscan_reason(&st), "truncated") == 0;
	/* Re-init reuses the state. */
	pscan_init(&st);
	ok &= pscan_feed(&st, (const uint8_t *)"\x82\x01", 2) == PSCAN_PICKLE;
	ok &= pscan_finish(&st) == PSCAN_PICKLE;
	ok &= sizeof(st) <= 2048;
	if (ok) {
		n_pass++;
	} else {
		printf("FAIL api checks\n");
		n_fail++;
	}
}

int main(void)
{
	api_checks();
	fast_path_checks();
	option_checks();
	struct pscan_names *nm = malloc(pscan_names_size(PSCAN_NAMES_ARENA, PSCAN_NAMES_MEMO));
	if (nm == NULL)
		return 2;
	nm = pscan_names_init(nm, PSCAN_NAMES_ARENA, PSCAN_NAMES_MEMO);
	collect_checks(nm);
	free(nm);
	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail != 0;
}
