/* fuzz_config: libFuzzer target for the config loader (src/config.c) through
 * config_load_buffer, i.e. the cfg_prescan guards, libconfig itself, every
 * row of the keyword table (src/config_kw.c) with its reader
 * (src/config_value.c), and every cross-route check.
 *
 * The input is the file text, handed over in an exact-size heap copy without
 * a NUL terminator (ASan sees any read past n). For every input:
 *   - no crash, no leak (LeakSanitizer), no UB;
 *   - failure: err is NUL-terminated, non-empty, and starts with
 *     "fuzz.conf:LINE: " with 1 <= LINE <= lines in the text + 1;
 *   - success: the snapshot's invariants hold (below), the values every
 *     reader promises are within their documented bounds;
 *   - the same text loaded again with a small, exact-size err buffer
 *     (truncation path) or with err == NULL gives the same verdict.
 */
#include "zmtpfw/config.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "zmtpfw/zmtp.h"

#define NAME "fuzz.conf"

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	abort();
}

static const char *const socket_types[] = {
	"PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH", "XPUB", "XSUB",
	"STREAM", "SERVER", "CLIENT", "RADIO", "DISH", "GATHER", "SCATTER", "DGRAM", "PEER",
	"CHANNEL", NULL,
};

static bool in_set(const char *const *set, const char *s)
{
	for (size_t i = 0; set[i]; i++)
		if (strcmp(set[i], s) == 0)
			return true;
	return false;
}

/* A fixed-width name slot: NUL-terminated inside the slot, NUL-padded after. */
static bool slot_ok(const char *slot, size_t width)
{
	size_t n = strnlen(slot, width);
	if (n == 0 || n == width)
		return false;
	for (size_t i = n; i < width; i++)
		if (slot[i])
			return false;
	return true;
}

static bool str_ok(const char *s, size_t width, const char *charset, bool allow_empty)
{
	size_t n = strnlen(s, width);
	if (n == width || (!allow_empty && n == 0))
		return false;
	return strspn(s, charset) == n;
}

static void check_cidrs(const struct cidr_list *l, const char *what)
{
	if (l->n > 0 && l->v == NULL)
		die("cidr list without storage", what);
	for (size_t i = 0; i < l->n; i++) {
		const struct cidr *c = &l->v[i];
		if (c->prefix > 128)
			die("cidr prefix > 128", what);
		for (unsigned b = c->prefix; b < 128; b++)
			if (c->addr[b / 8] & (0x80 >> (b % 8)))
				die("cidr host bits set", what);
	}
}

static void check_addr(const struct config_addr *a, bool tcp_only, const char *what)
{
	if (!memchr(a->text, '\0', sizeof(a->text)) || a->text[0] == '\0')
		die("address text not a non-empty string", what);
	switch (a->sa.ss_family) {
	case AF_INET:
		if (a->len != sizeof(struct sockaddr_in) ||
		    ((const struct sockaddr_in *)&a->sa)->sin_port == 0)
			die("bad IPv4 address", what);
		break;
	case AF_INET6:
		if (a->len != sizeof(struct sockaddr_in6) ||
		    ((const struct sockaddr_in6 *)&a->sa)->sin6_port == 0)
			die("bad IPv6 address", what);
		break;
	case AF_UNIX: {
		const struct sockaddr_un *un = (const struct sockaddr_un *)&a->sa;
		if (tcp_only)
			die("unix address where TCP is required", what);
		if (un->sun_path[0] != '/' || !memchr(un->sun_path, '\0', sizeof(un->sun_path)))
			die("bad unix path", what);
		if (a->len != offsetof(struct sockaddr_un, sun_path) + strlen(un->sun_path) + 1)
			die("bad unix address length", what);
		break;
	}
	default:
		die("address family", what);
	}
}

static bool addr_same(const struct config_addr *a, const struct config_addr *b)
{
	return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

static void check_config(const struct config *c, size_t lines)
{
	static const char name_chars[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

	if (c->n_routes < 1 || c->n_routes > CONFIG_MAX_ROUTES || c->routes == NULL)
		die("route count", NULL);
	if (c->mode != CONFIG_MODE_ENFORCE && c->mode != CONFIG_MODE_LOG_ONLY)
		die("global mode", NULL);
	if ((unsigned)c->log_level > LOG_ERROR || (unsigned)c->log_format > LOG_FORMAT_TEXT)
		die("log level/format", NULL);
	if (c->drain_timeout_ms > 600000)
		die("drain_timeout_ms out of 0..600000", NULL);
	if (c->max_memory < (1ull << 20) || c->max_memory > (1ull << 62))
		die("max_memory out of 1 MiB..2^62", NULL);
	if (!str_ok(c->user, sizeof(c->user), name_chars, true))
		die("user", c->user);
	if (strcmp(c->path, NAME) != 0)
		die("path is not the buffer's name", c->path);
	if (c->metrics_enabled)
		check_addr(&c->metrics_listen, true, "metrics.listen");

	for (size_t i = 0; i < c->n_routes; i++) {
		const struct config_route *r = &c->routes[i];
		const char *n = r->name;

		if (!str_ok(n, sizeof(r->name), name_chars, false))
			die("route name", n);
		check_addr(&r->listen, true, n);
		check_addr(&r->upstream, false, n);
		check_cidrs(&r->allow, n);
		check_cidrs(&r->allow_pickle_from, n);
		if (r->mode != CONFIG_MODE_ENFORCE && r->mode != CONFIG_MODE_LOG_ONLY)
			die("route mode", n);
		if (r->pickle != CONFIG_PICKLE_DROP && r->pickle != CONFIG_PICKLE_ALLOW)
			die("pickle", n);
		if (r->on_violation != CONFIG_ON_VIOLATION_DROP_MESSAGE &&
		    r->on_violation != CONFIG_ON_VIOLATION_CLOSE)
			die("on_violation", n);
		if (r->n_mechanisms < 1 || r->n_mechanisms > CONFIG_MAX_MECHS)
			die("mechanism count", n);
		for (size_t k = 0; k < r->n_mechanisms; k++) {
			if (!slot_ok(r->mechanisms[k], sizeof(r->mechanisms[k])))
				die("mechanism slot not NUL-padded", n);
			/* NULL is the only mechanism the relay can inspect. */
			if (strcmp(r->mechanisms[k], "NULL") != 0)
				die("mechanism other than NULL accepted", r->mechanisms[k]);
			for (size_t j = 0; j < k; j++)
				if (!memcmp(r->mechanisms[j], r->mechanisms[k], ZMTP_MECH_LEN))
					die("duplicate mechanism", n);
		}
		if (r->n_socket_types > CONFIG_MAX_SOCKET_TYPES)
			die("socket type count", n);
		for (size_t k = 0; k < r->n_socket_types; k++) {
			if (!slot_ok(r->socket_types[k], sizeof(r->socket_types[k])) ||
			    !in_set(socket_types, r->socket_types[k]))
				die("socket type", r->socket_types[k]);
			for (size_t j = 0; j < k; j++)
				if (!strcmp(r->socket_types[j], r->socket_types[k]))
					die("duplicate socket type", n);
		}
		if (r->max_frame_size < 1 || r->max_frame_size > (1ull << 62))
			die("max_frame_size out of 1..2^62", n);
		if (r->max_message_size < 1 || r->max_message_size > (1ull << 62))
			die("max_message_size out of 1..2^62", n);
		if (r->max_scan_bytes < 1 || r->max_scan_bytes > CONFIG_MAX_SCAN_LIMIT)
			die("max_scan_bytes out of 1..CONFIG_MAX_SCAN_LIMIT", n);
		if (r->handshake_timeout_ms < 100 || r->handshake_timeout_ms > 600000)
			die("handshake_timeout_ms out of 100..600000", n);
		if (r->max_connections < 1 || r->max_connections > 1000000)
			die("max_connections out of 1..1000000", n);
		if (r->max_connections_per_peer > 1000000)
			die("max_connections_per_peer out of 0..1000000", n);
		if (r->idle_timeout_ms != 0 &&
		    (r->idle_timeout_ms < 1000 || r->idle_timeout_ms > 86400000))
			die("idle_timeout_ms neither 0 nor 1000..86400000", n);
		if (r->connect_timeout_ms < 100 || r->connect_timeout_ms > 600000)
			die("connect_timeout_ms out of 100..600000", n);
		if (r->line < 1 || (size_t)r->line > lines)
			die("route line outside the text", n);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(c->routes[j].name, n) == 0)
				die("duplicate route name accepted", n);
			if (addr_same(&c->routes[j].listen, &r->listen))
				die("duplicate listen address accepted", r->listen.text);
		}
		if (c->metrics_enabled && addr_same(&c->metrics_listen, &r->listen))
			die("route listens on the metrics address", n);
	}
}

/* "fuzz.conf:LINE: message" with LINE in 1..max_line. */
static void check_err(const char *err, size_t max_line)
{
	const char *p = err;
	char *end;

	if (strncmp(p, NAME ":", sizeof(NAME)) != 0)
		die("error lacks the FILE: prefix", err);
	p += sizeof(NAME);
	if (*p < '1' || *p > '9')
		die("error lacks a LINE", err);
	unsigned long line = strtoul(p, &end, 10);
	if (end[0] != ':' || end[1] != ' ' || end[2] == '\0')
		die("error is not FILE:LINE: message", err);
	if (line < 1 || line > max_line)
		die("error line outside the text", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[1024];
	size_t lines = 1;

	/* Real configs are a few KiB; the loader's own cap is 1 MiB. */
	if (size > 64 * 1024)
		return 0;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';

	char *text = malloc(size ? size : 1);
	if (!text)
		abort();
	memcpy(text, data, size);

	memset(err, 0x5A, sizeof(err));
	struct config *c = config_load_buffer(text, size, NAME, err, sizeof(err));
	if (c) {
		check_config(c, lines);
		config_free(c);
	} else {
		if (!memchr(err, '\0', sizeof(err)))
			die("error not NUL-terminated", NULL);
		check_err(err, lines + 1);
	}

	/* Same text, and the last byte chooses: a tiny exact-size error buffer
	 * (never overrun, stays a string, a prefix of the full message) or no
	 * buffer at all. The verdict must not change either way. */
	size_t small = size ? data[size - 1] % 25 : 0;
	char *e2 = small ? malloc(small) : NULL;
	if (small && !e2)
		abort();
	struct config *c2 = config_load_buffer(text, size, NAME, e2, small);
	if ((c2 != NULL) != (c != NULL))
		die("verdict depends on the error buffer", NULL);
	if (!c2 && e2 && !memchr(e2, '\0', small))
		die("truncated error not NUL-terminated", NULL);
	if (!c2 && e2 && strncmp(e2, err, small - 1) != 0)
		die("truncated error is not a prefix of the full one", e2);
	config_free(c2);
	free(e2);

	free(text);
	return 0;
}
