/* policy_cli: the operator's side of pickle_globals.
 *
 *   zmtpfw learn [LOGFILE...|-]  turns the drop / would-drop lines of
 *       trusted peers (reason "pickle-global", from a route in log-only
 *       mode with `pickle_globals = [ ];`) into a ready-to-paste
 *       pickle_globals list per route, with counts as comments, leaving
 *       out with a comment what can never be allowed;
 *   zmtpfw profile [NAME]        lists the shipped profiles, or prints one
 *       with where each entry comes from. */
#include "zmtpfw/policy_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zmtpfw/pickle_policy.h"
#include "zmtpfw/pickle_profiles.h"

#define LEARN_LINE_MAX (64 * 1024)
#define LEARN_STR_MAX 512

struct learn_item {
	char route[LEARN_STR_MAX];
	char global[LEARN_STR_MAX];
	unsigned long long count;
};

struct learn {
	struct learn_item *v;
	size_t n, cap;
	unsigned long long lines, shapes, cut;
};

/* Decode the JSON string starting after its opening quote at *p into out;
 * *p ends after the closing quote. Returns 0, or -1 when malformed. */
static int learn_json_str(const char **p, char *out, size_t cap)
{
	const char *s = *p;
	size_t n = 0;
	while (*s && *s != '"') {
		unsigned c = (unsigned char)*s++;
		if (c == '\\') {
			char e = *s++;
			if (e == 'u') {
				unsigned v = 0;
				for (int i = 0; i < 4; i++) {
					char h = *s++;
					v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0' :
						   h >= 'a' && h <= 'f' ? h - 'a' + 10 :
						   h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
					if (v > 0xffff)
						return -1;
				}
				c = v < 0x80 ? v : '?'; /* names of interest are ASCII */
			} else {
				c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' :
				    e == 'b' ? '\b' : e == 'f' ? '\f' : (unsigned char)e;
				if (e == 0)
					return -1;
			}
		}
		if (n + 1 < cap)
			out[n++] = (char)c;
	}
	if (*s != '"')
		return -1;
	out[n] = '\0';
	*p = s + 1;
	return 0;
}

/* The string value of "key" in a log line (top-level keys only appear
 * once per line; values never contain the pattern unescaped). */
static int learn_field(const char *line, const char *key, char *out, size_t cap)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *p = strstr(line, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	return learn_json_str(&p, out, cap);
}

static int learn_add(struct learn *l, const char *route, const char *global)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].route, route) == 0 && strcmp(l->v[i].global, global) == 0) {
			l->v[i].count++;
			return 0;
		}
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct learn_item *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	struct learn_item *it = &l->v[l->n++];
	snprintf(it->route, sizeof(it->route), "%s", route);
	snprintf(it->global, sizeof(it->global), "%s", global);
	it->count = 1;
	return 0;
}

/* One log line: only pickle-global drops (trusted peers under a list). */
static int learn_line(struct learn *l, const char *line)
{
	char ev[32], reason[32], route[LEARN_STR_MAX] = "", g[LEARN_STR_MAX], op[64] = "";
	if (learn_field(line, "event", ev, sizeof(ev)) != 0 ||
	    (strcmp(ev, "drop") != 0 && strcmp(ev, "would-drop") != 0) ||
	    learn_field(line, "reason", reason, sizeof(reason)) != 0 ||
	    strcmp(reason, "pickle-global") != 0)
		return 0;
	(void)learn_field(line, "route", route, sizeof(route));
	(void)learn_field(line, "opcode", op, sizeof(op));
	l->lines++;
	if (op[0] && strcmp(op, "import") != 0)
		l->shapes++;
	if (strstr(line, "\"globals_cut\":true"))
		l->cut++;
	const char *p = strstr(line, "\"globals\":[");
	if (!p)
		return 0;
	p += strlen("\"globals\":[");
	while (*p == '"') {
		p++;
		if (learn_json_str(&p, g, sizeof(g)) != 0)
			return 0;
		if (learn_add(l, route, g) != 0)
			return -1;
		if (*p == ',')
			p++;
	}
	return 0;
}

static int learn_file(struct learn *l, const char *path, char *buf)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!f) {
		perror(path);
		return -1;
	}
	while (fgets(buf, LEARN_LINE_MAX, f)) {
		if (learn_line(l, buf) != 0) {
			fprintf(stderr, "zmtpfw learn: out of memory\n");
			return -1;
		}
	}
	if (f != stdin)
		fclose(f);
	return 0;
}

static int learn_cmp(const void *a, const void *b)
{
	const struct learn_item *x = a, *y = b;
	int c = strcmp(x->route, y->route);
	return c ? c : strcmp(x->global, y->global);
}

/* Why a learned name cannot go in the list, or NULL. */
static const char *learn_refusal(const char *g)
{
	const char *colon = strchr(g, ':');
	if (strcmp(g, "unknown") == 0)
		return "an operand the scanner could not name (computed, or lost): nothing to list; "
		       "find out what sends it";
	if (!colon)
		return "not a module:qualname";
	return ppolicy_refusal(g, (size_t)(colon - g), colon + 1, strlen(colon + 1));
}

/* A name from the log in a comment or a string: it came from a peer, so
 * nothing in it may end the line or the string (\xNN instead). */
static void learn_put(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static void learn_print(struct learn *l, int files)
{
	qsort(l->v, l->n, sizeof(*l->v), learn_cmp);
	printf("# zmtpfw learn: %llu pickle-global line%s from %d file%s\n", l->lines,
	       l->lines == 1 ? "" : "s", files, files == 1 ? "" : "s");
	if (l->shapes)
		printf("# %llu frame%s had a shape no pickler emits (see their opcode field): "
		       "those stay refused whatever the list\n", l->shapes, l->shapes == 1 ? "" : "s");
	if (l->cut)
		printf("# %llu frame%s refused more than %d imports: add these, then learn again\n",
		       l->cut, l->cut == 1 ? "" : "s", PPOLICY_GLOBALS_MAX);
	for (size_t i = 0; i < l->n;) {
		size_t j = i;
		while (j < l->n && strcmp(l->v[j].route, l->v[i].route) == 0)
			j++;
		fputs("\n# route \"", stdout);
		learn_put(l->v[i].route);
		fputs("\"\npickle_globals = [\n", stdout);
		for (size_t k = i; k < j; k++)
			if (!learn_refusal(l->v[k].global))
				printf("    \"%s\", # %llu frame%s\n", l->v[k].global, l->v[k].count,
				       l->v[k].count == 1 ? "" : "s");
		printf("];\n");
		for (size_t k = i; k < j; k++) {
			const char *why = learn_refusal(l->v[k].global);
			if (!why)
				continue;
			fputs("# left out: \"", stdout);
			learn_put(l->v[k].global);
			printf("\" (%llu frame%s): %s\n", l->v[k].count, l->v[k].count == 1 ? "" : "s",
			       why);
		}
		i = j;
	}
}

int policy_cli_learn(int argc, char **argv)
{
	struct learn l = { 0 };
	char *buf = malloc(LEARN_LINE_MAX);
	int files = 0, rc = 0;

	if (!buf)
		return 2;
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		puts("usage: zmtpfw learn [LOGFILE...|-]\n"
		     "Reads zmtpfw's JSON log (stdin without files), keeps the drop and would-drop\n"
		     "lines of trusted peers under pickle_globals (reason \"pickle-global\"), and\n"
		     "prints a pickle_globals list per route, with counts; gadgets and unknown\n"
		     "operands are left out with a comment saying why.");
		free(buf);
		return 0;
	}
	for (int i = 1; i < argc && rc == 0; i++, files++)
		rc = learn_file(&l, argv[i], buf) ? 2 : 0;
	if (argc == 1) {
		rc = learn_file(&l, "-", buf) ? 2 : 0;
		files = 1;
	}
	if (rc == 0)
		learn_print(&l, files);
	free(l.v);
	free(buf);
	return rc;
}

int policy_cli_profile(int argc, char **argv)
{
	size_t n;
	const struct pprof *all = pprof_all(&n);

	if (argc < 2) {
		for (size_t i = 0; i < n; i++)
			printf("@%-16s %3zu entries  %s\n", all[i].name, all[i].n, all[i].summary);
		return 0;
	}
	const char *name = argv[1][0] == '@' ? argv[1] + 1 : argv[1];
	const struct pprof *p = pprof_find(name);
	if (!p) {
		fprintf(stderr, "zmtpfw profile: no profile \"%s\"\n", argv[1]);
		return 2;
	}
	printf("# @%s: %s\npickle_globals = [\n", p->name, p->summary);
	for (size_t i = 0; i < p->n; i++)
		printf("    \"%s\", # %s\n", p->v[i].global, p->v[i].source);
	printf("];\n");
	return 0;
}
