/* scan_cli: `zmtpfw scan [--json] FILE... | -`.
 *
 * Operators replay .pkl crash dumps and load pickled files; this tells,
 * before they do, whether loading a file could import anything. Each file
 * is streamed through the relay's scanner (pickle_scan) in collect mode, in
 * SCAN_CHUNK pieces: memory stays bounded whatever the file's size.
 *
 * A file is a stream of pickles, as `while True: pickle.load(f)` reads it:
 * after a pickle's STOP the next pickle starts at the next byte; the stream
 * ends at end of file or where a pickle would raise. What a file is:
 *  - "pickle with imports": some pickle of it could reach find_class
 *    (GLOBAL, INST, STACK_GLOBAL), persistent_load (PERSID, BINPERSID) or
 *    the copyreg extension registry (EXT1/2/4) before CPython would stop or
 *    raise, or it has a read straddling a FRAME's end (FRAME-straddle),
 *    where loads() and load(file) run different opcodes. Every such import
 *    is listed with its offset, as module.name when the scanner can name it
 *    (GLOBAL and INST always; STACK_GLOBAL when both operands are known
 *    strings), "unknown" otherwise.
 *  - "pickle without imports": the first pickle reaches STOP, i.e.
 *    pickle.load() returns an object, and no pickle reaches an import.
 *  - "not a pickle": pickle.load() raises before returning anything and
 *    before any import: the first byte is not an opcode ("invalid load
 *    key"), an opcode raises on the empty stack, or the data ends or turns
 *    malformed before the first STOP. The reason and its offset say which.
 * Bytes after a pickle that would raise at once are reported as trailing
 * data and ignored: a loading loop stops there.
 *
 * Names are printed with every byte outside printable ASCII (and the
 * backslash) escaped as \xNN, so a hostile name cannot drive a terminal;
 * JSON keeps valid UTF-8 and escapes the rest the same way. */
#include "zmtpfw/scan_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zmtpfw/pickle_policy.h"
#include "zmtpfw/pickle_scan.h"

#define SCAN_CHUNK (256 * 1024)
#define SCAN_NEST 2 /* levels of pickles inside bytes values (--globals) */

static const char scan_usage[] =
	"usage: zmtpfw scan [--json] [--globals LIST] FILE... | -\n"
	"Reports for each file: not a pickle, pickle without imports, or pickle\n"
	"with imports (each import as module.name, or unknown, with its offset).\n"
	"--json prints one JSON object per file. --globals LIST (comma-separated\n"
	"entries as in pickle_globals, @profile included) judges every import,\n"
	"and the pickles inside bytes values, against that list, as a route does.\n"
	"Exit status: 0 every file is free of imports (with --globals: of imports\n"
	"outside the list), 1 some file is not, 2 a file could not be read.\n";

/* --globals: the policy and the scanners for nested pickles. */
struct scan_policy {
	struct ppolicy *p;
	struct pscan_state chain[SCAN_NEST];
	struct pscan_names *nm[SCAN_NEST];
};

/* One file being scanned. */
struct scan_file {
	const char *path;
	bool json;
	uint64_t base;        /* file offset of the current pickle */
	uint64_t size;        /* bytes read so far */
	uint64_t pickles;     /* pickles seen (a STOP, or the last one) */
	uint64_t imports;     /* reported so far, all pickles */
	struct scan_policy *pol; /* --globals, or NULL */
	struct ppolicy_verdict pv; /* --globals: what was refused */
	bool first_stop;      /* the first pickle reached STOP */
	const char *end;      /* how the last pickle ended */
	uint64_t end_off;     /* where (file offset) */
	const char *trail;    /* trailing data: why a later pickle raised */
	uint64_t trail_off;
};

/* ---- output ------------------------------------------------------------ */

static void scan_put_text(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\')
			putchar(b[i]);
		else
			printf("\\x%02x", b[i]);
	}
}

/* Length of a strict UTF-8 sequence at b[0..n), 0 when invalid. */
static size_t scan_utf8_len(const uint8_t *b, size_t n)
{
	uint8_t c = b[0];
	size_t len = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
	uint8_t lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
	uint8_t hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;

	if (c < 0xC2 || c > 0xF4 || n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if (b[i] < (i == 1 ? lo : 0x80) || b[i] > (i == 1 ? hi : 0xBF))
			return 0;
	}
	return len;
}

static void scan_put_json(const uint8_t *b, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n;) {
		uint8_t c = b[i];
		size_t k;
		if (c == '"' || c == '\\') {
			printf("\\%c", c);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			printf("\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			putchar(c);
			i++;
		} else if ((k = scan_utf8_len(b + i, n - i)) != 0) {
			fwrite(b + i, 1, k, stdout);
			i += k;
		} else {
			printf("\\\\x%02x", c); /* the text "\xNN" */
			i++;
		}
	}
	putchar('"');
}

static void scan_put_json_str(const char *s)
{
	scan_put_json((const uint8_t *)s, strlen(s));
}

/* pscan_import_fn: print each import as soon as it is found. */
static void scan_on_import(void *ctx, struct pscan_import *imp)
{
	struct scan_file *f = ctx;
	unsigned long long off = (unsigned long long)(f->base + imp->offset);
	bool named = imp->module != NULL && imp->name != NULL;

	if (f->pol)
		ppolicy_judge(f->pol->p, &f->pv, imp);
	if (imp->shape) { /* shapes matter only under a list */
		if (!f->pol)
			return;
		if (f->json) {
			printf("%s{\"shape\":\"%s\",\"offset\":%llu,\"depth\":%u}",
			       f->imports++ > 0 ? "," : "", imp->shape, off, imp->depth);
		} else {
			printf("%s: refused shape %s (offset %llu%s)\n", f->path, imp->shape, off,
			       imp->depth ? " inside a bytes value" : "");
		}
		return;
	}
	/* offsets inside bytes values are relative to that pickle */
	if (imp->depth)
		off = (unsigned long long)imp->offset;

	if (f->imports++ > 0 && f->json)
		putchar(',');
	if (f->json) {
		printf("{\"opcode\":\"%s\",\"offset\":%llu,\"pickle\":%llu,\"module\":", imp->opcode,
		       off, (unsigned long long)f->pickles);
		if (named)
			scan_put_json(imp->module, imp->module_len);
		else
			fputs("null", stdout);
		fputs(",\"name\":", stdout);
		if (named)
			scan_put_json(imp->name, imp->name_len);
		else
			fputs("null", stdout);
		if (imp->truncated)
			fputs(",\"truncated\":true", stdout);
		if (imp->opcode[0] == 'E')
			printf(",\"ext_code\":%lld", (long long)imp->ext_code);
		if (imp->depth)
			printf(",\"depth\":%u", imp->depth);
		if (f->pol)
			printf(",\"allowed\":%s", imp->allowed ? "true" : "false");
		putchar('}');
		return;
	}
	printf("%s: import ", f->path);
	if (named) {
		scan_put_text(imp->module, imp->module_len);
		putchar('.');
		scan_put_text(imp->name, imp->name_len);
		if (imp->truncated)
			fputs("...", stdout);
	} else {
		fputs("unknown", stdout);
	}
	printf(" (%s at offset %llu", imp->opcode, off);
	if (imp->opcode[0] == 'E')
		printf(", code %lld", (long long)imp->ext_code);
	if (imp->depth)
		printf(", in a pickle inside a bytes value, depth %u", imp->depth);
	fputs(")", stdout);
	if (f->pol)
		fputs(imp->allowed ? " allowed" : " NOT ALLOWED", stdout);
	putchar('\n');
}

/* ---- scanning ---------------------------------------------------------- */

static void scan_start(struct scan_file *f, struct pscan_state *st, struct pscan_names *nm)
{
	pscan_init(st);
	pscan_collect(st, nm, scan_on_import, f);
	if (f->pol)
		pscan_nest(st, f->pol->chain, f->pol->nm, SCAN_NEST);
}

/* The current pickle ended (verdict decided). Returns true when the next
 * pickle starts right after it (it reached STOP). */
static bool scan_pickle_end(struct scan_file *f, const struct pscan_state *st)
{
	const char *why = pscan_reason(st);
	uint64_t off = f->base + pscan_offset(st);
	bool stop = strcmp(why, "stop") == 0;

	f->pickles++;
	if (f->pickles == 1) {
		f->first_stop = stop;
	} else if (!stop) {
		f->pickles--;
		/* Nothing after the last STOP: the end of a normal stream. */
		if (strcmp(why, "truncated") == 0 && f->size == f->base)
			return false;
		f->trail = why;
		f->trail_off = off;
		return false;
	}
	f->end = why;
	f->end_off = off;
	return stop;
}

/* Scan one file; prints its report. Returns 0, 1 or 2 (see the usage). */
static int scan_file(const char *path, bool json, struct pscan_names *nm, uint8_t *buf,
		     struct scan_policy *pol)
{
	struct scan_file f = { .path = path, .json = json, .end = "truncated", .pol = pol };
	struct pscan_state st;
	uint64_t chunk_at = 0;
	bool over = false;
	int err = 0;
	int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);

	ppolicy_verdict_init(&f.pv);
	if (fd < 0) {
		err = errno;
		goto report;
	}
	if (json) {
		fputs("{\"file\":", stdout);
		scan_put_json_str(path);
		fputs(",\"imports\":[", stdout);
	}
	scan_start(&f, &st, nm);
	while (!over) {
		ssize_t k = read(fd, buf, SCAN_CHUNK);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			err = errno;
			break;
		}
		if (k == 0) { /* end of file: the pickle being read raises */
			pscan_finish(&st);
			(void)scan_pickle_end(&f, &st);
			break;
		}
		f.size += (uint64_t)k;
		for (size_t i = 0; i < (size_t)k;) {
			if (pscan_feed(&st, buf + i, (size_t)k - i) == PSCAN_NEED_MORE)
				break;
			uint64_t next = f.base + pscan_offset(&st) + 1;
			if (!scan_pickle_end(&f, &st)) {
				over = true;
				break;
			}
			i = (size_t)(next - chunk_at);
			f.base = next;
			scan_start(&f, &st, nm);
		}
		chunk_at += (uint64_t)k;
	}
	if (fd > 0)
		close(fd);
report:
	if (json) {
		if (fd < 0) {
			fputs("{\"file\":", stdout);
			scan_put_json_str(path);
			fputs(",\"imports\":[", stdout);
		}
		printf("],\"status\":\"%s\"", err ? "error" : f.imports ? "imports" :
		       f.first_stop ? "clean" : "not-pickle");
		if (pol && !err)
			printf(",\"allowed\":%s", f.pv.bad ? "false" : "true");
		if (err) {
			fputs(",\"error\":", stdout);
			scan_put_json_str(strerror(err));
		}
		if (!err)
			printf(",\"pickles\":%llu,\"end\":\"%s\",\"end_offset\":%llu",
			       (unsigned long long)f.pickles, f.end, (unsigned long long)f.end_off);
		if (f.trail)
			printf(",\"trailing\":{\"reason\":\"%s\",\"offset\":%llu}", f.trail,
			       (unsigned long long)f.trail_off);
		fputs("}\n", stdout);
	} else if (err) {
		printf("%s: error: %s\n", path, strerror(err));
	} else {
		printf("%s: ", path);
		if (f.imports)
			printf("pickle with imports (%llu)", (unsigned long long)f.imports);
		else if (f.first_stop)
			printf("pickle without imports");
		else
			printf("not a pickle (%s at offset %llu)", f.end, (unsigned long long)f.end_off);
		if (f.pickles > 1)
			printf(", %llu pickles", (unsigned long long)f.pickles);
		if (f.trail)
			printf(", trailing data ignored (%s at offset %llu)", f.trail,
			       (unsigned long long)f.trail_off);
		if (pol)
			fputs(f.pv.bad ? ", NOT ALLOWED by --globals" : ", allowed by --globals", stdout);
		putchar('\n');
	}
	fflush(stdout);
	if (err)
		return 2;
	return pol ? f.pv.bad : f.imports ? 1 : 0;
}

/* "a:b, @p" -> a policy; prints the refusal and returns NULL on error. */
static struct ppolicy *scan_globals(const char *list)
{
	char err[256];
	struct ppolicy *p = ppolicy_new();
	if (p && ppolicy_add_list(p, list, err, sizeof(err)) == 0)
		return p;
	fprintf(stderr, "zmtpfw scan: --globals: %s\n", p ? err : "out of memory");
	ppolicy_free(p);
	return NULL;
}

int scan_cli_main(int argc, char **argv)
{
	bool json = false, opts_done = false;
	int status = 0, files = 0;
	struct pscan_names *nm;
	struct scan_policy pol = { 0 };
	uint8_t *buf;

	for (int i = 1; i < argc; i++) {
		if (opts_done || argv[i][0] != '-' || strcmp(argv[i], "-") == 0) {
			files++;
		} else if (strcmp(argv[i], "--") == 0) {
			opts_done = true;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--globals") == 0 && i + 1 < argc && !pol.p) {
			if (!(pol.p = scan_globals(argv[++i])))
				return 2;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(scan_usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "zmtpfw scan: unknown option %s\n%s", argv[i], scan_usage);
			ppolicy_free(pol.p);
			return 2;
		}
	}
	if (files == 0) {
		fputs(scan_usage, stderr);
		ppolicy_free(pol.p);
		return 2;
	}
	nm = malloc(pscan_names_size(PSCAN_NAMES_ARENA, PSCAN_NAMES_MEMO));
	buf = malloc(SCAN_CHUNK);
	if (nm == NULL || buf == NULL) {
		fprintf(stderr, "zmtpfw scan: out of memory\n");
		free(nm);
		free(buf);
		return 2;
	}
	nm = pscan_names_init(nm, PSCAN_NAMES_ARENA, PSCAN_NAMES_MEMO);
	for (unsigned k = 0; pol.p && k < SCAN_NEST; k++) {
		pol.nm[k] = pscan_names_init(malloc(pscan_names_size(1u << 18, 2048)), 1u << 18, 2048);
		if (!pol.nm[k]) {
			fprintf(stderr, "zmtpfw scan: out of memory\n");
			status = 2;
			goto out;
		}
	}
	opts_done = false;
	for (int i = 1; i < argc; i++) {
		if (!opts_done && strcmp(argv[i], "--") == 0) {
			opts_done = true;
			continue;
		}
		if (!opts_done && strcmp(argv[i], "--globals") == 0) {
			i++;
			continue;
		}
		if (!opts_done && argv[i][0] == '-' && argv[i][1] != 0)
			continue;
		int r = scan_file(argv[i], json, nm, buf, pol.p ? &pol : NULL);
		if (r > status)
			status = r;
	}
out:
	for (unsigned k = 0; k < SCAN_NEST; k++)
		free(pol.nm[k]);
	ppolicy_free(pol.p);
	free(nm);
	free(buf);
	return status;
}
