/* config: libconfig file or command-line flags -> validated, immutable
 * struct config. Every error names FILE:LINE (flags: the flag) and the
 * offending text; nothing is silently defaulted, ignored or widened.
 *
 * Two libconfig 1.5 traps are closed before libconfig sees the file:
 *   - an integer literal beyond 32 bits without an L suffix is silently
 *     wrapped (4294967296 reads as 0), so such literals are rejected;
 *   - @include would let part of the policy live in a file we never
 *     checked, so it is rejected: a config is one file.
 */
#include "zmtpfw/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "zmtpfw/zmtp.h" /* the socket type table */

/* Config files are a few KiB; refuse anything that is clearly not one. */
#define CONFIG_FILE_MAX (1u << 20)
#define CONFIG_MAX_SIZE_LIMIT (1ull << 62)

/* Where error messages go and how they are prefixed. */
struct cfg_ctx {
	const char *path; /* file being loaded; NULL for flags (no prefix) */
	char *err;        /* caller's buffer, may be NULL */
	size_t errlen;
};

/* Writes "PATH:LINE: message" (flags: just "message") into the caller's
 * buffer. Both return -1, so callers can "return cfg_fail(...)". */
static int cfg_vfail(struct cfg_ctx *x, int line, const char *fmt, va_list ap)
{
	int n = 0;
	if (x->err == NULL || x->errlen == 0)
		return -1;
	if (x->path)
		n = snprintf(x->err, x->errlen, "%s:%d: ", x->path, line);
	if (n >= 0 && (size_t)n < x->errlen)
		vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
	return -1;
}

static __attribute__((format(printf, 3, 4))) int cfg_fail_at(struct cfg_ctx *x, int line,
							      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cfg_vfail(x, line, fmt, ap);
	va_end(ap);
	return -1;
}

/* At a setting's line. File-level errors (no setting, or the root, which
 * libconfig puts on line 0) are reported on line 1. */
static __attribute__((format(printf, 3, 4))) int
cfg_fail(struct cfg_ctx *x, const config_setting_t *s, const char *fmt, ...)
{
	va_list ap;
	int line = s ? (int)config_setting_source_line(s) : 0;
	va_start(ap, fmt);
	cfg_vfail(x, line > 0 ? line : 1, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- addresses ---- */

/* Port: 1..5 decimal digits (no sign, no spaces), 1..65535. */
static int cfg_parse_port(const char *s, uint16_t *out)
{
	size_t n = strspn(s, "0123456789");
	unsigned long v = n >= 1 && n <= 5 && s[n] == '\0' ? strtoul(s, NULL, 10) : 0;
	if (v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static int cfg_aerr(const char **err, const char *msg)
{
	*err = msg;
	return -1;
}

int config_parse_addr(const char *s, bool allow_unix, struct config_addr *out, const char **err)
{
	struct config_addr a;
	char host[128];
	const char *port_s;
	size_t hlen;
	uint16_t port;
	bool bracket = false;

	memset(&a, 0, sizeof(a));
	if (s == NULL || s[0] == '\0')
		return cfg_aerr(err, "empty address");
	if (strlen(s) >= sizeof(a.text))
		return cfg_aerr(err, "address too long");
	snprintf(a.text, sizeof(a.text), "%s", s);

	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a.sa;
		const char *path = s + 5;
		if (!allow_unix)
			return cfg_aerr(err, "unix sockets are not allowed here (TCP only)");
		/* A relative path would depend on the daemon's cwd. */
		if (path[0] != '/')
			return cfg_aerr(err, "unix socket path must be absolute");
		if (strlen(path) >= sizeof(un->sun_path))
			return cfg_aerr(err, "unix socket path too long");
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, path, strlen(path) + 1);
		a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
		*out = a;
		return 0;
	}

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL)
			return cfg_aerr(err, "missing ']'");
		if (close[1] != ':')
			return cfg_aerr(err, "missing port (expected [V6]:PORT)");
		bracket = true;
		hlen = (size_t)(close - (s + 1));
		memcpy(host, s + 1, hlen);
		port_s = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL)
			return cfg_aerr(err, "missing port (expected HOST:PORT)");
		hlen = (size_t)(colon - s);
		memcpy(host, s, hlen);
		port_s = colon + 1;
	}
	host[hlen] = '\0';
	if (hlen == 0)
		return cfg_aerr(err, "missing host (use * for all IPv4 addresses)");
	if (!bracket && strchr(host, ':'))
		return cfg_aerr(err, "IPv6 addresses need brackets, e.g. [::1]:5555");
	if (cfg_parse_port(port_s, &port) != 0)
		return cfg_aerr(err, "bad port (expected 1..65535)");

	if (bracket) {
		/* getaddrinfo rather than inet_pton: it handles scope ids
		 * ("fe80::1%eth0"). NUMERICHOST: never touch DNS. */
		struct addrinfo hints, *res = NULL;
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_INET6;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
		if (getaddrinfo(host, port_s, &hints, &res) != 0 || res == NULL ||
		    res->ai_addrlen > sizeof(a.sa)) {
			if (res)
				freeaddrinfo(res);
			*err = "bad IPv6 address";
			return -1;
		}
		memcpy(&a.sa, res->ai_addr, res->ai_addrlen);
		a.len = res->ai_addrlen;
		freeaddrinfo(res);
	} else {
		/* IPv4 by inet_pton, not getaddrinfo: glibc's numeric
		 * getaddrinfo takes inet_aton forms, so "010.0.0.1" would be
		 * 8.0.0.1 and "127.1" 127.0.0.1. Dotted quad only. */
		struct sockaddr_in *in = (struct sockaddr_in *)&a.sa;
		const char *h = host;
		if (strcmp(host, "*") == 0)
			h = "0.0.0.0";
		else if (strcmp(host, "localhost") == 0)
			h = "127.0.0.1";
		if (inet_pton(AF_INET, h, &in->sin_addr) != 1)
			return cfg_aerr(err, "host must be a numeric IPv4 address, [IPv6], localhost or *");
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		a.len = sizeof(*in);
	}
	*out = a;
	return 0;
}

/* Same listening socket (address, port, v6 scope)? config_parse_addr
 * builds every sockaddr from zeroed storage, so the bytes compare. */
static bool cfg_addr_same(const struct config_addr *a, const struct config_addr *b)
{
	return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

/* ---- shared route pieces (file and flags) ---- */

static void cfg_route_defaults(struct config_route *r, size_t idx, enum config_mode mode)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "route%zu", idx);
	r->pickle = CONFIG_PICKLE_DROP;
	r->on_violation = CONFIG_ON_VIOLATION_DROP_MESSAGE;
	r->mode = mode;
	memcpy(r->mechanisms[0], "NULL", 4); /* rest stays NUL: the wire form */
	r->n_mechanisms = 1;
	r->max_frame_size = CONFIG_DEF_MAX_FRAME;
	r->max_message_size = CONFIG_DEF_MAX_MESSAGE;
	r->max_scan_bytes = CONFIG_DEF_MAX_SCAN_BYTES;
	r->handshake_timeout_ms = CONFIG_DEF_HANDSHAKE_MS;
	r->max_connections = CONFIG_DEF_MAX_CONNS;
	r->max_connections_per_peer = CONFIG_DEF_MAX_CONNS_PER_PEER;
	r->connect_timeout_ms = CONFIG_DEF_CONNECT_MS;
	r->splice = true;
	r->pickle_loader = CONFIG_LOADER_STOCK;
	r->pickle_msgpack = true;
}

/* A config with global defaults and room for n routes (zeroed). */
static struct config *cfg_new(const char *path, enum config_mode mode, size_t n)
{
	struct config *c = calloc(1, sizeof(*c));
	if (c == NULL || (n && (c->routes = calloc(n, sizeof(*c->routes))) == NULL)) {
		free(c);
		return NULL;
	}
	c->n_routes = n;
	c->mode = mode;
	c->log_level = LOG_INFO;
	c->log_format = LOG_FORMAT_JSON;
	c->drain_timeout_ms = CONFIG_DEF_DRAIN_MS;
	c->max_memory = CONFIG_DEF_MAX_MEMORY;
	c->metrics_probe_upstream = true;
	snprintf(c->path, sizeof(c->path), "%s", path);
	return c;
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

/* ---- file: typed readers ---- */

static const char *cfg_type_name(const config_setting_t *s)
{
	static const char *const names[] = {
		[CONFIG_TYPE_GROUP] = "a group { }", [CONFIG_TYPE_INT] = "an integer",
		[CONFIG_TYPE_INT64] = "an integer",  [CONFIG_TYPE_FLOAT] = "a float",
		[CONFIG_TYPE_STRING] = "a string",   [CONFIG_TYPE_BOOL] = "a boolean",
		[CONFIG_TYPE_ARRAY] = "an array [ ]", [CONFIG_TYPE_LIST] = "a list ( )",
	};
	int t = config_setting_type(s);
	return t > 0 && t <= CONFIG_TYPE_LIST ? names[t] : "unknown";
}

static int cfg_string(struct cfg_ctx *x, const config_setting_t *s, const char **out)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cfg_fail(x, s, "%s: expected a string, got %s", config_setting_name(s),
				cfg_type_name(s));
	*out = config_setting_get_string(s);
	return 0;
}

/* Integer in [min, max]; int or int64 ("L" suffix) in the file. */
static int cfg_uint(struct cfg_ctx *x, const config_setting_t *s, uint64_t min, uint64_t max,
		    uint64_t *out)
{
	long long v;
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
		return cfg_fail(x, s, "%s: expected an integer, got %s", config_setting_name(s),
				cfg_type_name(s));
	v = t == CONFIG_TYPE_INT ? config_setting_get_int(s) : config_setting_get_int64(s);
	if (v < 0 || (uint64_t)v < min || (uint64_t)v > max)
		return cfg_fail(x, s, "%s: %lld out of range %llu..%llu", config_setting_name(s), v,
				(unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)v;
	return 0;
}

/* Index of name in a NULL-terminated list, or -1. */
static int cfg_find(const char *const *names, const char *name)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* "a, b, c" (quoted: "\"a\", \"b\"") for error messages; static buffer. */
static const char *cfg_join(const char *const *names, bool quote)
{
	static char buf[320];
	size_t n = 0;
	buf[0] = '\0';
	for (int i = 0; names[i] && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, quote ? "%s\"%s\"" : "%s%s",
				      i ? ", " : "", names[i]);
	return buf;
}

/* A string from a NULL-terminated set: returns its index, or -1. */
static int cfg_enum(struct cfg_ctx *x, const config_setting_t *s, const char *const *names)
{
	const char *v = NULL;
	int i;
	if (cfg_string(x, s, &v) != 0)
		return -1;
	if ((i = cfg_find(names, v)) < 0)
		return cfg_fail(x, s, "%s: unknown value '%s' (expected one of %s)",
				config_setting_name(s), v, cfg_join(names, true));
	return i;
}

/* Array [ ] or list ( ) whose elements are all strings. */
static int cfg_strarray(struct cfg_ctx *x, const config_setting_t *s)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
		return cfg_fail(x, s, "%s: expected an array of strings [ \"...\" ], got %s",
				config_setting_name(s), cfg_type_name(s));
	/* Note: libconfig dates a scalar by the token after it, so an element
	 * last on its line before "]" on the next line reports that line. */
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return cfg_fail(x, e, "%s: element %d: expected a string, got %s",
					config_setting_name(s), i, cfg_type_name(e));
	}
	return 0;
}

static int cfg_cidrs(struct cfg_ctx *x, const config_setting_t *s, struct cidr_list *out)
{
	size_t n;
	if (cfg_strarray(x, s) != 0)
		return -1;
	n = (size_t)config_setting_length(s);
	if (n == 0)
		return 0;
	out->v = calloc(n, sizeof(*out->v)); /* once per key: libconfig refuses duplicates */
	if (out->v == NULL)
		return cfg_fail(x, s, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_get_string(e), *err;
		if (cidr_parse(v, &out->v[i], &err) != 0)
			return cfg_fail(x, e, "%s: bad CIDR '%s': %s", config_setting_name(s), v, err);
	}
	out->n = n;
	return 0;
}

static int cfg_addr(struct cfg_ctx *x, const config_setting_t *s, bool allow_unix,
		    struct config_addr *out)
{
	const char *v = NULL, *err;
	if (cfg_string(x, s, &v) != 0)
		return -1;
	if (config_parse_addr(v, allow_unix, out, &err) != 0)
		return cfg_fail(x, s, "%s: bad address '%s': %s", config_setting_name(s), v, err);
	return 0;
}

/* Enum names, in enum order. */
static const char *const cfg_mode_names[] = { "enforce", "log-only", NULL };
static const char *const cfg_pickle_names[] = { "drop", "allow", NULL };
static const char *const cfg_violation_names[] = { "drop-message", "close", NULL };
static const char *const cfg_loader_names[] = { "any", "plain", "stock", NULL };
static const char *const cfg_level_names[] = { "debug", "info", "warn", "error", NULL };
static const char *const cfg_format_names[] = { "json", "text", NULL };

/* Mechanisms the relay can inspect: CURVE/GSSAPI encrypt the frames and
 * PLAIN is not implemented, so they are refused rather than passed blind. */
static const char *const cfg_mechanisms[] = { "NULL", NULL };

/* A non-empty set of distinct names from `valid` into the fixed-width,
 * NUL-padded slots dst[max][width]: mechanisms and socket_types. */
static int cfg_names(struct cfg_ctx *x, const config_setting_t *s, const char *const *valid,
		     const char *unknown, char *dst, size_t width, size_t max, size_t *count)
{
	const char *key = config_setting_name(s);
	size_t n;
	if (cfg_strarray(x, s) != 0)
		return -1;
	n = (size_t)config_setting_length(s);
	/* mechanisms = [] admits no handshake at all; socket_types = [] would
	 * read as "check nothing" (count 0) though it looks like "admit
	 * nobody". Both are mistakes: refuse them. */
	if (n == 0)
		return cfg_fail(x, s, "%s: empty list (omit the key for the default)", key);
	if (n > max)
		return cfg_fail(x, s, "%s: too many entries (max %zu)", key, max);
	memset(dst, 0, width * max);
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_get_string(e);
		if (cfg_find(valid, v) < 0)
			return cfg_fail(x, e, "%s: %s '%s' (expected one of %s)", key, unknown, v,
					cfg_join(valid, false));
		for (size_t j = 0; j < i; j++)
			if (strcmp(dst + j * width, v) == 0)
				return cfg_fail(x, e, "%s: duplicate '%s'", key, v);
		memcpy(dst + i * width, v, strlen(v)); /* valid names are < width */
	}
	*count = n;
	return 0;
}

/* Route names show up in every log line and metric label: keep them
 * plain. */
static int cfg_name(struct cfg_ctx *x, const config_setting_t *s, struct config_route *r)
{
	const char *v = NULL;
	size_t n;
	if (cfg_string(x, s, &v) != 0)
		return -1;
	n = strlen(v);
	if (n == 0 || n >= sizeof(r->name))
		return cfg_fail(x, s, "name: '%s' must be 1..%zu characters", v,
				sizeof(r->name) - 1);
	if (strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n)
		return cfg_fail(x, s, "name: '%s' may only contain A-Z a-z 0-9 . _ -", v);
	memcpy(r->name, v, n + 1);
	return 0;
}

/* ---- file: route and top level ---- */

enum cfg_rkey {
	RK_NAME, RK_LISTEN, RK_UPSTREAM, RK_ALLOW, RK_ALLOW_PICKLE, RK_PICKLE, RK_VIOLATION,
	RK_MECHS, RK_STYPES, RK_MAXFRAME, RK_MAXMSG, RK_HANDSHAKE, RK_MAXCONN, RK_MODE,
	RK_MAXPEER, RK_IDLE, RK_CONNECT, RK_LOADER, RK_SPLICE, RK_GLOBALS, RK_MSGPACK, RK_MAXSCAN, RK_COUNT
};
static const char *const cfg_route_keys[RK_COUNT + 1] = {
	[RK_NAME] = "name", [RK_LISTEN] = "listen", [RK_UPSTREAM] = "upstream",
	[RK_ALLOW] = "allow", [RK_ALLOW_PICKLE] = "allow_pickle_from", [RK_PICKLE] = "pickle",
	[RK_VIOLATION] = "on_violation", [RK_MECHS] = "mechanisms",
	[RK_STYPES] = "socket_types", [RK_MAXFRAME] = "max_frame_size",
	[RK_MAXMSG] = "max_message_size", [RK_HANDSHAKE] = "handshake_timeout_ms",
	[RK_MAXCONN] = "max_connections", [RK_MODE] = "mode",
	[RK_MAXPEER] = "max_connections_per_peer", [RK_IDLE] = "idle_timeout_ms",
	[RK_CONNECT] = "connect_timeout_ms", [RK_LOADER] = "pickle_loader",
	[RK_SPLICE] = "splice", [RK_GLOBALS] = "pickle_globals", [RK_MSGPACK] = "pickle_msgpack",
	[RK_MAXSCAN] = "max_scan_bytes",
};

static int cfg_bool(struct cfg_ctx *x, const config_setting_t *s, bool *out);

/* pickle_globals: "module:qualname" and "@profile" entries. Present even
 * empty, it puts trusted peers under the list (empty: learn mode). Each
 * refusal names the element's line. */
static int cfg_globals(struct cfg_ctx *x, const config_setting_t *s, struct config_route *r)
{
	char err[256];
	if (cfg_strarray(x, s) != 0)
		return -1;
	r->pickle_globals = ppolicy_new();
	if (r->pickle_globals == NULL)
		return cfg_fail(x, s, "out of memory");
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (ppolicy_add(r->pickle_globals, config_setting_get_string(e), err, sizeof(err)) != 0)
			return cfg_fail(x, e, "pickle_globals: %s", err);
	}
	return 0;
}

static int cfg_route_key(struct cfg_ctx *x, const config_setting_t *s, enum cfg_rkey k,
			 struct config_route *r)
{
	uint64_t u;
	int e;
	switch (k) {
	case RK_NAME: return cfg_name(x, s, r);
	case RK_LISTEN: return cfg_addr(x, s, false, &r->listen);
	case RK_UPSTREAM: return cfg_addr(x, s, true, &r->upstream);
	case RK_ALLOW: return cfg_cidrs(x, s, &r->allow);
	case RK_ALLOW_PICKLE: return cfg_cidrs(x, s, &r->allow_pickle_from);
	case RK_MECHS:
		return cfg_names(x, s, cfg_mechanisms, "unsupported mechanism", r->mechanisms[0],
				 sizeof(r->mechanisms[0]), CONFIG_MAX_MECHS, &r->n_mechanisms);
	case RK_STYPES:
		return cfg_names(x, s, zmtp_socket_types, "unknown socket type", r->socket_types[0],
				 sizeof(r->socket_types[0]), CONFIG_MAX_SOCKET_TYPES,
				 &r->n_socket_types);
	case RK_PICKLE:
		if ((e = cfg_enum(x, s, cfg_pickle_names)) < 0)
			return -1;
		r->pickle = (enum config_pickle)e;
		return 0;
	case RK_VIOLATION:
		if ((e = cfg_enum(x, s, cfg_violation_names)) < 0)
			return -1;
		r->on_violation = (enum config_violation)e;
		return 0;
	case RK_LOADER:
		if ((e = cfg_enum(x, s, cfg_loader_names)) < 0)
			return -1;
		r->pickle_loader = (enum config_loader)e;
		return 0;
	case RK_MODE:
		if ((e = cfg_enum(x, s, cfg_mode_names)) < 0)
			return -1;
		r->mode = (enum config_mode)e;
		return 0;
	case RK_MAXFRAME:
		return cfg_uint(x, s, 1, CONFIG_MAX_SIZE_LIMIT, &r->max_frame_size);
	case RK_MAXMSG:
		return cfg_uint(x, s, 1, CONFIG_MAX_SIZE_LIMIT, &r->max_message_size);
	case RK_MAXSCAN:
		return cfg_uint(x, s, 1, CONFIG_MAX_SCAN_LIMIT, &r->max_scan_bytes);
	case RK_HANDSHAKE:
		if (cfg_uint(x, s, 100, 600000, &u) != 0)
			return -1;
		r->handshake_timeout_ms = (uint32_t)u;
		return 0;
	case RK_MAXCONN:
		if (cfg_uint(x, s, 1, 1000000, &u) != 0)
			return -1;
		r->max_connections = (uint32_t)u;
		return 0;
	case RK_MAXPEER:
		if (cfg_uint(x, s, 0, 1000000, &u) != 0)
			return -1;
		r->max_connections_per_peer = (uint32_t)u;
		return 0;
	case RK_IDLE:
		/* 0 turns it off; below a second would cut healthy quiet peers */
		if (cfg_uint(x, s, 0, 86400000, &u) != 0)
			return -1;
		if (u != 0 && u < 1000)
			return cfg_fail(x, s, "idle_timeout_ms: %llu too small (0 = off, or "
					      "1000..86400000)", (unsigned long long)u);
		r->idle_timeout_ms = (uint32_t)u;
		return 0;
	case RK_CONNECT:
		if (cfg_uint(x, s, 100, 600000, &u) != 0)
			return -1;
		r->connect_timeout_ms = (uint32_t)u;
		return 0;
	case RK_SPLICE:
		return cfg_bool(x, s, &r->splice);
	case RK_GLOBALS:
		return cfg_globals(x, s, r);
	case RK_MSGPACK:
		return cfg_bool(x, s, &r->pickle_msgpack);
	case RK_COUNT:
		break;
	}
	return -1;
}

static int cfg_route(struct cfg_ctx *x, const config_setting_t *g, size_t idx,
		     enum config_mode mode, struct config_route *r)
{
	bool seen[RK_COUNT] = { false };

	cfg_route_defaults(r, idx, mode);
	r->line = (int)config_setting_source_line(g);
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfg_fail(x, g, "routes: element %zu: expected a group { ... }, got %s", idx,
				cfg_type_name(g));
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		int k = cfg_find(cfg_route_keys, name);
		if (k < 0)
			return cfg_fail(x, s, "unknown key '%s' in route (expected one of %s)", name,
					cfg_join(cfg_route_keys, false));
		if (cfg_route_key(x, s, (enum cfg_rkey)k, r) != 0)
			return -1;
		seen[k] = true;
	}
	/* allow is required though [] is valid: admitting nobody (or
	 * everybody) must be written down, not implied. */
	for (int k = RK_LISTEN; k <= RK_ALLOW; k++)
		if (!seen[k])
			return cfg_fail(x, g, "route '%s': missing '%s'%s", r->name,
					cfg_route_keys[k],
					k == RK_ALLOW ? " (write allow = [ ]; to admit nobody)" : "");
	return 0;
}

static int cfg_log(struct cfg_ctx *x, const config_setting_t *g, struct config *c)
{
	int e;
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfg_fail(x, g, "log: expected a group { level = ...; format = ...; }, "
				      "got %s", cfg_type_name(g));
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		if (strcmp(name, "level") == 0) {
			if ((e = cfg_enum(x, s, cfg_level_names)) < 0)
				return -1;
			c->log_level = (enum log_level)e;
		} else if (strcmp(name, "format") == 0) {
			if ((e = cfg_enum(x, s, cfg_format_names)) < 0)
				return -1;
			c->log_format = (enum log_format)e;
		} else {
			return cfg_fail(x, s, "unknown key '%s' in log (expected level, format)",
					name);
		}
	}
	return 0;
}

static int cfg_bool(struct cfg_ctx *x, const config_setting_t *s, bool *out)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cfg_fail(x, s, "%s: expected true or false, got %s", config_setting_name(s),
				cfg_type_name(s));
	*out = config_setting_get_bool(s) != 0;
	return 0;
}

/* metrics = { listen = "127.0.0.1:9464"; probe_upstream = true; }; */
static int cfg_metrics(struct cfg_ctx *x, const config_setting_t *g, struct config *c)
{
	bool have_listen = false;
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfg_fail(x, g, "metrics: expected a group { listen = ...; }, got %s",
				cfg_type_name(g));
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		if (strcmp(name, "listen") == 0) {
			if (cfg_addr(x, s, false, &c->metrics_listen) != 0)
				return -1;
			have_listen = true;
		} else if (strcmp(name, "probe_upstream") == 0) {
			if (cfg_bool(x, s, &c->metrics_probe_upstream) != 0)
				return -1;
		} else {
			return cfg_fail(x, s, "unknown key '%s' in metrics (expected listen, "
					      "probe_upstream)", name);
		}
	}
	if (!have_listen)
		return cfg_fail(x, g, "metrics: missing 'listen'");
	c->metrics_enabled = true;
	return 0;
}

/* user = "zmtpfw"; resolved when privileges are dropped, not here: -t on a
 * build host must not depend on its passwd file. Only the syntax is checked. */
static int cfg_user(struct cfg_ctx *x, const config_setting_t *s, struct config *c)
{
	const char *v = NULL;
	if (cfg_string(x, s, &v) != 0)
		return -1;
	size_t n = strlen(v);
	if (n == 0 || n >= sizeof(c->user))
		return cfg_fail(x, s, "user: length must be 1..%zu", sizeof(c->user) - 1);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && v[i] != '_' && v[i] != '-' && v[i] != '.')
			return cfg_fail(x, s, "user: '%s' is not a user name", v);
	memcpy(c->user, v, n + 1);
	return 0;
}

/* Everything after a successful libconfig parse. */
static int cfg_root(struct cfg_ctx *x, const config_setting_t *root, struct config *c)
{
	const config_setting_t *routes = NULL;
	int e, n;

	/* Global mode first: routes inherit it whatever the key order. */
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		if (strcmp(name, "mode") == 0) {
			if ((e = cfg_enum(x, s, cfg_mode_names)) < 0)
				return -1;
			c->mode = (enum config_mode)e;
		} else if (strcmp(name, "log") == 0) {
			if (cfg_log(x, s, c) != 0)
				return -1;
		} else if (strcmp(name, "routes") == 0) {
			routes = s;
		} else if (strcmp(name, "metrics") == 0) {
			if (cfg_metrics(x, s, c) != 0)
				return -1;
		} else if (strcmp(name, "user") == 0) {
			if (cfg_user(x, s, c) != 0)
				return -1;
		} else if (strcmp(name, "drain_timeout_ms") == 0) {
			uint64_t u;
			if (cfg_uint(x, s, 0, 600000, &u) != 0)
				return -1;
			c->drain_timeout_ms = (uint32_t)u;
		} else if (strcmp(name, "max_memory") == 0) {
			if (cfg_uint(x, s, 1u << 20, CONFIG_MAX_SIZE_LIMIT, &c->max_memory) != 0)
				return -1;
		} else if (strcmp(name, "reload_closes_disallowed") == 0) {
			if (cfg_bool(x, s, &c->reload_closes_disallowed) != 0)
				return -1;
		} else {
			return cfg_fail(x, s, "unknown key '%s' (expected mode, log, metrics, user, "
					      "drain_timeout_ms, reload_closes_disallowed, routes)",
					name);
		}
	}
	if (routes == NULL)
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
		}
		if (c->metrics_enabled && cfg_addr_same(&c->metrics_listen, &r->listen))
			return cfg_fail(x, g, "route '%s': listen %s is the metrics address",
					r->name, r->listen.text);
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
