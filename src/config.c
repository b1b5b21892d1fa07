/* config: libconfig file or command-line flags -> validated, immutable
 * struct config. Every error names FILE:LINE (flags: the flag) and the
 * offending text; nothing is silently defaulted, ignored or widened.
 *
 * This file reads the file as a whole: the libconfig 1.5 guards below,
 * the top level and each route through the keyword table (config_kw.c,
 * which reads each value with config_value.c), then what no single key
 * can check: routes' names and listen addresses unique, none on the
 * metrics address. The command-line flags build the same snapshot.
 *
 * Two libconfig 1.5 traps are closed before libconfig sees the file:
 *   - an integer literal beyond 32 bits without an L suffix is silently
 *     wrapped (4294967296 reads as 0), so such literals are rejected;
 *   - @include would let part of the policy live in a file we never
 *     checked, so it is rejected: a config is one file.
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "zmtpfw/pickle_policy.h"

/* Config files are a few KiB; refuse anything that is clearly not one. */
#define CONFIG_FILE_MAX (1u << 20)

/* ---- shared route pieces (file and flags) ---- */

/* The table's defaults; the name is the route's position, and mode is
 * inherited from the global one. */
static void cfg_route_defaults(struct config_route *r, size_t idx, enum config_mode mode)
{
	memset(r, 0, sizeof(*r));
	cfg_kw_defaults(CONFIG_SCOPE_ROUTE, r);
	snprintf(r->name, sizeof(r->name), "route%zu", idx);
	r->mode = mode;
}

/* A config with the table's defaults and room for n routes (zeroed). */
static struct config *cfg_new(const char *path, enum config_mode mode, size_t n)
{
	struct config *c = calloc(1, sizeof(*c));
	if (c == NULL || (n && (c->routes = calloc(n, sizeof(*c->routes))) == NULL)) {
		free(c);
		return NULL;
	}
	cfg_kw_defaults(CONFIG_SCOPE_TOP, c);
	c->n_routes = n;
	c->mode = mode;
	snprintf(c->path, sizeof(c->path), "%s", path);
	return c;
}

void config_ref(struct config *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void config_unref(struct config *c)
{
	/* the last holder frees it, on whichever loop let go last */
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		config_free(c);
}

void config_free(struct config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_routes; i++) {
		free(c->routes[i].allow.v);
		free(c->routes[i].allow_pickle_from.v);
		ppolicy_free(c->routes[i].pickle_globals);
	}
	free(c->routes);
	free(c);
}

/* Comma-separated CIDR list from a flag ("10.0.0.0/8, ::1"). Spaces around
 * entries are trimmed (shell users type them); empty entries are errors.
 * An empty string is an empty list: it admits nobody, as allow = [] does. */
static int cfg_cidr_csv(struct cfg_ctx *x, const char *flag, const char *s,
			struct cidr_list *out)
{
	size_t n = 1, i = 0;
	const char *p = s;
	char item[128];

	out->v = NULL;
	out->n = 0;
	if (s[strspn(s, " \t")] == '\0')
		return 0;
	for (const char *q = s; *q; q++)
		n += *q == ',';
	out->v = calloc(n, sizeof(*out->v));
	if (out->v == NULL)
		return cfg_fail_at(x, 0, "%s: out of memory", flag);
	for (i = 0; i < n; i++) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		const char *err;
		while (len && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0)
			return cfg_fail_at(x, 0, "%s: empty entry in CIDR list '%s'", flag, s);
		if (len >= sizeof(item))
			return cfg_fail_at(x, 0, "%s: bad CIDR '%.*s': too long", flag, (int)len, p);
		memcpy(item, p, len);
		item[len] = '\0';
		if (cidr_parse(item, &out->v[i], &err) != 0)
			return cfg_fail_at(x, 0, "%s: bad CIDR '%s': %s", flag, item, err);
		p = e ? e + 1 : p + len;
	}
	out->n = n;
	return 0;
}

struct config *config_from_flags(const char *listen, const char *upstream, const char *allow,
				 const char *allow_pickle_from, bool log_only, char *err,
				 size_t errlen)
{
	struct cfg_ctx x = { .path = NULL, .err = err, .errlen = errlen };
	enum config_mode mode = log_only ? CONFIG_MODE_LOG_ONLY : CONFIG_MODE_ENFORCE;
	struct config *c = cfg_new("", mode, 1);
	struct config_route *r;
	const char *e;

	if (c == NULL) {
		cfg_fail_at(&x, 0, "out of memory");
		return NULL;
	}
	r = &c->routes[0];
	cfg_route_defaults(r, 0, mode);
	snprintf(r->name, sizeof(r->name), "cli");
	if (listen == NULL || upstream == NULL || allow == NULL) {
		cfg_fail_at(&x, 0, "--%s is required",
			    !listen ? "listen" : !upstream ? "upstream" : "allow");
		goto fail;
	}
	if (config_parse_addr(listen, false, &r->listen, &e) != 0) {
		cfg_fail_at(&x, 0, "--listen: bad address '%s': %s", listen, e);
		goto fail;
	}
	if (config_parse_addr(upstream, true, &r->upstream, &e) != 0) {
		cfg_fail_at(&x, 0, "--upstream: bad address '%s': %s", upstream, e);
		goto fail;
	}
	if (cfg_cidr_csv(&x, "--allow", allow, &r->allow) != 0)
		goto fail;
	if (allow_pickle_from &&
	    cfg_cidr_csv(&x, "--allow-pickle-from", allow_pickle_from, &r->allow_pickle_from) != 0)
		goto fail;
	return c;
fail:
	config_free(c);
	return NULL;
}

/* ---- file: libconfig 1.5 guards ---- */

/* Reject what libconfig 1.5 would misread without telling us: integer
 * literals that do not fit 32 bits and lack the L suffix, and @include.
 * A small lexer: skips strings, comments and names, looks at numbers. */
static int cfg_prescan(struct cfg_ctx *x, const char *b, size_t n)
{
	int line = 1;
	size_t i = 0;

	while (i < n) {
		char ch = b[i];
		if (ch == '\n') {
			line++;
			i++;
		} else if (ch == '"') {
			for (i++; i < n && b[i] != '"'; i++) {
				if (b[i] == '\\' && i + 1 < n)
					i++;
				if (b[i] == '\n')
					line++;
			}
			i++;
		} else if (ch == '#' || (ch == '/' && i + 1 < n && b[i + 1] == '/')) {
			while (i < n && b[i] != '\n')
				i++;
		} else if (ch == '/' && i + 1 < n && b[i + 1] == '*') {
			for (i += 2; i < n && !(b[i] == '*' && i + 1 < n && b[i + 1] == '/'); i++)
				if (b[i] == '\n')
					line++;
			i += 2;
		} else if (ch == '@') {
			return cfg_fail_at(x, line, "@include is not supported: keep the whole "
					   "config in one file");
		} else if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '*' ||
			   ch == '_') {
			while (i < n && (isalnum((unsigned char)b[i]) || b[i] == '_' || b[i] == '*' ||
					 b[i] == '-'))
				i++;
		} else if (ch >= '0' && ch <= '9') {
			/* Floats and L-suffixed integers are safe; a plain
			 * integer must fit a (signed) int. */
			/* b is NUL-terminated. "0x" must be followed by a digit:
			 * strtoull would skip whitespace (and the message would
			 * echo newlines); libconfig rejects such text anyway. */
			bool hex = ch == '0' && (b[i + 1] | 0x20) == 'x' &&
				   isxdigit((unsigned char)b[i + 2]);
			bool neg = !hex && i > 0 && b[i - 1] == '-';
			char *end;
			unsigned long long v = strtoull(b + i + (hex ? 2 : 0), &end, hex ? 16 : 10);
			if (!hex && (*end == '.' || (*end | 0x20) == 'e'))
				(void)strtod(b + i, &end);
			else if (*end != 'L' && v > (neg ? 0x80000000ull : 0x7fffffffull))
				return cfg_fail_at(x, line, "integer %.*s does not fit in 32 bits: "
						   "write %.*sL (without the L suffix libconfig 1.5 "
						   "silently wraps it)", (int)(end - (b + i)), b + i,
						   (int)(end - (b + i)), b + i);
			i = (size_t)(end - b);
		} else {
			i++;
		}
	}
	return 0;
}

/* ---- file: routes and top level ---- */

static int cfg_route(struct cfg_ctx *x, const config_setting_t *g, size_t idx,
		     enum config_mode mode, struct config_route *r)
{
	struct cfg_walk w = { 0 };
	const char *missing, *hint;

	cfg_route_defaults(r, idx, mode);
	r->line = (int)config_setting_source_line(g);
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfg_fail(x, g, "routes: element %zu: expected a group { ... }, got %s", idx,
				cfg_type_name(g));
	if (cfg_kw_walk(x, g, CONFIG_SCOPE_ROUTE, r, &w) != 0)
		return -1;
	if ((missing = cfg_kw_missing(CONFIG_SCOPE_ROUTE, &w, &hint)) != NULL)
		return cfg_fail(x, g, "route '%s': missing '%s'%s", r->name, missing, hint);
	return 0;
}

/* Everything after a successful libconfig parse. */
static int cfg_root(struct cfg_ctx *x, const config_setting_t *root, struct config *c)
{
	struct cfg_walk w = { 0 };
	const config_setting_t *routes;
	int n;

	/* The top level first, routes after: they inherit the global mode
	 * whatever the key order. */
	if (cfg_kw_walk(x, root, CONFIG_SCOPE_TOP, c, &w) != 0)
		return -1;
	if ((routes = w.routes) == NULL)
		return cfg_fail(x, NULL, "no routes defined (routes = ( { ... } );)");
	if (config_setting_type(routes) != CONFIG_TYPE_LIST)
		return cfg_fail(x, routes, "routes: expected a list ( { ... }, ... ), got %s",
				cfg_type_name(routes));
	n = config_setting_length(routes);
	if (n == 0)
		return cfg_fail(x, routes, "no routes defined (routes is empty)");
	if (n > CONFIG_MAX_ROUTES)
		return cfg_fail(x, routes, "too many routes (%d, max %d)", n, CONFIG_MAX_ROUTES);
	c->routes = calloc((size_t)n, sizeof(*c->routes));
	if (c->routes == NULL)
		return cfg_fail(x, routes, "out of memory");
	c->n_routes = (size_t)n;
	for (size_t i = 0; i < c->n_routes; i++) {
		const config_setting_t *g = config_setting_get_elem(routes, (unsigned)i);
		struct config_route *r = &c->routes[i];
		if (cfg_route(x, g, i, c->mode, r) != 0)
			return -1;
		for (size_t j = 0; j < i; j++) {
			if (strcmp(c->routes[j].name, r->name) == 0)
				return cfg_fail(x, g, "duplicate route name '%s' (also at line %d)",
						r->name, c->routes[j].line);
			if (cfg_addr_same(&c->routes[j].listen, &r->listen))
				return cfg_fail(x, g, "route '%s': listen %s is already used by "
						      "route '%s' (line %d)", r->name,
						r->listen.text, c->routes[j].name,
						c->routes[j].line);
			if (cfg_addr_overlap(&c->routes[j].listen, &r->listen))
				return cfg_fail(x, g, "route '%s': listen %s overlaps %s of route "
						      "'%s' (line %d): the two cannot both listen",
						r->name, r->listen.text, c->routes[j].listen.text,
						c->routes[j].name, c->routes[j].line);
		}
		if (c->metrics_enabled && cfg_addr_same(&c->metrics_listen, &r->listen))
			return cfg_fail(x, g, "route '%s': listen %s is the metrics address",
					r->name, r->listen.text);
		if (c->metrics_enabled && cfg_addr_overlap(&c->metrics_listen, &r->listen))
			return cfg_fail(x, g, "route '%s': listen %s overlaps the metrics address %s",
					r->name, r->listen.text, c->metrics_listen.text);
	}
	return 0;
}

struct config *config_load_file(const char *path, char *err, size_t errlen)
{
	struct cfg_ctx x = { .path = path, .err = err, .errlen = errlen };
	struct config *c = NULL;
	char *buf;
	size_t n = 0;
	FILE *f;

	/* Read it ourselves: one read (no TOCTOU between the checks and the
	 * parse) and a real errno for I/O errors. */
	f = fopen(path, "r");
	if (f == NULL) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (buf)
		n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	if (buf == NULL || ferror(f)) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot read: %s", path,
				 buf ? strerror(errno) : "out of memory");
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	if (n > CONFIG_FILE_MAX)
		cfg_fail_at(&x, 1, "file too large (max %u bytes)", CONFIG_FILE_MAX);
	else
		c = config_load_buffer(buf, n, path, err, errlen);
	free(buf);
	return c;
}

struct config *config_load_buffer(const char *text, size_t n, const char *name, char *err,
				  size_t errlen)
{
	struct cfg_ctx x = { .path = name, .err = err, .errlen = errlen };
	struct config *c = NULL;
	config_t lc;
	char *buf = NULL;

	config_init(&lc);
	if (n > CONFIG_FILE_MAX) {
		cfg_fail_at(&x, 1, "file too large (max %u bytes)", CONFIG_FILE_MAX);
		goto fail;
	}
	if (memchr(text, '\0', n)) {
		cfg_fail_at(&x, 1, "file contains a NUL byte");
		goto fail;
	}
	buf = malloc(n + 1); /* libconfig wants a C string */
	if (buf == NULL) {
		cfg_fail_at(&x, 1, "out of memory");
		goto fail;
	}
	memcpy(buf, text, n);
	buf[n] = '\0';
	if (cfg_prescan(&x, buf, n) != 0)
		goto fail;
	if (config_read_string(&lc, buf) != CONFIG_TRUE) {
		cfg_fail_at(&x, config_error_line(&lc), "%s", config_error_text(&lc));
		goto fail;
	}
	c = cfg_new(name, CONFIG_MODE_ENFORCE, 0);
	if (c == NULL) {
		cfg_fail_at(&x, 1, "out of memory");
		goto fail;
	}
	if (cfg_root(&x, config_root_setting(&lc), c) != 0)
		goto fail;
	free(buf);
	config_destroy(&lc);
	return c;
fail:
	config_free(c);
	free(buf);
	config_destroy(&lc);
	return NULL;
}
