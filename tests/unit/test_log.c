/* Unit tests for log: stderr is captured in a temp file (or a pipe), every
 * line is checked by a small strict JSON parser that also decodes values. */
#define _GNU_SOURCE /* memmem */
#include "zmtpfw/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit_check.h"

/* ---- capture ---- */

static int saved_stderr = -1;
static FILE *cap_file;
static char *cap_buf; /* last capture, NUL terminated */
static size_t cap_len;

static void cap_begin(void)
{
	fflush(stderr);
	cap_file = tmpfile();
	if (cap_file == NULL || dup2(fileno(cap_file), STDERR_FILENO) < 0) {
		perror("capture");
		exit(2);
	}
}

static const char *cap_end(void)
{
	long n;
	dup2(saved_stderr, STDERR_FILENO);
	fseek(cap_file, 0, SEEK_END);
	n = ftell(cap_file);
	rewind(cap_file);
	free(cap_buf);
	cap_buf = malloc((size_t)n + 1);
	cap_len = fread(cap_buf, 1, (size_t)n, cap_file);
	cap_buf[cap_len] = '\0';
	fclose(cap_file);
	return cap_buf;
}

static size_t count_lines(const char *s, const char *needle)
{
	size_t n = 0;
	for (const char *l = s; *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) : strlen(l);
		if (needle == NULL || memmem(l, len, needle, strlen(needle)))
			n++;
		l += len + (e ? 1 : 0);
	}
	return n;
}

/* ---- a strict little JSON checker for one line: a flat object whose
 * values are strings, integers or booleans (all log_event produces). It
 * decodes the value of `want` into out (bytes: \u00XX -> XX). ---- */

struct jv {
	char s[8192]; /* decoded string, or the number/bool token text */
	size_t n;
	bool found;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parses a JSON string at *p; decoded bytes into out (may be NULL). */
static bool j_string(const char **p, char *out, size_t *outn, size_t cap)
{
	const char *s = *p;
	size_t n = 0;
	if (*s++ != '"')
		return false;
	for (;;) {
		unsigned char c = (unsigned char)*s++;
		int v = -1;
		if (c == '"')
			break;
		if (c < 0x20 || c >= 0x7f) /* we promise pure printable ASCII */
			return false;
		if (c == '\\') {
			c = (unsigned char)*s++;
			switch (c) {
			case '"': case '\\': case '/': v = c; break;
			case 'b': v = '\b'; break;
			case 'f': v = '\f'; break;
			case 'n': v = '\n'; break;
			case 'r': v = '\r'; break;
			case 't': v = '\t'; break;
			case 'u': {
				int h[4];
				for (int i = 0; i < 4; i++)
					if ((h[i] = hexval(s[i])) < 0)
						return false;
				if (h[0] || h[1]) /* only U+0000..U+00FF expected */
					return false;
				v = h[2] * 16 + h[3];
				s += 4;
				break;
			}
			default:
				return false;
			}
		} else {
			v = c;
		}
		if (out && n < cap)
			out[n] = (char)v;
		n++;
	}
	*p = s;
	if (outn)
		*outn = n;
	return true;
}

static bool j_object(const char *line, const char *want, struct jv *out)
{
	const char *p = line;
	char key[256];
	size_t kn;
	if (out)
		out->found = false;
	if (*p++ != '{')
		return false;
	for (bool first = true;; first = false) {
		bool hit;
		if (*p == '}' && first)
			break;
		if (!j_string(&p, key, &kn, sizeof(key) - 1))
			return false;
		key[kn < sizeof(key) ? kn : sizeof(key) - 1] = '\0';
		hit = want && out && strcmp(key, want) == 0;
		if (*p++ != ':')
			return false;
		if (*p == '"') {
			size_t n;
			if (!j_string(&p, hit ? out->s : NULL, &n, hit ? sizeof(out->s) - 1 : 0))
				return false;
			if (hit) {
				out->n = n;
				out->s[n < sizeof(out->s) ? n : sizeof(out->s) - 1] = '\0';
				out->found = true;
			}
		} else {
			const char *st = p;
			if (strncmp(p, "true", 4) == 0)
				p += 4;
			else if (strncmp(p, "false", 5) == 0)
				p += 5;
			else {
				if (*p == '-')
					p++;
				if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
					return false;
				while (*p >= '0' && *p <= '9')
					p++;
			}
			if (hit) {
				out->n = (size_t)(p - st);
				memcpy(out->s, st, out->n);
				out->s[out->n] = '\0';
				out->found = true;
			}
		}
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p++ != '}')
			return false;
		break;
	}
	return p[0] == '\n' && p[1] == '\0';
}

/* Validate every line of s; returns the number of bad lines. */
static size_t bad_json_lines(const char *s)
{
	size_t bad = 0;
	char one[8192];
	for (const char *l = s; *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) + 1 : strlen(l);
		if (len >= sizeof(one) || !e) {
			bad++;
		} else {
			memcpy(one, l, len);
			one[len] = '\0';
			if (!j_object(one, NULL, NULL))
				bad++;
		}
		l += len;
	}
	return bad;
}

/* The value of key in the first line of s (decoded). */
static bool jget(const char *s, const char *key, struct jv *v)
{
	char one[8192];
	const char *e = strchr(s, '\n');
	size_t len = e ? (size_t)(e - s) + 1 : 0;
	if (len == 0 || len >= sizeof(one))
		return false;
	memcpy(one, s, len);
	one[len] = '\0';
	return j_object(one, key, v) && v->found;
}

static bool jis(const char *s, const char *key, const char *val)
{
	static struct jv v;
	return jget(s, key, &v) && v.n == strlen(val) && memcmp(v.s, val, v.n) == 0;
}

/* ---- tests ---- */

static bool ts_ok(const char *t)
{
	/* 2026-11-23T12:00:00.123Z */
	static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
	for (size_t i = 0; i < sizeof(pat) - 1; i++) {
		if (pat[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != pat[i])
			return false;
	}
	return true;
}

static void test_json_basic(void)
{
	struct log_ctx ctx = { .route = "r", .conn = 12, .peer = "127.0.0.1:5555" };
	const char *out, *rest;
	struct jv v;
	time_t now = time(NULL);
	struct tm tm;
	char year[8];

	log_setup(LOG_DEBUG, LOG_FORMAT_JSON);
	cap_begin();
	log_event(LOG_INFO, &ctx, NULL, "accept", LOG_STR("k", "v"), LOG_U64("n", 5),
		  LOG_I64("i", -3), LOG_BOOL("b", 1), LOG_BOOL("f", 0),
		  LOG_U64("max", UINT64_MAX), LOG_I64("min", INT64_MIN), LOG_STR("nil", NULL),
		  LOG_BYTES("e", NULL, 0), LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 1 && bad_json_lines(out) == 0, "json: %s", out);
	CHECK(strncmp(out, "{\"ts\":\"", 7) == 0 && ts_ok(out + 7), "ts: %s", out);
	gmtime_r(&now, &tm);
	strftime(year, sizeof(year), "%Y", &tm);
	CHECK(strncmp(out + 7, year, 4) == 0, "ts year (UTC): %s", out);
	rest = out + 7 + 24;
	CHECK(strcmp(rest, "\",\"level\":\"info\",\"event\":\"accept\",\"route\":\"r\",\"conn\":12,"
			   "\"peer\":\"127.0.0.1:5555\",\"k\":\"v\",\"n\":5,\"i\":-3,\"b\":true,"
			   "\"f\":false,\"max\":18446744073709551615,"
			   "\"min\":-9223372036854775808,\"e\":\"\"}\n") == 0,
	      "line: %s", out);
	CHECK(jget(out, "peer", &v) && strcmp(v.s, "127.0.0.1:5555") == 0, "peer");

	/* Absent ctx fields are omitted; no ctx at all; no fields at all. */
	cap_begin();
	log_event_v(LOG_WARN, &(struct log_ctx){ .route = NULL, .conn = 7 }, NULL, "x", NULL);
	log_event(LOG_ERROR, NULL, NULL, "y", LOG_END);
	out = cap_end();
	CHECK(bad_json_lines(out) == 0 && count_lines(out, NULL) == 2, "json: %s", out);
	CHECK(strstr(out, "\"level\":\"warn\",\"event\":\"x\",\"conn\":7}\n") != NULL, "%s", out);
	CHECK(strstr(out, "\"level\":\"error\",\"event\":\"y\"}\n") != NULL, "%s", out);
	CHECK(strstr(out, "route") == NULL && strstr(out, "peer") == NULL, "omitted: %s", out);
}

static void test_levels(void)
{
	const char *out;
	log_setup(LOG_WARN, LOG_FORMAT_JSON);
	cap_begin();
	log_event(LOG_DEBUG, NULL, NULL, "d", LOG_END);
	log_event(LOG_INFO, NULL, NULL, "i", LOG_END);
	log_event(LOG_WARN, NULL, NULL, "w", LOG_END);
	log_event(LOG_ERROR, NULL, NULL, "e", LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 2 && strstr(out, "\"event\":\"w\"") &&
		      strstr(out, "\"event\":\"e\""),
	      "warn filter: %s", out);
	log_setup(LOG_DEBUG, LOG_FORMAT_JSON);
	cap_begin();
	log_event(LOG_DEBUG, NULL, NULL, "d", LOG_END);
	out = cap_end();
	CHECK(count_lines(out, "\"level\":\"debug\"") == 1, "debug: %s", out);
}

static void test_text(void)
{
	struct log_ctx ctx = { .route = "r", .conn = 12, .peer = "127.0.0.1:5555" };
	const char *out;
	log_setup(LOG_INFO, LOG_FORMAT_TEXT);
	cap_begin();
	log_event(LOG_INFO, &ctx, NULL, "accept", LOG_STR("reason", "has space"),
		  LOG_STR("plain", "pickle"), LOG_U64("n", 5), LOG_I64("i", -1), LOG_BOOL("b", 1),
		  LOG_STR("q", "a\"b"), LOG_STR("eq", "a=b"), LOG_STR("empty", ""),
		  LOG_BYTES("head", "\x80\x04\n", 3), LOG_END);
	out = cap_end();
	CHECK(ts_ok(out) && count_lines(out, NULL) == 1, "text ts: %s", out);
	CHECK(strcmp(out + 24, " info accept route=r conn=12 peer=127.0.0.1:5555 "
			       "reason=\"has space\" plain=pickle n=5 i=-1 b=true q=\"a\\\"b\" "
			       "eq=\"a=b\" empty=\"\" head=\"\\u0080\\u0004\\u000a\"\n") == 0,
	      "text: %s", out);
	log_setup(LOG_INFO, LOG_FORMAT_JSON);
}

/* log_escape against an independently built expectation, every byte. */
static void test_escape_table(void)
{
	int bad = 0;
	for (int c = 0; c < 256; c++) {
		char want[8], got[8];
		unsigned char b = (unsigned char)c;
		size_t n;
		if (c == '"' || c == '\\')
			snprintf(want, sizeof(want), "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			snprintf(want, sizeof(want), "\\u%04x", c);
		else
			snprintf(want, sizeof(want), "%c", c);
		n = log_escape(got, sizeof(got), &b, 1, 32);
		if (strcmp(got, want) != 0 || n != strlen(want)) {
			bad++;
			printf("  byte %d: got '%s' want '%s'\n", c, got, want);
		}
	}
	CHECK(bad == 0, "%d bytes escaped wrongly", bad);
}

static void test_escape_limits(void)
{
	char buf[16];
	size_t n;
	/* Never split an escape: "\u0001" needs 6 bytes + NUL. */
	memset(buf, 'x', sizeof(buf));
	n = log_escape(buf, 9, "a\x01\x02", 3, 32);
	CHECK(n == 7 && strcmp(buf, "a\\u0001") == 0 && buf[9] == 'x', "split: %zu '%s'", n, buf);
	n = log_escape(buf, 2, "\"", 1, 32);
	CHECK(n == 0 && buf[0] == '\0', "split quote");
	n = log_escape(buf, sizeof(buf), "abcdef", 6, 3);
	CHECK(n == 3 && strcmp(buf, "abc") == 0, "max: '%s'", buf);
	n = log_escape(buf, sizeof(buf), NULL, 5, 32);
	CHECK(n == 0 && buf[0] == '\0', "NULL input");
	buf[0] = 'x';
	n = log_escape(buf, 0, "abc", 3, 32);
	CHECK(n == 0 && buf[0] == 'x', "len 0 wrote");
}

/* All 256 byte values through log_event as LOG_BYTES (32 at a time) and as
 * strings: valid JSON, no raw control or high bytes, decodes to the input. */
static void test_escape_all_bytes(void)
{
	unsigned char all[256];
	char str[256];
	const char *out, *l;
	struct jv v;
	int bad = 0;

	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	for (int i = 1; i < 256; i++)
		str[i - 1] = (char)i;
	str[255] = '\0';

	cap_begin();
	for (int k = 0; k < 8; k++)
		log_event(LOG_INFO, NULL, NULL, "bytes", LOG_BYTES("head", all + 32 * k, 32), LOG_END);
	log_event(LOG_INFO, NULL, NULL, "str", LOG_STR("s", str), LOG_STR("\"k\\", "v"), LOG_END);
	log_event(LOG_INFO, NULL, NULL, str, LOG_END); /* hostile event name */
	out = cap_end();
	CHECK(count_lines(out, NULL) == 10 && bad_json_lines(out) == 0, "json: %s", out);
	for (size_t i = 0; i < cap_len; i++)
		if ((unsigned char)out[i] < 0x20 ? out[i] != '\n' : (unsigned char)out[i] >= 0x7f)
			bad++;
	CHECK(bad == 0, "%d raw bytes outside printable ASCII", bad);
	l = out;
	for (int k = 0; k < 8; k++) {
		CHECK(jget(l, "head", &v) && v.n == 32 && memcmp(v.s, all + 32 * k, 32) == 0,
		      "bytes chunk %d decodes", k);
		l = strchr(l, '\n') + 1;
	}
	CHECK(jget(l, "s", &v) && v.n == 255 && memcmp(v.s, str, 255) == 0, "string decodes");
	CHECK(jis(l, "\"k\\", "v"), "escaped key");
	l = strchr(l, '\n') + 1;
	CHECK(jget(l, "event", &v) && v.n == 255 && memcmp(v.s, str, 255) == 0, "event decodes");
}

static void test_bytes_truncated(void)
{
	char big[100];
	const char *out;
	struct jv v;
	memset(big, 'A', sizeof(big));
	big[31] = 'Z';
	big[32] = 'Y';
	cap_begin();
	log_event(LOG_INFO, NULL, NULL, "t", LOG_BYTES("head", big, sizeof(big)),
		  LOG_U64("size", sizeof(big)), LOG_END);
	out = cap_end();
	CHECK(jget(out, "head", &v) && v.n == 32 && v.s[31] == 'Z', "32 bytes kept: %s", out);
	CHECK(jis(out, "size", "100") && strstr(out, "truncated") == NULL, "%s", out);
}

/* A line over 4 KiB: cut at a field or escape boundary, still valid. */
static void test_huge_line(void)
{
	static char huge[10000], ctl[5000];
	const char *out;
	struct jv v;
	memset(huge, 'a', sizeof(huge) - 1);
	memset(ctl, 1, sizeof(ctl) - 1);

	cap_begin();
	log_event(LOG_INFO, &(struct log_ctx){ .route = "r" }, NULL, "big", LOG_STR("s", huge),
		  LOG_U64("after", 1), LOG_END);
	log_event(LOG_INFO, NULL, NULL, "big", LOG_STR("s", ctl), LOG_END);
	log_event(LOG_INFO, NULL, NULL, "big", LOG_U64("a", 1), LOG_STR("s1", huge + 8000),
		  LOG_STR("s2", huge + 8000), LOG_STR("s3", huge + 8000), LOG_U64("z", 2), LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 3 && bad_json_lines(out) == 0, "valid: %.200s", out);
	for (const char *l = out; *l; l = strchr(l, '\n') + 1) {
		size_t len = (size_t)(strchr(l, '\n') - l) + 1;
		CHECK(len <= 4096, "line length %zu", len);
		CHECK(memmem(l, len, "\"truncated\":true}\n", 18) != NULL, "marked");
	}
	CHECK(jget(out, "s", &v) && v.n > 3000 && jis(out, "route", "r"), "kept prefix");
	CHECK(!jget(out, "after", &v), "later field dropped");
	out = strchr(out, '\n') + 1;
	out = strchr(out, '\n') + 1;
	CHECK(jis(out, "a", "1") && jget(out, "s1", &v) && jget(out, "s2", &v) &&
		      !jget(out, "z", &v),
	      "whole fields kept, later dropped");
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_ratelimit(void)
{
	struct log_ratelimit rl;
	struct log_ctx ctx = { .route = "r" };
	const char *out;

	memset(&rl, 0, sizeof(rl)); /* zero is valid */
	cap_begin();
	log_event(LOG_INFO, &ctx, &rl, "drop", LOG_END);
	/* Freeze refill so the count is exact however slow the machine. */
	rl.src[0].slot[0].last_ms = mono_ms() + 3600 * 1000;
	for (int i = 0; i < 149; i++)
		log_event(LOG_INFO, &ctx, &rl, "drop", LOG_U64("i", i), LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 100, "burst: %zu lines", count_lines(out, NULL));
	CHECK(strcmp(rl.src[0].slot[0].event, "drop") == 0 && rl.src[0].slot[0].suppressed == 50,
	      "pending %llu", (unsigned long long)rl.src[0].slot[0].suppressed);

	/* error is never limited and leaves the count alone; another event
	 * has its own bucket. */
	cap_begin();
	log_event(LOG_ERROR, &ctx, &rl, "drop", LOG_END);
	log_event(LOG_INFO, &ctx, &rl, "deny", LOG_END);
	log_event(LOG_INFO, &ctx, &rl, "drop", LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 2 && strstr(out, "suppressed") == NULL, "%s", out);
	CHECK(rl.src[0].slot[0].suppressed == 51 && strcmp(rl.src[0].slot[1].event, "deny") == 0, "slots");

	/* flush reports and resets. */
	cap_begin();
	log_ratelimit_flush(&ctx, &rl);
	log_ratelimit_flush(&ctx, &rl);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 1 && bad_json_lines(out) == 0, "flush: %s", out);
	CHECK(jis(out, "event", "suppressed") && jis(out, "of", "drop") && jis(out, "count", "51") &&
		      jis(out, "route", "r") && jis(out, "level", "warn"),
	      "flush: %s", out);

	/* One second of refill = 20 lines; the next written line carries the
	 * count of those suppressed since. */
	rl.src[0].slot[0].tokens = 0;
	rl.src[0].slot[0].last_ms = mono_ms() - 1000;
	cap_begin();
	for (int i = 0; i < 30; i++)
		log_event(LOG_INFO, &ctx, &rl, "drop", LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 20, "refill: %zu lines", count_lines(out, NULL));
	CHECK(rl.src[0].slot[0].suppressed == 10, "pending %llu", (unsigned long long)rl.src[0].slot[0].suppressed);
	rl.src[0].slot[0].tokens = 1;
	rl.src[0].slot[0].last_ms = mono_ms() + 3600 * 1000;
	cap_begin();
	log_event(LOG_INFO, &ctx, &rl, "drop", LOG_STR("k", "v"), LOG_END);
	log_ratelimit_flush(&ctx, &rl);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 1 && jis(out, "suppressed", "10") && jis(out, "k", "v"),
	      "carried: %s", out);
	CHECK(strstr(out, "\"route\":\"r\",\"suppressed\":10,\"k\":\"v\"}") != NULL, "%s", out);

	/* Level filtering comes first: filtered lines use no tokens. */
	log_setup(LOG_WARN, LOG_FORMAT_JSON);
	rl.src[0].slot[1].tokens = 1;
	rl.src[0].slot[1].last_ms = mono_ms() + 3600 * 1000;
	cap_begin();
	log_event(LOG_INFO, &ctx, &rl, "deny", LOG_END);
	log_event(LOG_WARN, &ctx, &rl, "deny", LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 1 && rl.src[0].slot[1].suppressed == 0, "filter first: %s", out);
	log_setup(LOG_INFO, LOG_FORMAT_JSON);
}

static void test_ratelimit_slots(void)
{
	struct log_ratelimit rl;
	const char *out;
	char name[16];
	memset(&rl, 0, sizeof(rl));
	cap_begin();
	for (int e = 0; e < LOG_RL_EVENTS + 2; e++) {
		snprintf(name, sizeof(name), "ev%d", e);
		log_event(LOG_INFO, NULL, &rl, name, LOG_END);
	}
	out = cap_end();
	CHECK(count_lines(out, NULL) == LOG_RL_EVENTS + 2, "all written");
	CHECK(strcmp(rl.src[0].slot[LOG_RL_EVENTS - 2].event, "ev6") == 0 &&
		      strcmp(rl.src[0].slot[LOG_RL_EVENTS - 1].event, "*") == 0,
	      "overflow slot '%s'", rl.src[0].slot[LOG_RL_EVENTS - 1].event);
	/* Events without a slot share the "*" bucket. */
	rl.src[0].slot[LOG_RL_EVENTS - 1].tokens = 0;
	rl.src[0].slot[LOG_RL_EVENTS - 1].last_ms = mono_ms() + 3600 * 1000;
	cap_begin();
	log_event(LOG_INFO, NULL, &rl, "ev8", LOG_END);
	log_event(LOG_INFO, NULL, &rl, "other", LOG_END);
	log_event(LOG_INFO, NULL, &rl, "ev0", LOG_END);
	log_ratelimit_flush(NULL, &rl);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 2 && strstr(out, "\"event\":\"ev0\"") &&
		      strstr(out, "\"of\":\"*\",\"count\":2"),
	      "shared: %s", out);

	/* No limiter: never limited. */
	cap_begin();
	for (int i = 0; i < 500; i++)
		log_event(LOG_INFO, NULL, NULL, "flood", LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 500, "unlimited");
	log_ratelimit_flush(NULL, NULL); /* no crash */
}

/* Per source address: a flood from one hides nothing of another's, a
 * source's connections share its bucket, counts are reported per peer,
 * and the table stays bounded. */
static void test_ratelimit_sources(void)
{
	static struct log_ratelimit rl;
	struct log_ctx a1 = { .route = "r", .conn = 1, .peer = "10.0.0.1:4000" };
	struct log_ctx a2 = { .route = "r", .conn = 2, .peer = "10.0.0.1:4001" };
	struct log_ctx b = { .route = "r", .conn = 3, .peer = "[fd00::2]:5000" };
	struct log_ctx route = { .route = "r" };
	const char *out;
	char peer[32];

	memset(&rl, 0, sizeof(rl));
	cap_begin();
	log_event(LOG_INFO, &a1, &rl, "drop", LOG_END);
	rl.src[0].slot[0].last_ms = mono_ms() + 3600 * 1000; /* no refill: exact counts */
	for (int i = 0; i < 99; i++)
		log_event(LOG_INFO, i % 2 ? &a1 : &a2, &rl, "drop", LOG_END);
	for (int i = 0; i < 50; i++)
		log_event(LOG_INFO, &a2, &rl, "drop", LOG_END); /* same address, other port */
	log_event(LOG_INFO, &b, &rl, "drop", LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 101, "a's burst then b's first line: %zu", count_lines(out, NULL));
	CHECK(count_lines(out, "\"peer\":\"[fd00::2]:5000\"") == 1, "b's line shows");
	CHECK(strcmp(rl.src[0].addr, "10.0.0.1") == 0 && rl.src[0].slot[0].suppressed == 50 &&
		      strcmp(rl.src[1].addr, "[fd00::2]") == 0,
	      "table: '%s' %llu '%s'", rl.src[0].addr, (unsigned long long)rl.src[0].slot[0].suppressed,
	      rl.src[1].addr);

	cap_begin();
	log_ratelimit_flush(&route, &rl);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 1 && jis(out, "event", "suppressed") && jis(out, "peer", "10.0.0.1") &&
		      jis(out, "of", "drop") && jis(out, "count", "50") && jis(out, "route", "r"),
	      "per-peer count: %s", out);

	/* Bounded: the 65th address evicts the least recently logged one,
	 * whose pending count is reported first. */
	rl.src[0].slot[0].suppressed = 7;
	cap_begin();
	for (int i = 0; i < LOG_RL_SOURCES - 1; i++) {
		struct log_ctx c = { .route = "r", .peer = peer };
		snprintf(peer, sizeof(peer), "10.1.0.%d:1", i);
		log_event(LOG_INFO, &c, &rl, "accept", LOG_END);
	}
	out = cap_end();
	CHECK(count_lines(out, NULL) == LOG_RL_SOURCES &&
		      count_lines(out, "\"event\":\"suppressed\"") == 1 &&
		      strstr(out, "\"peer\":\"10.0.0.1\",\"of\":\"drop\",\"count\":7") != NULL,
	      "eviction: %s", out);
	for (int i = 0; i < LOG_RL_SOURCES; i++)
		CHECK(strcmp(rl.src[i].addr, "10.0.0.1") != 0, "evicted");

	/* Many addresses together stop at the route-wide bucket; what it
	 * refuses is counted for each source. */
	memset(&rl, 0, sizeof(rl));
	cap_begin();
	log_event(LOG_INFO, &a1, &rl, "drop", LOG_END);
	rl.total.tokens = 2;
	rl.total.last_ms = mono_ms() + 3600 * 1000;
	log_event(LOG_INFO, &a1, &rl, "drop", LOG_END);
	log_event(LOG_INFO, &b, &rl, "drop", LOG_END);
	log_event(LOG_INFO, &b, &rl, "drop", LOG_END);
	log_event(LOG_INFO, &a1, &rl, "drop", LOG_END);
	out = cap_end();
	CHECK(count_lines(out, NULL) == 3 && rl.src[0].slot[0].suppressed == 1 &&
		      rl.src[1].slot[0].suppressed == 1,
	      "route-wide: %s", out);
}

/* Concurrent writers on one pipe: lines never interleave. */
static void test_atomic_lines(void)
{
	int fds[2], bad = 0, lines = 0;
	pid_t kids[4];
	char chunk[65536];
	static char all[4 * 300 * 4200];
	size_t n = 0;
	ssize_t r;

	if (pipe(fds) != 0) {
		CHECK(0, "pipe");
		return;
	}
	fflush(stdout);
	for (int k = 0; k < 4; k++) {
		kids[k] = fork();
		if (kids[k] == 0) {
			char val[3000];
			memset(val, 'a' + k, sizeof(val) - 1);
			val[sizeof(val) - 1] = '\0';
			dup2(fds[1], STDERR_FILENO);
			close(fds[0]);
			for (int i = 0; i < 300; i++)
				log_event(LOG_INFO, NULL, NULL, "w", LOG_STR("v", val), LOG_END);
			_exit(0);
		}
	}
	close(fds[1]);
	while ((r = read(fds[0], chunk, sizeof(chunk))) > 0 && n + (size_t)r < sizeof(all)) {
		memcpy(all + n, chunk, (size_t)r);
		n += (size_t)r;
	}
	close(fds[0]);
	for (int k = 0; k < 4; k++)
		waitpid(kids[k], NULL, 0);
	all[n] = '\0';
	bad = (int)bad_json_lines(all);
	lines = (int)count_lines(all, NULL);
	CHECK(lines == 1200 && bad == 0, "%d lines, %d bad", lines, bad);
}

int main(void)
{
	saved_stderr = dup(STDERR_FILENO);
	test_json_basic();
	test_levels();
	test_text();
	test_escape_table();
	test_escape_limits();
	test_escape_all_bytes();
	test_bytes_truncated();
	test_huge_line();
	test_ratelimit();
	test_ratelimit_slots();
	test_ratelimit_sources();
	test_atomic_lines();
	free(cap_buf);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
