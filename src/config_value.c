/* config_value: readers of one libconfig setting, each with its bounds,
 * and the FILE:LINE error reporting every layer of the config module uses
 * (config_int.h). Also the address syntax (config_parse_addr), which the
 * command-line flags share. Knows no key names: which key is read with
 * which reader is config_kw.c's table. */
#include "config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* The message into the caller's buffer (config_int.h: cfg_fail). */
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

int cfg_fail_at(struct cfg_ctx *x, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cfg_vfail(x, line, fmt, ap);
	va_end(ap);
	return -1;
}

/* The root is on libconfig's line 0: reported on line 1. */
int cfg_fail(struct cfg_ctx *x, const config_setting_t *s, const char *fmt, ...)
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
bool cfg_addr_same(const struct config_addr *a, const struct config_addr *b)
{
	return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

/* The IPv4 address of a (IPv4, or IPv6 v4-mapped), in network order. */
static bool cfg_addr_v4(const struct config_addr *a, uint32_t *ip)
{
	if (a->sa.ss_family == AF_INET) {
		*ip = ((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr;
		return true;
	}
	const struct in6_addr *x = &((const struct sockaddr_in6 *)&a->sa)->sin6_addr;
	if (!IN6_IS_ADDR_V4MAPPED(x))
		return false;
	memcpy(ip, &x->s6_addr[12], sizeof(*ip));
	return true;
}

static uint16_t cfg_addr_port(const struct config_addr *a)
{
	return a->sa.ss_family == AF_INET ? ((const struct sockaddr_in *)&a->sa)->sin_port
					  : ((const struct sockaddr_in6 *)&a->sa)->sin6_port;
}

/* Could the two not listen at once? Same port, and the same address or a
 * wildcard covering the other: 0.0.0.0 every IPv4 address, [::] every
 * address (IPV6_V6ONLY is left off, Linux's default, so it takes IPv4
 * too). Without SO_REUSEPORT the kernel refuses the second listen; with
 * it (threads > 1) both would listen and split the connections. Refused
 * here, so the answer is the same for any number of threads. */
bool cfg_addr_overlap(const struct config_addr *a, const struct config_addr *b)
{
	uint32_t x, y;

	if ((a->sa.ss_family != AF_INET && a->sa.ss_family != AF_INET6) ||
	    (b->sa.ss_family != AF_INET && b->sa.ss_family != AF_INET6))
		return cfg_addr_same(a, b); /* a path: only itself */
	if (cfg_addr_port(a) != cfg_addr_port(b))
		return false;
	if (cfg_addr_same(a, b))
		return true;
	if ((a->sa.ss_family == AF_INET6 &&
	     IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr)) ||
	    (b->sa.ss_family == AF_INET6 &&
	     IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&b->sa)->sin6_addr)))
		return true;
	if (cfg_addr_v4(a, &x) && cfg_addr_v4(b, &y))
		return x == y || x == htonl(INADDR_ANY) || y == htonl(INADDR_ANY);
	return false;
}

/* ---- typed readers ---- */

const char *cfg_type_name(const config_setting_t *s)
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

int cfg_string(struct cfg_ctx *x, const config_setting_t *s, const char **out)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cfg_fail(x, s, "%s: expected a string, got %s", config_setting_name(s),
				cfg_type_name(s));
	*out = config_setting_get_string(s);
	return 0;
}

/* int or int64 ("L" suffix) in the file. */
int cfg_uint(struct cfg_ctx *x, const config_setting_t *s, uint64_t min, uint64_t max,
	     const char *why, uint64_t *out)
{
	long long v;
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
		return cfg_fail(x, s, "%s: expected an integer, got %s", config_setting_name(s),
				cfg_type_name(s));
	v = t == CONFIG_TYPE_INT ? config_setting_get_int(s) : config_setting_get_int64(s);
	if (v < 0 || (uint64_t)v < min || (uint64_t)v > max)
		return cfg_fail(x, s, "%s: %lld out of range %llu..%llu%s%s%s",
				config_setting_name(s), v, (unsigned long long)min,
				(unsigned long long)max, why ? " (" : "", why ? why : "",
				why ? ")" : "");
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

int cfg_enum(struct cfg_ctx *x, const config_setting_t *s, const char *const *names)
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

int cfg_strarray(struct cfg_ctx *x, const config_setting_t *s)
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

int cfg_cidrs(struct cfg_ctx *x, const config_setting_t *s, struct cidr_list *out)
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

int cfg_addr(struct cfg_ctx *x, const config_setting_t *s, bool allow_unix,
	     struct config_addr *out)
{
	const char *v = NULL, *err;
	if (cfg_string(x, s, &v) != 0)
		return -1;
	if (config_parse_addr(v, allow_unix, out, &err) != 0)
		return cfg_fail(x, s, "%s: bad address '%s': %s", config_setting_name(s), v, err);
	return 0;
}

/* mechanisms and socket_types. */
int cfg_names(struct cfg_ctx *x, const config_setting_t *s, const char *const *valid,
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

int cfg_bool(struct cfg_ctx *x, const config_setting_t *s, bool *out)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cfg_fail(x, s, "%s: expected true or false, got %s", config_setting_name(s),
				cfg_type_name(s));
	*out = config_setting_get_bool(s) != 0;
	return 0;
}
