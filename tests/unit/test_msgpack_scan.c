/* test_msgpack_scan: table-driven tests for the msgpack walker
 * (src/msgpack_scan.c).
 *
 * Links only the module under test. Every case is fed whole, split in two
 * at every offset (with an empty call at the cut), one byte at a time with
 * an empty call before each byte, and in random chunks; the event log
 * (payloads with their bytes, the verdict and the offset where it was
 * reported) must be identical each time and equal the table's. Chunks are
 * exact-size heap copies, so a sanitizer build catches any read past what
 * the walker was shown. Every prefix of a good case must be NOT_MSGPACK,
 * and so must every good case with a byte appended. Random and generated
 * frames are compared with an independent whole-buffer recursive model.
 * The last line is "N passed, M failed". */
#include "zmtpfw/msgpack_scan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long n_pass, n_fail;
static unsigned long n_cases, n_feeds, n_random;

static void fail_msg(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail_msg(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	n_fail++;
	if (n_fail > 200)
		return;
	fprintf(stderr, "FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

#define CHECK(cond, ...)                                           \
	do {                                                       \
		if (cond)                                          \
			n_pass++;                                  \
		else                                               \
			fail_msg(__FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

/* Deterministic xorshift64*, so a failure reproduces run after run. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		perror("malloc");
		exit(2);
	}
	return p;
}

/* ------------------------------------------------------------ event logs */

/* A growable string: "B:hex;" / "1:hex;" per payload, then the verdict. */
struct log {
	char *s;
	size_t n, cap;
};

static void log_add(struct log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_add(struct log *l, const char *fmt, ...)
{
	va_list ap;
	char tmp[256];

	va_start(ap, fmt);
	int k = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (k < 0)
		k = 0;
	if ((size_t)k >= sizeof(tmp))
		k = (int)sizeof(tmp) - 1; /* only short records go through here */
	if (l->n + (size_t)k + 1 > l->cap) {
		l->cap = (l->n + (size_t)k + 1) * 2;
		l->s = realloc(l->s, l->cap);
		if (!l->s)
			exit(2);
	}
	memcpy(l->s + l->n, tmp, (size_t)k + 1);
	l->n += (size_t)k;
}

static const char *log_str(const struct log *l)
{
	return l->s ? l->s : "";
}

static void log_hex(struct log *l, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		log_add(l, "%02x", p[i]);
}

static void log_payload(struct log *l, int type)
{
	if (type == MPSCAN_BIN)
		log_add(l, "B:");
	else
		log_add(l, "%d:", type);
}

/* ------------------------------------------------------------ the feeder */

/* Feed frame[0..len) in the chunks ending at cuts[0..ncuts) (then the
 * rest), an empty call before each chunk when `empties`. Returns the log. */
static void feed(const char *label, const uint8_t *frame, size_t len, const size_t *cuts,
		 size_t ncuts, bool empties, struct log *out)
{
	struct mpscan m;
	struct mpscan_ev ev;
	uint64_t off = 0, pay_len = 0, pay_got = 0;
	bool in_pay = false, final = false;
	size_t start = 0, steps = 0;

	n_feeds++;
	memset(&m, 0xA5, sizeof(m)); /* init must not rely on zeroed memory */
	mpscan_init(&m, len);
	for (size_t c = 0; c <= ncuts && !final; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		size_t clen = end - start;
		uint8_t *chunk = xmalloc(clen);
		size_t at = 0;
		memcpy(chunk, frame + start, clen);
		bool empty_pending = empties;
		for (;;) {
			if (++steps > 8 * len + 64) {
				CHECK(0, "%s: no progress", label);
				final = true;
				break;
			}
			const uint8_t *p = empty_pending ? NULL : chunk + at;
			size_t n = empty_pending ? 0 : clen - at;
			size_t used = mpscan_step(&m, p, n, &ev);
			CHECK(used <= n, "%s: used %zu of %zu", label, used, n);
			if (used > n)
				used = n;
			at += used;
			off += used;
			if (ev.kind == MPSCAN_EV_NEED_MORE) {
				CHECK(used == n, "%s: NEED_MORE with %zu of %zu used", label, used, n);
				if (empty_pending) {
					empty_pending = false;
					continue;
				}
				break;
			}
			switch (ev.kind) {
			case MPSCAN_EV_PAYLOAD:
				CHECK(!in_pay, "%s: PAYLOAD inside a payload", label);
				CHECK(ev.ext_type == 1 || ev.ext_type == 2 || ev.ext_type == MPSCAN_BIN,
				      "%s: ext_type %d", label, ev.ext_type);
				in_pay = true;
				pay_len = ev.len;
				pay_got = 0;
				log_payload(out, ev.ext_type);
				break;
			case MPSCAN_EV_BYTES:
				CHECK(in_pay && ev.n > 0 && ev.n == used && ev.p == p + used - ev.n,
				      "%s: bad BYTES event", label);
				pay_got += ev.n;
				log_hex(out, ev.p, ev.n);
				break;
			case MPSCAN_EV_PAYLOAD_END:
				CHECK(in_pay && used == 0 && pay_got == pay_len,
				      "%s: PAYLOAD_END after %llu of %llu bytes", label,
				      (unsigned long long)pay_got, (unsigned long long)pay_len);
				in_pay = false;
				log_add(out, ";");
				break;
			case MPSCAN_EV_MSGPACK:
				CHECK(!in_pay && off == len, "%s: MSGPACK at %llu of %zu", label,
				      (unsigned long long)off, len);
				log_add(out, "MSGPACK@%llu", (unsigned long long)off);
				final = true;
				break;
			case MPSCAN_EV_NOT_MSGPACK:
				CHECK(ev.why != NULL, "%s: NOT_MSGPACK without why", label);
				log_add(out, "NOT(%s)@%llu", ev.why ? ev.why : "?",
					(unsigned long long)off);
				final = true;
				break;
			case MPSCAN_EV_TOO_DEEP:
				log_add(out, "DEEP@%llu", (unsigned long long)off);
				final = true;
				break;
			default:
				CHECK(0, "%s: unknown event %d", label, (int)ev.kind);
				final = true;
				break;
			}
			if (final) {
				/* Sticky: the same verdict, nothing used. */
				struct mpscan_ev again;
				size_t u2 = mpscan_step(&m, chunk + at, clen - at, &again);
				CHECK(u2 == 0 && again.kind == ev.kind, "%s: final not repeated",
				      label);
				break;
			}
			empty_pending = empties && (rng() & 1);
		}
		free(chunk);
		start = end;
	}
	if (!final) {
		/* Every byte is in: the verdict must be there without more. */
		for (int i = 0; i < 3 && !final; i++) {
			mpscan_step(&m, NULL, 0, &ev);
			if (ev.kind == MPSCAN_EV_PAYLOAD_END) {
				log_add(out, ";");
				in_pay = false;
			} else if (ev.kind == MPSCAN_EV_MSGPACK) {
				log_add(out, "MSGPACK@%llu", (unsigned long long)off);
				final = true;
			} else if (ev.kind == MPSCAN_EV_NOT_MSGPACK) {
				log_add(out, "NOT(%s)@%llu", ev.why, (unsigned long long)off);
				final = true;
			} else if (ev.kind == MPSCAN_EV_TOO_DEEP) {
				log_add(out, "DEEP@%llu", (unsigned long long)off);
				final = true;
			}
		}
		CHECK(final, "%s: no verdict after the whole frame", label);
	}
}

/* The frame followed by bytes of the next one in the same buffer: the
 * walker must stop at the frame's end and give the same verdict. */
static void feed_extra(const char *label, const uint8_t *f, size_t len, const struct log *whole)
{
	static const char *const kinds[] = {"?", "?", "?", "?", "MSGPACK@", "NOT(", "DEEP@"};
	uint8_t *buf = xmalloc(len + 3);
	struct mpscan m;
	struct mpscan_ev ev;
	size_t off = 0;

	n_feeds++;
	memcpy(buf, f, len);
	memset(buf + len, 0xc0, 3);
	mpscan_init(&m, len);
	for (int i = 0; i < 8 * (int)len + 64; i++) {
		off += mpscan_step(&m, buf + off, len + 3 - off, &ev);
		if (ev.kind >= MPSCAN_EV_MSGPACK)
			break;
	}
	CHECK(off <= len && ev.kind >= MPSCAN_EV_MSGPACK && ev.kind <= MPSCAN_EV_TOO_DEEP &&
		      strstr(log_str(whole), kinds[ev.kind]) != NULL,
	      "%s: with bytes after the frame: used %zu of %zu, event %d, whole: %s", label, off,
	      len, (int)ev.kind, log_str(whole));
	free(buf);
}

/* Every feed of one frame; all logs must be equal. Returns the whole one. */
static void feed_all(const char *label, const uint8_t *f, size_t len, bool every_split,
		     struct log *whole)
{
	struct log l = {0};
	size_t cuts[8];

	feed(label, f, len, NULL, 0, false, whole);
	feed_extra(label, f, len, whole);
	if (every_split) {
		for (size_t k = 0; k <= len; k++) {
			l.n = 0;
			cuts[0] = k;
			feed(label, f, len, cuts, 1, true, &l);
			CHECK(strcmp(log_str(&l), log_str(whole)) == 0,
			      "%s: split at %zu: %s, whole: %s", label, k, log_str(&l),
			      log_str(whole));
		}
	}
	/* Byte by byte, with empty calls. */
	size_t *bytes = xmalloc(len * sizeof(*bytes));
	for (size_t k = 0; k < len; k++)
		bytes[k] = k + 1;
	l.n = 0;
	feed(label, f, len, bytes, len, true, &l);
	CHECK(strcmp(log_str(&l), log_str(whole)) == 0, "%s: byte by byte: %s, whole: %s", label,
	      log_str(&l), log_str(whole));
	free(bytes);
	/* Random chunks. */
	for (int r = 0; r < 3 && len > 1; r++) {
		size_t nc = 1 + rng() % 7;
		for (size_t i = 0; i < nc; i++)
			cuts[i] = rng() % (len + 1);
		for (size_t i = 1; i < nc; i++) /* sort */
			for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
				size_t t = cuts[j];
				cuts[j] = cuts[j - 1];
				cuts[j - 1] = t;
			}
		l.n = 0;
		feed(label, f, len, cuts, nc, true, &l);
		CHECK(strcmp(log_str(&l), log_str(whole)) == 0, "%s: random chunks: %s, whole: %s",
		      label, log_str(&l), log_str(whole));
	}
	free(l.s);
}

/* ------------------------------------------------------------ the table */

struct tcase {
	const char *name;
	const char *bytes;
	size_t len;
	const char *want; /* the whole log: payloads, then the verdict@offset */
};

#define T(name, lit, want) {name, lit, sizeof(lit) - 1, want}

#define PWRAP "\x92\xad" "PickleWrapper"
#define PKL "\x80\x05K\x01." /* pickle.dumps(1, protocol=5) */

static const struct tcase cases[] = {
	/* Scalars, every type byte family. */
	T("nil", "\xc0", "MSGPACK@1"),
	T("false", "\xc2", "MSGPACK@1"),
	T("true", "\xc3", "MSGPACK@1"),
	T("fixint 0", "\x00", "MSGPACK@1"),
	T("fixint 127", "\x7f", "MSGPACK@1"),
	T("negfixint -32", "\xe0", "MSGPACK@1"),
	T("negfixint -1", "\xff", "MSGPACK@1"),
	T("uint8", "\xcc\xff", "MSGPACK@2"),
	T("uint16", "\xcd\xff\xff", "MSGPACK@3"),
	T("uint32", "\xce\x01\x02\x03\x04", "MSGPACK@5"),
	T("uint64", "\xcf\x01\x02\x03\x04\x05\x06\x07\x08", "MSGPACK@9"),
	T("int8", "\xd0\x80", "MSGPACK@2"),
	T("int16", "\xd1\x80\x00", "MSGPACK@3"),
	T("int32", "\xd2\x80\x00\x00\x00", "MSGPACK@5"),
	T("int64", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "MSGPACK@9"),
	T("float32", "\xca\x3f\x80\x00\x00", "MSGPACK@5"),
	T("float64", "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", "MSGPACK@9"),
	T("fixstr empty", "\xa0", "MSGPACK@1"),
	T("fixstr abc", "\xa3" "abc", "MSGPACK@4"),
	T("fixstr 31", "\xbf" "0123456789012345678901234567890", "MSGPACK@32"),
	T("str8", "\xd9\x03" "abc", "MSGPACK@5"),
	T("str8 empty", "\xd9\x00", "MSGPACK@2"),
	T("str16", "\xda\x00\x03" "abc", "MSGPACK@6"),
	T("str32", "\xdb\x00\x00\x00\x03" "abc", "MSGPACK@8"),
	T("str invalid utf-8 (raw=True decodes it)", "\xa2\xff\xfe", "MSGPACK@3"),
	T("str holding a pickle is not a payload", "\xa5" PKL, "MSGPACK@6"),
	/* bin: always a payload. */
	T("bin8", "\xc4\x03" "xyz", "B:78797a;MSGPACK@5"),
	T("bin8 empty", "\xc4\x00", "B:;MSGPACK@2"),
	T("bin16", "\xc5\x00\x02\xaa\xbb", "B:aabb;MSGPACK@5"),
	T("bin32", "\xc6\x00\x00\x00\x01\xcc", "B:cc;MSGPACK@6"),
	T("bin16 empty", "\xc5\x00\x00", "B:;MSGPACK@3"),
	/* Containers. */
	T("fixarray empty", "\x90", "MSGPACK@1"),
	T("fixarray 3", "\x93\x01\x02\x03", "MSGPACK@4"),
	T("fixarray 15", "\x9f\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
	  "MSGPACK@16"),
	T("array16", "\xdc\x00\x02\x01\x02", "MSGPACK@5"),
	T("array16 empty", "\xdc\x00\x00", "MSGPACK@3"),
	T("array32", "\xdd\x00\x00\x00\x02\xc0\xc3", "MSGPACK@7"),
	T("fixmap empty", "\x80", "MSGPACK@1"),
	T("fixmap 1", "\x81\xa1" "a\x01", "MSGPACK@4"),
	T("fixmap 2 (pickle EXT1 byte)", "\x82\xa1" "a\x01\xa1" "b\xc4\x01\x00",
	  "B:00;MSGPACK@9"),
	T("fixmap 3 (pickle EXT2 byte)", "\x83\x01\x02\x03\x04\x05\x06", "MSGPACK@7"),
	T("fixmap 4 (pickle EXT4 byte)", "\x84\xa1" "a\x90\xa1" "b\x80\xa1" "c\xc0\xa1" "d\xc4\x00",
	  "B:;MSGPACK@14"),
	T("map16", "\xde\x00\x01\x01\x02", "MSGPACK@5"),
	T("map32", "\xdf\x00\x00\x00\x01\xc4\x01k\xc4\x01v", "B:6b;B:76;MSGPACK@11"),
	T("map with a bin key", "\x81\xc4\x01x\x01", "B:78;MSGPACK@5"),
	T("map with an array key", "\x81\x91\x01\x02", "MSGPACK@4"),
	T("duplicate keys: both values reported", "\x82\xa1" "a\xc4\x01x\xa1" "a\xc4\x01y",
	  "B:78;B:79;MSGPACK@11"),
	/* ext: 1 and 2 are payloads, every other code is skipped. */
	T("fixext1 type 1", "\xd4\x01\x2e", "1:2e;MSGPACK@3"),
	T("fixext2 type 2", "\xd5\x02\x80\x05", "2:8005;MSGPACK@4"),
	T("fixext4 type 1", "\xd6\x01\x80\x05K\x01", "1:80054b01;MSGPACK@6"),
	T("fixext8 type 2", "\xd7\x02" "12345678", "2:3132333435363738;MSGPACK@10"),
	T("fixext16 type 1", "\xd8\x01" "0123456789abcdef",
	  "1:30313233343536373839616263646566;MSGPACK@18"),
	T("fixext4 type 3 (vLLM raw bytes)", "\xd6\x03\x80\x05K\x01", "MSGPACK@6"),
	T("fixext8 type -1 (timestamp)", "\xd7\xff\x00\x00\x00\x00\x00\x00\x00\x00", "MSGPACK@10"),
	T("fixext1 type -1 (msgpack-python refuses, we walk)", "\xd4\xff\x00", "MSGPACK@3"),
	T("fixext1 type -128", "\xd4\x80\x00", "MSGPACK@3"),
	T("fixext1 type 127", "\xd4\x7f\x00", "MSGPACK@3"),
	T("vLLM ext8 pickle", "\xc7\x05\x01" PKL, "1:80054b012e;MSGPACK@8"),
	T("vLLM ext8 cloudpickle", "\xc7\x05\x02" PKL, "2:80054b012e;MSGPACK@8"),
	T("ext8 empty type 1", "\xc7\x00\x01", "1:;MSGPACK@3"),
	T("ext8 type 4", "\xc7\x02\x04\x01\x02", "MSGPACK@5"),
	T("ext16 type 1", "\xc8\x00\x05\x01" PKL, "1:80054b012e;MSGPACK@9"),
	T("ext16 type 2 empty", "\xc8\x00\x00\x02", "2:;MSGPACK@4"),
	T("ext32 type 2", "\xc9\x00\x00\x00\x05\x02" PKL, "2:80054b012e;MSGPACK@11"),
	T("ext32 type 5", "\xc9\x00\x00\x00\x01\x05\x00", "MSGPACK@7"),
	/* SGLang PickleWrapper and vLLM-like nesting. */
	T("PickleWrapper bin8", PWRAP "\xc4\x05" PKL, "B:80054b012e;MSGPACK@22"),
	T("PickleWrapper bin16", PWRAP "\xc5\x00\x05" PKL, "B:80054b012e;MSGPACK@23"),
	T("PickleWrapper bin32", PWRAP "\xc6\x00\x00\x00\x05" PKL, "B:80054b012e;MSGPACK@25"),
	T("PickleWrapper in a map field", "\x82\xa3" "req\x92\xad" "PickleWrapper\xc4\x01\x2e\xa1" "n\x07",
	  "B:2e;MSGPACK@26"),
	T("vLLM request: array with ext 1, ext 3 and ext 2",
	  "\x94\xa4" "gen\x00\xc7\x05\x01" PKL "\xd4\x03\x00\x91\xd5\x02\x80\x05",
	  "1:80054b012e;2:8005;MSGPACK@22"),
	T("payloads three levels down", "\x91\x81\xa1" "k\x92\xc4\x01\x01\xd4\x01\x02",
	  "B:01;1:02;MSGPACK@11"),
	T("payload after a long str", "\x92\xd9\x05" "hello\xc4\x01\xff", "B:ff;MSGPACK@11"),

	/* Not msgpack: decided as early as the bytes allow. */
	T("empty", "", "NOT(empty frame)@0"),
	T("0xc1", "\xc1", "NOT(0xc1 is never used)@1"),
	T("0xc1 in an array", "\x92\x01\xc1", "NOT(0xc1 is never used)@3"),
	T("trailing bytes", "\x01\x02", "NOT(trailing bytes)@1"),
	T("trailing after an array", "\x91\x01\x00\x00", "NOT(trailing bytes)@2"),
	T("trailing after a payload", "\xc4\x01\xaa\x00", "B:aa;NOT(trailing bytes)@3"),
	T("fixstr past the end", "\xa5" "ab", "NOT(length past frame end)@1"),
	T("str8 past the end", "\xd9\x05" "abc", "NOT(length past frame end)@2"),
	T("str32 huge", "\xdb\xff\xff\xff\xff" "abc", "NOT(length past frame end)@5"),
	T("bin8 past the end", "\xc4\x05\x00", "NOT(length past frame end)@2"),
	T("bin32 huge", "\xc6\xff\xff\xff\xff\x00", "NOT(length past frame end)@5"),
	T("bin16 header cut", "\xc5\x00", "NOT(header past frame end)@1"),
	T("bin8 alone", "\xc4", "NOT(header past frame end)@1"),
	T("uint64 cut", "\xcf\x00\x00", "NOT(length past frame end)@1"),
	T("float64 cut", "\xcb\x00", "NOT(length past frame end)@1"),
	T("fixext16 cut", "\xd8\x01" "0123", "NOT(header past frame end)@1"),
	T("ext8 header cut", "\xc7\x01", "NOT(header past frame end)@1"),
	T("ext8 length past the end, before its type byte", "\xc7\x05\x01\x00",
	  "NOT(length past frame end)@2"),
	T("ext32 huge", "\xc9\xff\xff\xff\xff\x01", "NOT(length past frame end)@5"),
	T("fixarray count past the end", "\x93\x01\x02", "NOT(container count past frame end)@1"),
	T("fixmap count past the end", "\x82\x01\x02\x03", "NOT(container count past frame end)@1"),
	T("array16 count past the end", "\xdc\x00\x03\x01\x02", "NOT(container count past frame end)@3"),
	T("array32 huge", "\xdd\xff\xff\xff\xff\x01", "NOT(container count past frame end)@5"),
	T("map16 count past the end", "\xde\x00\x02\x01\x02\x03",
	  "NOT(container count past frame end)@3"),
	T("map32 huge (2^33 items)", "\xdf\xff\xff\xff\xff\x00", "NOT(container count past frame end)@5"),
	T("bin leaves no byte for its sibling", "\x92\xc4\x02\xaa\xbb",
	  "NOT(length past frame end)@3"),
	T("inner array leaves no byte for the outer", "\x92\x92\x01\x02",
	  "NOT(container count past frame end)@2"),
	T("payload reported, then truncated sibling", "\x92\xc4\x01\xaa\xa3" "ab",
	  "B:aa;NOT(length past frame end)@5"),
	T("JSON", "{\"a\": 1}", "NOT(trailing bytes)@1"),
	T("pickle protocol 5 (0x80 is an empty map)", PKL, "NOT(trailing bytes)@1"),
	T("pickle protocol 0", "cos\nsystem\n(S'id'\ntR.", "NOT(trailing bytes)@1"),
};

static void test_table(void)
{
	struct log whole = {0};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *c = &cases[i];
		n_cases++;
		whole.n = 0;
		feed_all(c->name, (const uint8_t *)c->bytes, c->len, true, &whole);
		CHECK(strcmp(log_str(&whole), c->want) == 0, "%s: got %s, want %s", c->name,
		      log_str(&whole), c->want);
		if (!strstr(c->want, "MSGPACK@"))
			continue;
		/* A good case: every prefix and the case plus one byte are not. */
		for (size_t k = 0; k < c->len; k++) {
			char name[160];
			snprintf(name, sizeof(name), "%s (first %zu bytes)", c->name, k);
			whole.n = 0;
			feed_all(name, (const uint8_t *)c->bytes, k, false, &whole);
			CHECK(strstr(log_str(&whole), "NOT(") != NULL, "%s: got %s, want NOT", name,
			      log_str(&whole));
		}
		uint8_t *plus = xmalloc(c->len + 1);
		memcpy(plus, c->bytes, c->len);
		plus[c->len] = 0xc0;
		whole.n = 0;
		feed_all(c->name, plus, c->len + 1, true, &whole);
		CHECK(strstr(log_str(&whole), "NOT(trailing bytes)") != NULL,
		      "%s + 1 byte: got %s", c->name, log_str(&whole));
		free(plus);
	}
	free(whole.s);
}

/* ------------------------------------------------------------ depth */

static void test_depth(void)
{
	uint8_t f[MPSCAN_MAX_DEPTH + 8];
	struct log l = {0};
	char want[64];

	/* 64 nested arrays around an int: msgpack. */
	memset(f, 0x91, MPSCAN_MAX_DEPTH);
	f[MPSCAN_MAX_DEPTH] = 0x01;
	feed_all("64 nested", f, MPSCAN_MAX_DEPTH + 1, true, &l);
	snprintf(want, sizeof(want), "MSGPACK@%d", MPSCAN_MAX_DEPTH + 1);
	CHECK(strcmp(log_str(&l), want) == 0, "64 nested: %s", log_str(&l));
	/* 63 around an empty array: 64 containers, msgpack. */
	memset(f, 0x91, MPSCAN_MAX_DEPTH - 1);
	f[MPSCAN_MAX_DEPTH - 1] = 0x90;
	l.n = 0;
	feed_all("63 nested + []", f, MPSCAN_MAX_DEPTH, true, &l);
	snprintf(want, sizeof(want), "MSGPACK@%d", MPSCAN_MAX_DEPTH);
	CHECK(strcmp(log_str(&l), want) == 0, "63 nested + []: %s", log_str(&l));
	/* 65 levels: too deep at the 65th container, empty or not (as
	 * msgpack-python checks its stack before the count). */
	memset(f, 0x91, MPSCAN_MAX_DEPTH + 1);
	f[MPSCAN_MAX_DEPTH + 1] = 0x01;
	l.n = 0;
	feed_all("65 nested", f, MPSCAN_MAX_DEPTH + 2, true, &l);
	snprintf(want, sizeof(want), "DEEP@%d", MPSCAN_MAX_DEPTH + 1);
	CHECK(strcmp(log_str(&l), want) == 0, "65 nested: %s", log_str(&l));
	f[MPSCAN_MAX_DEPTH] = 0x90;
	l.n = 0;
	feed_all("64 nested + []", f, MPSCAN_MAX_DEPTH + 1, true, &l);
	CHECK(strcmp(log_str(&l), want) == 0, "64 nested + []: %s", log_str(&l));
	free(l.s);
	/* Maps nest too ({nil: {nil: ...}}), and a bad count beats depth. */
	uint8_t g[2 * MPSCAN_MAX_DEPTH + 4];
	for (int i = 0; i <= MPSCAN_MAX_DEPTH; i++) {
		g[2 * i] = 0x81;
		g[2 * i + 1] = 0xc0;
	}
	g[2 * MPSCAN_MAX_DEPTH + 2] = 0xc0;
	struct log m = {0};
	feed_all("65 nested maps", g, 2 * MPSCAN_MAX_DEPTH + 3, true, &m);
	snprintf(want, sizeof(want), "DEEP@%d", 2 * MPSCAN_MAX_DEPTH + 1);
	CHECK(strcmp(log_str(&m), want) == 0, "65 nested maps: %s", log_str(&m));
	m.n = 0;
	g[2 * MPSCAN_MAX_DEPTH] = 0x92; /* 2 items, only 1 byte left */
	feed_all("65th container with a bad count", g, 2 * MPSCAN_MAX_DEPTH + 2, true, &m);
	CHECK(strstr(log_str(&m), "NOT(container count") != NULL, "bad count at 65: %s",
	      log_str(&m));
	free(m.s);
	n_cases += 6;
}

/* ------------------------------------------------- independent model */

struct ref {
	const uint8_t *f;
	size_t len, pos;
	int maxdepth;
	struct log *pl;
};

static bool ref_take(struct ref *r, size_t k, uint64_t *v)
{
	if (r->len - r->pos < k)
		return false;
	*v = 0;
	for (size_t i = 0; i < k; i++)
		*v = (*v << 8) | r->f[r->pos++];
	return true;
}

static bool ref_body(struct ref *r, uint64_t k, int payload)
{
	if (r->len - r->pos < k)
		return false;
	if (payload != 0) {
		log_payload(r->pl, payload);
		log_hex(r->pl, r->f + r->pos, (size_t)k);
		log_add(r->pl, ";");
	}
	r->pos += (size_t)k;
	return true;
}

/* Whole-buffer recursive descent straight from the msgpack spec. */
static bool ref_obj(struct ref *r, int depth)
{
	uint64_t v, t;

	if (r->pos >= r->len)
		return false;
	uint8_t b = r->f[r->pos++];
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return true;
	if (b == 0xc1)
		return false;
	if ((b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf)) {
		uint64_t count;
		bool map = (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
		if (b <= 0x9f)
			count = b & 0x0f;
		else if (!ref_take(r, (b & 1) ? 4 : 2, &count))
			return false;
		if (map)
			count *= 2;
		if (depth + 1 > r->maxdepth)
			r->maxdepth = depth + 1;
		if (depth + 1 > 1000)
			return false; /* recursion guard; random frames stay far below */
		for (uint64_t i = 0; i < count; i++)
			if (!ref_obj(r, depth + 1))
				return false;
		return true;
	}
	if (b >= 0xa0 && b <= 0xbf)
		return ref_body(r, b & 0x1f, 0);
	switch (b) {
	case 0xc4: case 0xc5: case 0xc6:
		return ref_take(r, (size_t)1 << (b - 0xc4), &v) && ref_body(r, v, MPSCAN_BIN);
	case 0xd9: case 0xda: case 0xdb:
		return ref_take(r, (size_t)1 << (b - 0xd9), &v) && ref_body(r, v, 0);
	case 0xc7: case 0xc8: case 0xc9:
		if (!ref_take(r, (size_t)1 << (b - 0xc7), &v) || !ref_take(r, 1, &t))
			return false;
		return ref_body(r, v, (t == 1 || t == 2) ? (int)t : 0);
	case 0xca: return ref_body(r, 4, 0);
	case 0xcb: return ref_body(r, 8, 0);
	case 0xcc: case 0xd0: return ref_body(r, 1, 0);
	case 0xcd: case 0xd1: return ref_body(r, 2, 0);
	case 0xce: case 0xd2: return ref_body(r, 4, 0);
	case 0xcf: case 0xd3: return ref_body(r, 8, 0);
	default: /* 0xd4..0xd8 fixext */
		if (!ref_take(r, 1, &t))
			return false;
		return ref_body(r, (uint64_t)1 << (b - 0xd4), (t == 1 || t == 2) ? (int)t : 0);
	}
}

static void check_model(const char *label, const uint8_t *f, size_t len)
{
	struct log pl = {0}, got = {0};
	struct ref r = {f, len, 0, 0, &pl};
	bool ok = ref_obj(&r, 0) && r.pos == len;

	n_random++;
	feed_all(label, f, len, false, &got);
	const char *g = log_str(&got);
	if (ok && r.maxdepth <= MPSCAN_MAX_DEPTH) {
		log_add(&pl, "MSGPACK@%zu", len);
		CHECK(strcmp(g, log_str(&pl)) == 0, "%s: got %s, model %s", label, g, log_str(&pl));
	} else if (ok) {
		CHECK(strstr(g, "DEEP@") != NULL, "%s: got %s, model: too deep", label, g);
	} else if (r.maxdepth <= MPSCAN_MAX_DEPTH) {
		CHECK(strstr(g, "NOT(") != NULL, "%s: got %s, model: not msgpack", label, g);
	} else {
		CHECK(strstr(g, "NOT(") || strstr(g, "DEEP@"), "%s: got %s", label, g);
	}
	free(pl.s);
	free(got.s);
}

/* A random valid object (payload-heavy, all types), appended to buf. */
static size_t gen_obj(uint8_t *buf, size_t cap, size_t at, int depth)
{
	static const uint8_t scal[] = {0xc0, 0xc2, 0xc3, 0x00, 0x7f, 0xe0, 0xff};
	static const uint8_t fixed[][2] = {{0xcc, 1}, {0xcd, 2}, {0xce, 4}, {0xcf, 8}, {0xd0, 1},
					   {0xd1, 2}, {0xd2, 4}, {0xd3, 8}, {0xca, 4}, {0xcb, 8}};
	if (cap - at < 40)
		return at;
	unsigned k = (unsigned)(rng() % (depth > 6 ? 5 : 10));
	size_t len = rng() % 9;
	switch (k) {
	case 0:
		buf[at++] = scal[rng() % sizeof(scal)];
		return at;
	case 1: {
		unsigned i = (unsigned)(rng() % 10);
		buf[at++] = fixed[i][0];
		for (unsigned j = 0; j < fixed[i][1]; j++)
			buf[at++] = (uint8_t)rng();
		return at;
	}
	case 2: /* str: fix or 8/16/32 */
	case 3: /* bin 8/16/32 */
	case 4: { /* ext: fix or 8/16/32, codes 0..3 and -1 */
		uint8_t code = (uint8_t)((rng() % 5 == 0) ? 0xff : rng() % 4);
		unsigned form = (unsigned)(rng() % 4);
		if (k == 2 && form == 0) {
			buf[at++] = (uint8_t)(0xa0 | len);
		} else if (k == 4 && form == 0) {
			len = (size_t)1 << (rng() % 5);
			buf[at++] = (uint8_t)(0xd4 + __builtin_ctzll(len));
			buf[at++] = code;
		} else {
			unsigned w = form ? form : 1; /* 1, 2, 3 -> 1, 2, 4 length bytes */
			size_t lb = (size_t)1 << (w - 1);
			buf[at++] = (uint8_t)((k == 2 ? 0xd9 : k == 3 ? 0xc4 : 0xc7) + (w - 1));
			for (size_t j = 0; j < lb; j++)
				buf[at++] = (uint8_t)(j == lb - 1 ? len : 0);
			if (k == 4)
				buf[at++] = code;
		}
		for (size_t j = 0; j < len; j++)
			buf[at++] = (uint8_t)rng();
		return at;
	}
	default: { /* containers */
		bool map = rng() & 1;
		unsigned n = (unsigned)(rng() % 5);
		unsigned form = (unsigned)(rng() % 3);
		if (form == 0) {
			buf[at++] = (uint8_t)((map ? 0x80 : 0x90) | n);
		} else {
			buf[at++] = (uint8_t)((map ? 0xde : 0xdc) + (form - 1));
			for (unsigned j = 0; j < (form == 1 ? 2u : 4u); j++)
				buf[at++] = (uint8_t)(j == (form == 1 ? 1u : 3u) ? n : 0);
		}
		for (unsigned j = 0; j < (map ? 2 * n : n); j++) {
			size_t before = at;
			at = gen_obj(buf, cap, at, depth + 1);
			if (at == before) /* out of room: pad with nil */
				buf[at++] = 0xc0;
		}
		return at;
	}
	}
}

static void test_random(void)
{
	uint8_t buf[4096];
	char label[64];

	/* Random bytes, biased to the interesting type bytes. */
	for (int i = 0; i < 20000; i++) {
		size_t len = rng() % 24;
		for (size_t j = 0; j < len; j++) {
			uint64_t x = rng();
			buf[j] = (x & 3) ? (uint8_t)(x >> 8) : (uint8_t)(0x80 + (x >> 8) % 0x60);
		}
		snprintf(label, sizeof(label), "random bytes #%d", i);
		check_model(label, buf, len);
	}
	/* Generated objects, then truncated, flipped or extended. */
	for (int i = 0; i < 20000; i++) {
		size_t len = gen_obj(buf, sizeof(buf) - 64, 0, 0);
		snprintf(label, sizeof(label), "generated #%d", i);
		check_model(label, buf, len);
		switch (rng() % 4) {
		case 0:
			len = rng() % (len + 1);
			break;
		case 1:
			buf[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
			break;
		case 2:
			buf[len++] = (uint8_t)rng();
			break;
		default:
			buf[rng() % len] = (uint8_t)rng();
			break;
		}
		snprintf(label, sizeof(label), "mutated #%d", i);
		check_model(label, buf, len);
	}
}

int main(void)
{
	test_table();
	test_depth();
	test_random();
	printf("cases: %lu table and depth cases (every split, every prefix, +1 byte), "
	       "%lu random/generated frames vs the model, %lu feeds\n",
	       n_cases, n_random, n_feeds);
	printf("%lu passed, %lu failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
