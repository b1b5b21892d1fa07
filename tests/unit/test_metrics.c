/* Unit tests for metrics: counting, the reason bound, live and removed
 * routes, and the text exposition, checked by parsing the rendered output
 * line by line (every sample after its family's # HELP and # TYPE, families
 * contiguous, label values unescaped back to what was counted). The HTTP
 * endpoint is exercised in-process with libevent's own HTTP client. */
#include "zmtpfw/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "unit_check.h"

/* ---- a strict parser of the text format ---- */

#define MAX_SAMPLES 4096
#define MAX_LABELS 4
#define MAX_FAMILIES 64

struct sample {
	char name[96];
	int n_labels;
	char key[MAX_LABELS][16];
	char val[MAX_LABELS][128]; /* unescaped */
	char value[32];            /* as written */
};

struct family {
	char name[96];
	char type[16];
	char help[256]; /* unescaped */
	int n_help, n_type;
	int n_samples;
};

static struct sample samples[MAX_SAMPLES];
static int n_samples;
static struct family families[MAX_FAMILIES];
static int n_families;
static int parse_errors;

static struct family *family_get(const char *name)
{
	for (int i = 0; i < n_families; i++)
		if (strcmp(families[i].name, name) == 0)
			return &families[i];
	return NULL;
}

#define PERR(...)                                  \
	do {                                       \
		parse_errors++;                    \
		printf("PARSE line %d: ", lineno); \
		printf(__VA_ARGS__);               \
		putchar('\n');                     \
	} while (0)

static bool valid_name(const char *s)
{
	if (!*s)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
		      *p == ':' || (p != s && *p >= '0' && *p <= '9')))
			return false;
	return true;
}

/* Parse the whole exposition; families and samples go to the arrays. */
static void parse_exposition(const char *text, size_t len)
{
	int lineno = 0;
	struct family *cur = NULL; /* family whose samples may follow */
	const char *p = text, *end = text + len;

	n_samples = n_families = parse_errors = 0;
	if (len == 0 || text[len - 1] != '\n')
		parse_errors++, printf("PARSE: output does not end with a newline\n");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[1024];
		lineno++;
		if (n >= sizeof(line)) {
			PERR("too long");
			p += n + 1;
			continue;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		p += n + 1;
		if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
			bool help = line[2] == 'H';
			char *name = line + 7, *sp = strchr(name, ' ');
			if (!sp) {
				PERR("comment without text: %s", line);
				continue;
			}
			*sp = '\0';
			struct family *f = family_get(name);
			if (f == NULL) {
				if (n_families == MAX_FAMILIES) {
					PERR("too many families");
					continue;
				}
				f = &families[n_families++];
				memset(f, 0, sizeof(*f));
				snprintf(f->name, sizeof(f->name), "%.95s", name);
			} else if (f != cur || f->n_samples > 0) {
				PERR("%s: HELP/TYPE repeated or after samples", name);
			}
			if (!valid_name(name))
				PERR("bad metric name '%s'", name);
			cur = f;
			if (help) {
				f->n_help++;
				/* HELP escaping: \\ and \n only */
				size_t o = 0;
				for (const char *s = sp + 1; *s && o + 1 < sizeof(f->help); s++) {
					if (*s == '\\') {
						s++;
						if (*s == 'n')
							f->help[o++] = '\n';
						else if (*s == '\\')
							f->help[o++] = '\\';
						else
							PERR("bad HELP escape");
					} else if (*s == '\n') {
						PERR("raw newline");
					} else {
						f->help[o++] = *s;
					}
				}
				f->help[o] = '\0';
			} else {
				f->n_type++;
				snprintf(f->type, sizeof(f->type), "%.15s", sp + 1);
				if (strcmp(f->type, "counter") && strcmp(f->type, "gauge"))
					PERR("bad type '%s'", f->type);
				if (f->n_help == 0)
					PERR("%s: TYPE before HELP", name);
			}
			continue;
		}
		if (line[0] == '#' || line[0] == '\0') {
			PERR("unexpected line '%s'", line);
			continue;
		}
		if (n_samples == MAX_SAMPLES) {
			PERR("too many samples");
			continue;
		}
		struct sample *s = &samples[n_samples++];
		memset(s, 0, sizeof(*s));
		char *q = line;
		size_t k = 0;
		while (*q && *q != '{' && *q != ' ' && k + 1 < sizeof(s->name))
			s->name[k++] = *q++;
		s->name[k] = '\0';
		if (!valid_name(s->name))
			PERR("bad sample name '%s'", s->name);
		if (*q == '{') {
			q++;
			for (;;) {
				if (s->n_labels == MAX_LABELS) {
					PERR("too many labels");
					break;
				}
				int li = s->n_labels++;
				k = 0;
				while (*q && *q != '=' && k + 1 < sizeof(s->key[li]))
					s->key[li][k++] = *q++;
				s->key[li][k] = '\0';
				if (!valid_name(s->key[li]) || q[0] != '=' || q[1] != '"') {
					PERR("bad label start at '%s'", q);
					break;
				}
				q += 2;
				k = 0;
				while (*q && *q != '"') {
					char ch = *q++;
					if (ch == '\\') {
						ch = *q++;
						if (ch == 'n')
							ch = '\n';
						else if (ch != '\\' && ch != '"') {
							PERR("bad escape \\%c", ch);
							break;
						}
					}
					if (k + 1 < sizeof(s->val[li]))
						s->val[li][k++] = ch;
				}
				s->val[li][k] = '\0';
				if (*q != '"') {
					PERR("unterminated label value");
					break;
				}
				q++;
				for (int j = 0; j < li; j++)
					if (strcmp(s->key[j], s->key[li]) == 0)
						PERR("duplicate label %s", s->key[li]);
				if (*q == ',') {
					q++;
					continue;
				}
				if (*q == '}') {
					q++;
					break;
				}
				PERR("expected , or } at '%s'", q);
				break;
			}
		}
		if (*q != ' ') {
			PERR("no space before value: '%s'", line);
			continue;
		}
		q++;
		snprintf(s->value, sizeof(s->value), "%.31s", q);
		char *e;
		errno = 0;
		if (s->value[0] == '-')
			(void)strtoll(s->value, &e, 10);
		else
			(void)strtoull(s->value, &e, 10);
		if (errno || e == s->value || *e)
			PERR("bad value '%s'", s->value);
		if (cur == NULL || strcmp(cur->name, s->name) != 0)
			PERR("sample %s outside its family (HELP/TYPE missing or families interleaved)",
			     s->name);
		else if (cur->n_help != 1 || cur->n_type != 1)
			PERR("sample %s: family has %d HELP, %d TYPE", s->name, cur->n_help,
			     cur->n_type);
		else
			cur->n_samples++;
	}
	/* every series appears once */
	for (int i = 0; i < n_samples; i++)
		for (int j = i + 1; j < n_samples; j++) {
			bool same = strcmp(samples[i].name, samples[j].name) == 0 &&
				    samples[i].n_labels == samples[j].n_labels;
			for (int l = 0; same && l < samples[i].n_labels; l++)
				same = !strcmp(samples[i].key[l], samples[j].key[l]) &&
				       !strcmp(samples[i].val[l], samples[j].val[l]);
			if (same) {
				parse_errors++;
				printf("PARSE: duplicate series %s\n", samples[i].name);
			}
		}
}

/* The value of the series with exactly these labels ("k=v" strings, any
 * order, NULL terminated), or NULL when absent. */
static const char *find_v(const char *name, const char *const *labels)
{
	for (int i = 0; i < n_samples; i++) {
		struct sample *s = &samples[i];
		int want = 0;
		if (strcmp(s->name, name) != 0)
			continue;
		for (; labels[want]; want++)
			;
		if (want != s->n_labels)
			continue;
		bool all = true;
		for (int w = 0; all && labels[w]; w++) {
			const char *eq = strchr(labels[w], '=');
			bool hit = false;
			for (int l = 0; l < s->n_labels && !hit; l++)
				hit = strlen(s->key[l]) == (size_t)(eq - labels[w]) &&
				      !strncmp(s->key[l], labels[w], (size_t)(eq - labels[w])) &&
				      !strcmp(s->val[l], eq + 1);
			all = hit;
		}
		if (all)
			return s->value;
	}
	return NULL;
}
#define FIND(name, ...) find_v(name, (const char *const[]){ __VA_ARGS__, NULL })
#define FIND0(name) find_v(name, (const char *const[]){ NULL })

static int count_samples(const char *name)
{
	int n = 0;
	for (int i = 0; i < n_samples; i++)
		n += strcmp(samples[i].name, name) == 0;
	return n;
}

static char *render(size_t *len)
{
	struct evbuffer *b = evbuffer_new();
	char *text;
	if (!b || metrics_render(b) != 0) {
		printf("render failed\n");
		exit(2);
	}
	*len = evbuffer_get_length(b);
	text = malloc(*len + 1);
	evbuffer_remove(b, text, *len);
	text[*len] = '\0';
	evbuffer_free(b);
	return text;
}

static void render_parse(void)
{
	size_t len;
	char *text = render(&len);
	parse_exposition(text, len);
	if (parse_errors)
		printf("---- output ----\n%s----\n", text);
	free(text);
}

#define EQ(got, want) CHECK((got) && strcmp((got), (want)) == 0, "%s: got %s, want %s", #got, \
			    (got) ? (got) : "(absent)", (want))

/* ---- tests ---- */

static void test_registry(void)
{
	struct metrics_route *a = metrics_route_get("alpha");
	struct metrics_route *b = metrics_route_get("beta");
	CHECK(a && b && a != b, "entries created");
	CHECK(metrics_route_get("alpha") == a, "same name, same entry");
	CHECK(a->live && b->live, "new entries are live");
	CHECK(metrics_global() != NULL && metrics_global() != a, "global entry");
	CHECK(strcmp(metrics_global()->name, "") == 0, "global has no name");

	metrics_add(a, METRICS_MSGS_FORWARDED, METRICS_DIR_UP, 3);
	metrics_add(a, METRICS_MSGS_FORWARDED, METRICS_DIR_DOWN, 2);
	metrics_add(a, METRICS_MSGS_FORWARDED, METRICS_DIR_UP, 4);
	metrics_add(NULL, METRICS_MSGS_FORWARDED, METRICS_DIR_UP, 4); /* ignored */
	CHECK(a->v[METRICS_MSGS_FORWARDED][METRICS_DIR_UP] == 7, "up sum");
	CHECK(a->v[METRICS_MSGS_FORWARDED][METRICS_DIR_DOWN] == 2, "down sum");
	metrics_gauge(a, METRICS_CONN_ACTIVE, 1);
	metrics_gauge(a, METRICS_CONN_ACTIVE, 1);
	metrics_gauge(a, METRICS_CONN_ACTIVE, -1);
	CHECK(a->v[METRICS_CONN_ACTIVE][0] == 1, "gauge +1+1-1");
	metrics_add_reason(NULL, METRICS_CONN_REJECTED, METRICS_DIR_NONE, "x", 1); /* no crash */
	metrics_free_all();
}

static void test_reasons_and_bound(void)
{
	struct metrics_route *r = metrics_route_get("r");
	char buf[32];

	metrics_add_reason(r, METRICS_CONN_REJECTED, METRICS_DIR_NONE, "not-allowed", 1);
	/* same text from another buffer: same series (keyed by content) */
	snprintf(buf, sizeof(buf), "%s", "not-allowed");
	metrics_add_reason(r, METRICS_CONN_REJECTED, METRICS_DIR_NONE, buf, 2);
	CHECK(r->n_reasons == 1, "one series, got %u", r->n_reasons);
	/* same reason, other direction / metric: other series */
	metrics_add_reason(r, METRICS_MSGS_DROPPED, METRICS_DIR_UP, "pickle", 1);
	metrics_add_reason(r, METRICS_MSGS_DROPPED, METRICS_DIR_DOWN, "pickle", 5);
	CHECK(r->n_reasons == 3, "three series, got %u", r->n_reasons);

	/* fill up to the bound with distinct reasons, reusing one buffer:
	 * the registry must copy */
	for (unsigned i = r->n_reasons; i < METRICS_MAX_REASONS; i++) {
		snprintf(buf, sizeof(buf), "r%u", i);
		metrics_add_reason(r, METRICS_CONN_CLOSED, METRICS_DIR_NONE, buf, 1);
	}
	CHECK(r->n_reasons == METRICS_MAX_REASONS, "full: %u", r->n_reasons);
	/* 100 more distinct reasons: all fold into one "other" series */
	for (unsigned i = 0; i < 100; i++) {
		snprintf(buf, sizeof(buf), "new%u", i);
		metrics_add_reason(r, METRICS_CONN_CLOSED, METRICS_DIR_NONE, buf, 1);
	}
	CHECK(r->n_reasons == METRICS_MAX_REASONS + 1, "one extra 'other': %u", r->n_reasons);
	/* existing reasons still count into themselves */
	metrics_add_reason(r, METRICS_CONN_REJECTED, METRICS_DIR_NONE, "not-allowed", 10);
	metrics_add_reason(r, METRICS_CONN_CLOSED, METRICS_DIR_NONE, "r3", 1);
	/* new reasons of other (id, dir) get their own "other", once */
	metrics_add_reason(r, METRICS_MSGS_DROPPED, METRICS_DIR_DOWN, "size", 1);
	metrics_add_reason(r, METRICS_MSGS_DROPPED, METRICS_DIR_DOWN, "size2", 1);
	CHECK(r->n_reasons == METRICS_MAX_REASONS + 2, "bounded: %u", r->n_reasons);

	render_parse();
	CHECK(parse_errors == 0, "parse errors: %d", parse_errors);
	EQ(FIND("zmtpfw_connections_rejected_total", "route=r", "reason=not-allowed"), "13");
	EQ(FIND("zmtpfw_messages_dropped_total", "route=r", "direction=client_to_worker",
		"reason=pickle"),
	   "1");
	EQ(FIND("zmtpfw_messages_dropped_total", "route=r", "direction=worker_to_client",
		"reason=pickle"),
	   "5");
	EQ(FIND("zmtpfw_messages_dropped_total", "route=r", "direction=worker_to_client",
		"reason=other"),
	   "2");
	EQ(FIND("zmtpfw_connections_closed_total", "route=r", "reason=r3"), "2");
	EQ(FIND("zmtpfw_connections_closed_total", "route=r", "reason=r255"), "1");
	EQ(FIND("zmtpfw_connections_closed_total", "route=r", "reason=other"), "100");
	CHECK(FIND("zmtpfw_connections_closed_total", "route=r", "reason=new0") == NULL,
	      "folded reason not rendered");
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(buf, sizeof(buf), "x%u", i);
		metrics_add_reason(r, (enum metrics_id)(i % METRICS_COUNT), (enum metrics_dir)(i % 2),
				   buf, 1);
	}
	CHECK(r->n_reasons <= METRICS_MAX_REASONS + 2 * METRICS_COUNT, "hard bound: %u",
	      r->n_reasons);
	render_parse();
	CHECK(parse_errors == 0, "parse errors after flooding: %d", parse_errors);
	/* long reasons are truncated, not overflowing */
	metrics_free_all();
	r = metrics_route_get("r");
	char longr[200];
	memset(longr, 'a', sizeof(longr) - 1);
	longr[sizeof(longr) - 1] = '\0';
	metrics_add_reason(r, METRICS_CONN_CLOSED, METRICS_DIR_NONE, longr, 1);
	metrics_add_reason(r, METRICS_CONN_CLOSED, METRICS_DIR_NONE, longr, 1);
	metrics_add_reason(r, METRICS_CONN_CLOSED, METRICS_DIR_NONE, NULL, 1);
	CHECK(r->n_reasons == 2, "truncated reason keyed once, NULL is 'unknown': %u",
	      r->n_reasons);
	render_parse();
	longr[METRICS_REASON_MAX_LEN - 1] = '\0';
	char lab[220];
	snprintf(lab, sizeof(lab), "reason=%s", longr);
	EQ(FIND("zmtpfw_connections_closed_total", "route=r", lab), "2");
	EQ(FIND("zmtpfw_connections_closed_total", "route=r", "reason=unknown"), "1");
	metrics_free_all();
}

static void test_render_format(void)
{
	struct metrics_route *a = metrics_route_get("alpha");
	struct metrics_route *odd = metrics_route_get("we\"ird\\na\nme");

	metrics_add(a, METRICS_CONN_ACCEPTED, METRICS_DIR_NONE, 5);
	metrics_gauge(a, METRICS_CONN_ACTIVE, 2);
	metrics_add(a, METRICS_BYTES, METRICS_DIR_UP, 1000);
	metrics_add(a, METRICS_BYTES, METRICS_DIR_DOWN, 18446744073709551615ull);
	metrics_add(a, METRICS_FRAMES_FORWARDED, METRICS_DIR_UP, 9);
	metrics_add_reason(a, METRICS_HANDSHAKE_FAILED, METRICS_DIR_NONE, "greeting", 2);
	metrics_add_reason(a, METRICS_CONN_REJECTED, METRICS_DIR_NONE, "bad\"re\\as\non", 1);
	metrics_gauge(odd, METRICS_CONN_ACTIVE, -3); /* wrapped below 0: rendered signed */
	metrics_add_reason(metrics_global(), METRICS_RELOADS, METRICS_DIR_NONE,
			   METRICS_RESULT_SUCCESS, 2);

	render_parse();
	CHECK(parse_errors == 0, "parse errors: %d", parse_errors);

	/* every family of the table, once, with the right type and help */
	CHECK(n_families == METRICS_COUNT, "families %d, want %d", n_families, METRICS_COUNT);
	struct family *f;
	f = family_get("zmtpfw_connections_active");
	CHECK(f && strcmp(f->type, "gauge") == 0, "active is a gauge");
	f = family_get("zmtpfw_relayed_bytes_total");
	CHECK(f && strcmp(f->type, "counter") == 0 && f->help[0], "bytes counter with help");
	f = family_get("zmtpfw_build_info");
	CHECK(f && strcmp(f->type, "gauge") == 0, "build info gauge");
	for (int i = 0; i < n_families; i++) {
		if (strcmp(families[i].type, "counter") == 0) {
			size_t l = strlen(families[i].name);
			CHECK(l > 6 && strcmp(families[i].name + l - 6, "_total") == 0,
			      "counter %s ends in _total", families[i].name);
		}
		CHECK(strncmp(families[i].name, "zmtpfw_", 7) == 0, "prefix %s", families[i].name);
	}

	EQ(FIND("zmtpfw_connections_accepted_total", "route=alpha"), "5");
	EQ(FIND("zmtpfw_connections_active", "route=alpha"), "2");
	EQ(FIND("zmtpfw_relayed_bytes_total", "route=alpha", "direction=client_to_worker"), "1000");
	EQ(FIND("zmtpfw_relayed_bytes_total", "route=alpha", "direction=worker_to_client"),
	   "18446744073709551615");
	EQ(FIND("zmtpfw_frames_forwarded_total", "route=alpha", "direction=client_to_worker"), "9");
	/* direction series exist at 0 */
	EQ(FIND("zmtpfw_frames_forwarded_total", "route=alpha", "direction=worker_to_client"), "0");
	EQ(FIND("zmtpfw_messages_forwarded_total", "route=alpha", "direction=client_to_worker"),
	   "0");
	EQ(FIND("zmtpfw_handshake_failures_total", "route=alpha", "reason=greeting"), "2");
	/* reason series appear only once counted */
	CHECK(count_samples("zmtpfw_messages_dropped_total") == 0, "no drops yet: %d",
	      count_samples("zmtpfw_messages_dropped_total"));
	CHECK(count_samples("zmtpfw_upstream_connect_failures_total") == 0, "no failures yet");
	/* escaping round-trips */
	EQ(FIND("zmtpfw_connections_rejected_total", "route=alpha", "reason=bad\"re\\as\non"), "1");
	EQ(FIND("zmtpfw_connections_active", "route=we\"ird\\na\nme"), "-3");
	EQ(FIND("zmtpfw_connections_accepted_total", "route=we\"ird\\na\nme"), "0");
	/* global series: no route label, both results */
	EQ(FIND("zmtpfw_config_reloads_total", "result=success"), "2");
	EQ(FIND("zmtpfw_config_reloads_total", "result=failure"), "0");
	EQ(FIND("zmtpfw_build_info", "version=" ZMTPFW_VERSION), "1");
	CHECK(count_samples("zmtpfw_build_info") == 1, "one build info");
	/* the global entry never shows up as a route */
	for (int i = 0; i < n_samples; i++)
		for (int l = 0; l < samples[i].n_labels; l++)
			CHECK(!(strcmp(samples[i].key[l], "route") == 0 && samples[i].val[l][0] == 0),
			      "empty route label on %s", samples[i].name);
	/* label order is stable: route first */
	for (int i = 0; i < n_samples; i++)
		if (samples[i].n_labels > 1 && strcmp(samples[i].name, "zmtpfw_config_reloads_total"))
			CHECK(strcmp(samples[i].key[0], "route") == 0, "route first on %s",
			      samples[i].name);

	/* the raw text of some lines, to pin the exact format */
	size_t len;
	char *text = render(&len);
	CHECK(strstr(text, "\nzmtpfw_connections_active{route=\"we\\\"ird\\\\na\\nme\"} -3\n") != NULL,
	      "raw escaped line");
	CHECK(strstr(text, "# TYPE zmtpfw_relayed_bytes_total counter\n") != NULL, "raw TYPE");
	CHECK(strstr(text, "zmtpfw_config_reloads_total{result=\"failure\"} 0\n") != NULL,
	      "raw reload line");
	CHECK(strncmp(text, "# HELP ", 7) == 0, "starts with HELP");
	free(text);
	metrics_free_all();
}

static void test_live_removed(void)
{
	struct metrics_route *a = metrics_route_get("a"), *b = metrics_route_get("b");

	metrics_add(a, METRICS_CONN_ACCEPTED, METRICS_DIR_NONE, 1);
	metrics_add(b, METRICS_CONN_ACCEPTED, METRICS_DIR_NONE, 4);
	metrics_gauge(b, METRICS_CONN_ACTIVE, 1);
	metrics_add_reason(b, METRICS_MSGS_DROPPED, METRICS_DIR_UP, "pickle", 3);

	/* reload: only a (and a new c) stay */
	metrics_routes_begin_update();
	metrics_route_set_live(metrics_route_get("a"));
	metrics_route_set_live(metrics_route_get("c"));
	metrics_route_set_live(NULL); /* no crash */
	CHECK(a->live && !b->live, "a live, b removed");
	render_parse();
	CHECK(parse_errors == 0, "parse errors: %d", parse_errors);
	EQ(FIND("zmtpfw_connections_active", "route=a"), "0");
	EQ(FIND("zmtpfw_connections_active", "route=c"), "0");
	CHECK(FIND("zmtpfw_connections_active", "route=b") == NULL, "removed route: no gauge");
	/* counters of the removed route stay, monotonic */
	EQ(FIND("zmtpfw_connections_accepted_total", "route=b"), "4");
	EQ(FIND("zmtpfw_messages_dropped_total", "route=b", "direction=client_to_worker",
		"reason=pickle"),
	   "3");
	EQ(FIND("zmtpfw_messages_forwarded_total", "route=b", "direction=worker_to_client"), "0");
	/* a retired listener still counts into it */
	metrics_add(b, METRICS_CONN_ACCEPTED, METRICS_DIR_NONE, 1);
	metrics_gauge(b, METRICS_CONN_ACTIVE, -1);
	/* the route comes back: its counters continue, gauge shows again */
	metrics_routes_begin_update();
	metrics_route_set_live(metrics_route_get("b"));
	render_parse();
	EQ(FIND("zmtpfw_connections_accepted_total", "route=b"), "5");
	EQ(FIND("zmtpfw_connections_active", "route=b"), "0");
	CHECK(FIND("zmtpfw_connections_active", "route=a") == NULL, "a removed now");
	metrics_free_all();
}

static void test_misuse_visible(void)
{
	struct metrics_route *a = metrics_route_get("a");
	/* a reason metric counted without a reason: shown as reason="none" */
	metrics_add(a, METRICS_CONN_REJECTED, METRICS_DIR_NONE, 2);
	/* a reason given to a metric without one: counted into the plain series */
	metrics_add_reason(a, METRICS_CONN_ACCEPTED, METRICS_DIR_NONE, "x", 3);
	/* out-of-range direction on a directionless metric: clamped */
	metrics_add_reason(a, METRICS_CONN_REJECTED, (enum metrics_dir)7, "y", 1);
	render_parse();
	CHECK(parse_errors == 0, "parse errors: %d", parse_errors);
	EQ(FIND("zmtpfw_connections_rejected_total", "route=a", "reason=none"), "2");
	EQ(FIND("zmtpfw_connections_rejected_total", "route=a", "reason=y"), "1");
	EQ(FIND("zmtpfw_connections_accepted_total", "route=a"), "3");
	metrics_free_all();
}

static void test_route_bound(void)
{
	char name[32];
	int got = 0;
	int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, STDERR_FILENO); /* the "metrics-full" error line */
	for (int i = 0; i < METRICS_MAX_ROUTES + 10; i++) {
		snprintf(name, sizeof(name), "route%d", i);
		got += metrics_route_get(name) != NULL;
	}
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(devnull);
	CHECK(got == METRICS_MAX_ROUTES, "bounded registry: %d", got);
	CHECK(metrics_route_get("route0") != NULL, "existing names still found");
	metrics_free_all();
	CHECK(metrics_route_get("fresh") != NULL, "usable after free_all");
	metrics_free_all();
}

/* ---- HTTP, in-process ---- */

struct http_result {
	int code;
	char ctype[128];
	char allow[64];
	char body[65536];
	size_t body_len;
	bool done;
};

static struct event_base *hbase;
static int pending;

static void on_response(struct evhttp_request *req, void *arg)
{
	struct http_result *r = arg;
	r->done = true;
	if (req) {
		struct evbuffer *b = evhttp_request_get_input_buffer(req);
		const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req),
						    "Content-Type");
		const char *al = evhttp_find_header(evhttp_request_get_input_headers(req), "Allow");
		r->code = evhttp_request_get_response_code(req);
		snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
		snprintf(r->allow, sizeof(r->allow), "%s", al ? al : "");
		r->body_len = evbuffer_remove(b, r->body, sizeof(r->body) - 1);
		r->body[r->body_len] = '\0';
	}
	if (--pending == 0)
		event_base_loopexit(hbase, NULL);
}

static void request(struct evhttp_connection *cn, enum evhttp_cmd_type cmd, const char *path,
		    struct http_result *r)
{
	struct evhttp_request *req = evhttp_request_new(on_response, r);
	memset(r, 0, sizeof(*r));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "localhost");
	if (cmd == EVHTTP_REQ_POST)
		evbuffer_add(evhttp_request_get_output_buffer(req), "x=1", 3);
	pending++;
	if (evhttp_make_request(cn, req, cmd, path) != 0) {
		printf("make_request failed\n");
		exit(2);
	}
}

static bool ready_flag;
static int ready_calls;
static bool ready_cb(void *arg, struct evbuffer *why)
{
	ready_calls++;
	CHECK(arg == &ready_flag, "callback arg");
	if (!ready_flag)
		evbuffer_add_printf(why, "route a: upstream 127.0.0.1:1 unreachable\n");
	return ready_flag;
}

static uint16_t free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(sin);
	if (s < 0 || bind(s, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(s, (struct sockaddr *)&sin, &l) < 0) {
		perror("free_port");
		exit(2);
	}
	close(s);
	return ntohs(sin.sin_port);
}

static void set_addr(struct config_addr *a, uint16_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
	memset(a, 0, sizeof(*a));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->len = sizeof(*sin);
	snprintf(a->text, sizeof(a->text), "127.0.0.1:%u", port);
}

static void run_loop(void)
{
	struct timeval tmo = { 5, 0 };
	event_base_loopexit(hbase, &tmo); /* never hang */
	event_base_dispatch(hbase);
	CHECK(pending == 0, "%d requests unanswered", pending);
	pending = 0;
}

static void test_http(void)
{
	struct config_addr addr;
	uint16_t port = free_port();
	struct http_result r[8];
	struct metrics_http *h;

	hbase = event_base_new();
	set_addr(&addr, port);
	h = metrics_http_start(hbase, &addr, ready_cb, &ready_flag);
	CHECK(h != NULL, "started");
	if (!h)
		return;
	struct metrics_route *m = metrics_route_get("web");
	metrics_add(m, METRICS_CONN_ACCEPTED, METRICS_DIR_NONE, 42);

	struct evhttp_connection *cn = evhttp_connection_base_new(hbase, NULL, "127.0.0.1", port);
	ready_flag = true;
	request(cn, EVHTTP_REQ_GET, "/metrics", &r[0]);
	request(cn, EVHTTP_REQ_GET, "/healthz", &r[1]);
	request(cn, EVHTTP_REQ_GET, "/readyz", &r[2]);
	request(cn, EVHTTP_REQ_GET, "/nope", &r[3]);
	request(cn, EVHTTP_REQ_POST, "/metrics", &r[4]);
	request(cn, EVHTTP_REQ_HEAD, "/metrics", &r[5]);
	request(cn, EVHTTP_REQ_GET, "/metrics?x=1", &r[6]);
	request(cn, EVHTTP_REQ_DELETE, "/healthz", &r[7]);
	run_loop();

	CHECK(r[0].code == 200, "/metrics %d", r[0].code);
	CHECK(strcmp(r[0].ctype, "text/plain; version=0.0.4; charset=utf-8") == 0, "ctype '%s'",
	      r[0].ctype);
	parse_exposition(r[0].body, r[0].body_len);
	CHECK(parse_errors == 0, "scraped body parses");
	EQ(FIND("zmtpfw_connections_accepted_total", "route=web"), "42");
	CHECK(r[1].code == 200 && strcmp(r[1].body, "ok\n") == 0, "/healthz %d '%s'", r[1].code,
	      r[1].body);
	CHECK(r[2].code == 200 && strcmp(r[2].body, "ready\n") == 0, "/readyz %d '%s'", r[2].code,
	      r[2].body);
	CHECK(r[3].code == 404, "404: %d", r[3].code);
	CHECK(r[4].code == 405 && strcmp(r[4].allow, "GET, HEAD") == 0, "POST 405 %d allow '%s'",
	      r[4].code, r[4].allow);
	CHECK(r[5].code == 200 && r[5].body_len == 0, "HEAD 200 %d, body %zu", r[5].code,
	      r[5].body_len);
	CHECK(r[6].code == 200 && r[6].body_len == r[0].body_len, "query ignored: %d", r[6].code);
	CHECK(r[7].code == 405, "DELETE 405: %d", r[7].code);

	ready_flag = false;
	ready_calls = 0;
	request(cn, EVHTTP_REQ_GET, "/readyz", &r[0]);
	run_loop();
	CHECK(r[0].code == 503, "not ready 503: %d", r[0].code);
	CHECK(strcmp(r[0].body, "not ready\nroute a: upstream 127.0.0.1:1 unreachable\n") == 0,
	      "503 body '%s'", r[0].body);
	CHECK(ready_calls == 1, "ready called once per request: %d", ready_calls);
	evhttp_connection_free(cn);

	/* a second server on the same address fails, logged, NULL */
	int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY);
	dup2(devnull, STDERR_FILENO);
	struct metrics_http *h2 = metrics_http_start(hbase, &addr, NULL, NULL);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(devnull);
	CHECK(h2 == NULL, "bind conflict -> NULL");
	metrics_http_stop(h2); /* NULL is fine */

	/* ready == NULL: always ready; also a fresh connection after stop/start */
	metrics_http_stop(h);
	h = metrics_http_start(hbase, &addr, NULL, NULL);
	CHECK(h != NULL, "restart on the same address");
	cn = evhttp_connection_base_new(hbase, NULL, "127.0.0.1", port);
	request(cn, EVHTTP_REQ_GET, "/readyz", &r[0]);
	run_loop();
	CHECK(r[0].code == 200, "NULL ready: %d", r[0].code);
	evhttp_connection_free(cn);
	metrics_http_stop(h);
	event_base_free(hbase);
	metrics_free_all();
}

int main(void)
{
	test_registry();
	test_reasons_and_bound();
	test_render_format();
	test_live_removed();
	test_misuse_visible();
	test_route_bound();
	test_http();
	printf("test_metrics: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
