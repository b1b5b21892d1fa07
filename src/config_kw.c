/* config_kw: the one table of configuration keywords (HAProxy's
 * cfg_kw_list). A row gives a key's name and scope, the reader and bounds
 * of its value, the field it lands in, its default, and whether a reload
 * applies it. Everything else is generated from the table: the defaults
 * of a new snapshot, the dispatch of each setting, the "expected one of"
 * list of an unknown key, the required-key checks, the reload's kept
 * values (server.c), and the docs check (tests/unit/test_config_docs.c).
 *
 * Adding a key: one row here, plus its field in config.h and its lines in
 * conf/zmtpfw.conf and the README (the docs check fails until they exist).
 *
 * Calls down into config_value.c's readers only; config.c calls this. */
#include "config_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "zmtpfw/log.h"
#include "zmtpfw/pickle_policy.h"
#include "zmtpfw/zmtp.h" /* the socket type table */

/* Frame and message sizes: 2^62 keeps every sum of them inside 64 bits. */
#define CFG_SIZE_LIMIT (1ull << 62)

/* How a row's value is read and stored at base + off. */
enum cfg_kind {
	KW_UINT,   /* integer in [min, max] into a uint32_t or uint64_t (size) */
	KW_BOOL,   /* true / false into a bool */
	KW_ENUM,   /* one of names[] into an enum, by index */
	KW_ADDR,   /* address into a struct config_addr; unix_ok: unix: too */
	KW_CIDRS,  /* CIDR list into a struct cidr_list (allocated) */
	KW_NAMES,  /* distinct names[] entries into fixed slots, count at count_off */
	KW_FN,     /* read by fn; flat: the value holds no pointer */
	KW_GROUP,  /* a group { } of keys of scope sub; a bool at off says present */
	KW_ROUTES, /* the routes list: config.c builds the routes from it */
};

struct cfg_kw;
typedef int (*cfg_kw_fn)(struct cfg_ctx *x, const config_setting_t *s, const struct cfg_kw *kw,
			 void *dst);

struct cfg_kw {
	const char *name;          /* as written in the file */
	enum config_scope scope;   /* where it may be written */
	enum cfg_kind kind;
	bool reload;               /* a SIGHUP applies it; false: restart only */
	bool required;             /* the scope's group is an error without it */
	size_t off, size;          /* field in struct config (top, log, metrics scopes)
				      or struct config_route; size 0: no field */
	uint64_t min, max;         /* KW_UINT bounds; KW_NAMES: max entries */
	uint64_t floor;            /* KW_UINT: nonzero values below it refused (0 = off) */
	uint64_t def;              /* KW_UINT, KW_BOOL, KW_ENUM default */
	const char *const *names;  /* KW_ENUM values, KW_NAMES valid entries */
	const char *def_name;      /* KW_NAMES default: this one entry */
	const char *why;           /* KW_UINT: reason for the bounds; KW_NAMES: what an
				      unknown entry is; required: how to write it */
	size_t width, count_off;   /* KW_NAMES: slot width, field of the count */
	bool unix_ok;              /* KW_ADDR: unix:/path allowed */
	bool flat;                 /* KW_FN: plain value a reload may copy back */
	enum config_scope sub;     /* KW_GROUP: scope of its keys */
	cfg_kw_fn fn;              /* KW_FN reader */
};

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

static void cfg_kw_store(void *dst, size_t size, uint64_t v);

/* Route names show up in every log line and metric label: keep them
 * plain. */
static int cfg_kw_name(struct cfg_ctx *x, const config_setting_t *s, const struct cfg_kw *kw,
		       void *dst)
{
	const char *v = NULL;
	size_t n;
	if (cfg_string(x, s, &v) != 0)
		return -1;
	n = strlen(v);
	if (n == 0 || n >= kw->size)
		return cfg_fail(x, s, "name: '%s' must be 1..%zu characters", v, kw->size - 1);
	if (strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n)
		return cfg_fail(x, s, "name: '%s' may only contain A-Z a-z 0-9 . _ -", v);
	memcpy(dst, v, n + 1);
	return 0;
}

/* user = "zmtpfw"; resolved when privileges are dropped, not here: -t on a
 * build host must not depend on its passwd file. Only the syntax is checked. */
static int cfg_kw_user(struct cfg_ctx *x, const config_setting_t *s, const struct cfg_kw *kw,
		       void *dst)
{
	const char *v = NULL;
	if (cfg_string(x, s, &v) != 0)
		return -1;
	size_t n = strlen(v);
	if (n == 0 || n >= kw->size)
		return cfg_fail(x, s, "user: length must be 1..%zu", kw->size - 1);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && v[i] != '_' && v[i] != '-' && v[i] != '.')
			return cfg_fail(x, s, "user: '%s' is not a user name", v);
	memcpy(dst, v, n + 1);
	return 0;
}

/* threads = N or "auto" (0 in the field: one per online core, counted at
 * start, so -t does not depend on the checking host). */
static int cfg_kw_threads(struct cfg_ctx *x, const config_setting_t *s, const struct cfg_kw *kw,
			  void *dst)
{
	uint64_t n = 0;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		const char *v = config_setting_get_string(s);
		if (strcmp(v, "auto") != 0)
			return cfg_fail(x, s, "threads: expected an integer %llu..%llu or \"auto\", "
					"got \"%s\"", (unsigned long long)kw->min,
					(unsigned long long)kw->max, v);
	} else if (cfg_uint(x, s, kw->min, kw->max, kw->why, &n) != 0) {
		return -1;
	}
	cfg_kw_store(dst, kw->size, n);
	return 0;
}

/* pickle_globals: "module:qualname" and "@profile" entries. Present even
 * empty, it puts trusted peers under the list (empty: learn mode). Each
 * refusal names the element's line. */
static int cfg_kw_globals(struct cfg_ctx *x, const config_setting_t *s, const struct cfg_kw *kw,
			  void *dst)
{
	struct ppolicy **out = dst;
	char err[256];
	if (cfg_strarray(x, s) != 0)
		return -1;
	*out = ppolicy_new();
	if (*out == NULL)
		return cfg_fail(x, s, "out of memory");
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (ppolicy_add(*out, config_setting_get_string(e), err, sizeof(err)) != 0)
			return cfg_fail(x, e, "pickle_globals: %s", err);
	}
	return 0;
}

/* Field designators: a key of struct config (TOP, LOG_, METRICS) or of
 * struct config_route (ROUTE). */
#define CFG_FIELD(T, f) .off = offsetof(T, f), .size = sizeof(((T *)0)->f)
#define TOP(f) .scope = CONFIG_SCOPE_TOP, CFG_FIELD(struct config, f)
#define LOG_(f) .scope = CONFIG_SCOPE_LOG, CFG_FIELD(struct config, f)
#define METRICS(f) .scope = CONFIG_SCOPE_METRICS, CFG_FIELD(struct config, f)
#define ROUTE(f) .scope = CONFIG_SCOPE_ROUTE, CFG_FIELD(struct config_route, f)
#define RELOAD .reload = true
#define RESTART .reload = false
#define UINT(lo, hi, d) .kind = KW_UINT, .min = (lo), .max = (hi), .def = (d)

/* The table. In each scope, the order of its rows is the order of the
 * "expected one of" lists. Route rows' mode default is replaced by the
 * global mode, and name's by "routeN" (config.c). */
static const struct cfg_kw cfg_kw_table[] = {
	{ .name = "mode", TOP(mode), .kind = KW_ENUM, .names = cfg_mode_names,
	  .def = CONFIG_MODE_ENFORCE, RELOAD },
	{ .name = "log", .scope = CONFIG_SCOPE_TOP, .kind = KW_GROUP, .sub = CONFIG_SCOPE_LOG,
	  RELOAD },
	{ .name = "metrics", TOP(metrics_enabled), .kind = KW_GROUP, .sub = CONFIG_SCOPE_METRICS,
	  RELOAD },
	/* Privileges are dropped once, after the first bind. */
	{ .name = "user", TOP(user), .kind = KW_FN, .fn = cfg_kw_user, .flat = true, RESTART },
	{ .name = "drain_timeout_ms", TOP(drain_timeout_ms), UINT(0, 600000, CONFIG_DEF_DRAIN_MS),
	  RELOAD },
	{ .name = "max_memory", TOP(max_memory),
	  UINT(1u << 20, CFG_SIZE_LIMIT, CONFIG_DEF_MAX_MEMORY), RELOAD },
	/* Event loops are started once: each binds every route. */
	{ .name = "threads", TOP(threads), .kind = KW_FN, .fn = cfg_kw_threads, .flat = true,
	  .min = 1, .max = CONFIG_MAX_THREADS, .def = 1, RESTART },
	{ .name = "reload_closes_disallowed", TOP(reload_closes_disallowed), .kind = KW_BOOL,
	  .def = false, RELOAD },
	{ .name = "routes", .scope = CONFIG_SCOPE_TOP, .kind = KW_ROUTES, RELOAD },

	{ .name = "level", LOG_(log_level), .kind = KW_ENUM, .names = cfg_level_names,
	  .def = LOG_INFO, RELOAD },
	{ .name = "format", LOG_(log_format), .kind = KW_ENUM, .names = cfg_format_names,
	  .def = LOG_FORMAT_JSON, RELOAD },

	{ .name = "listen", METRICS(metrics_listen), .kind = KW_ADDR, .required = true, RELOAD },
	{ .name = "probe_upstream", METRICS(metrics_probe_upstream), .kind = KW_BOOL,
	  .def = true, RELOAD },

	/* Routes are matched by listen address across a reload: a new listen
	 * is a new route, not a changed one. */
	{ .name = "name", ROUTE(name), .kind = KW_FN, .fn = cfg_kw_name, .flat = true, RELOAD },
	{ .name = "listen", ROUTE(listen), .kind = KW_ADDR, .required = true, RELOAD },
	{ .name = "upstream", ROUTE(upstream), .kind = KW_ADDR, .unix_ok = true, .required = true,
	  RELOAD },
	/* allow is required though [] is valid: admitting nobody (or
	 * everybody) must be written down, not implied. */
	{ .name = "allow", ROUTE(allow), .kind = KW_CIDRS, .required = true,
	  .why = " (write allow = [ ]; to admit nobody)", RELOAD },
	{ .name = "allow_pickle_from", ROUTE(allow_pickle_from), .kind = KW_CIDRS, RELOAD },
	{ .name = "pickle", ROUTE(pickle), .kind = KW_ENUM, .names = cfg_pickle_names,
	  .def = CONFIG_PICKLE_DROP, RELOAD },
	{ .name = "on_violation", ROUTE(on_violation), .kind = KW_ENUM,
	  .names = cfg_violation_names, .def = CONFIG_ON_VIOLATION_DROP_MESSAGE, RELOAD },
	{ .name = "mechanisms", ROUTE(mechanisms), .kind = KW_NAMES, .names = cfg_mechanisms,
	  .def_name = "NULL", .why = "unsupported mechanism", .max = CONFIG_MAX_MECHS,
	  .width = sizeof(((struct config_route *)0)->mechanisms[0]),
	  .count_off = offsetof(struct config_route, n_mechanisms), RELOAD },
	{ .name = "socket_types", ROUTE(socket_types), .kind = KW_NAMES,
	  .names = zmtp_socket_types, .why = "unknown socket type", .max = CONFIG_MAX_SOCKET_TYPES,
	  .width = sizeof(((struct config_route *)0)->socket_types[0]),
	  .count_off = offsetof(struct config_route, n_socket_types), RELOAD },
	{ .name = "max_frame_size", ROUTE(max_frame_size),
	  UINT(1, CFG_SIZE_LIMIT, CONFIG_DEF_MAX_FRAME), RELOAD },
	{ .name = "max_message_size", ROUTE(max_message_size),
	  UINT(1, CFG_SIZE_LIMIT, CONFIG_DEF_MAX_MESSAGE), RELOAD },
	{ .name = "max_scan_bytes", ROUTE(max_scan_bytes),
	  UINT(1, CONFIG_MAX_SCAN_LIMIT, CONFIG_DEF_MAX_SCAN_BYTES),
	  .why = "libevent moves at most INT_MAX bytes per call", RELOAD },
	{ .name = "handshake_timeout_ms", ROUTE(handshake_timeout_ms),
	  UINT(100, 600000, CONFIG_DEF_HANDSHAKE_MS), RELOAD },
	{ .name = "max_connections", ROUTE(max_connections), UINT(1, 1000000, CONFIG_DEF_MAX_CONNS),
	  RELOAD },
	{ .name = "mode", ROUTE(mode), .kind = KW_ENUM, .names = cfg_mode_names,
	  .def = CONFIG_MODE_ENFORCE, RELOAD },
	{ .name = "max_connections_per_peer", ROUTE(max_connections_per_peer),
	  UINT(0, 1000000, CONFIG_DEF_MAX_CONNS_PER_PEER), RELOAD },
	/* 0 turns it off; below a second would cut healthy quiet peers */
	{ .name = "idle_timeout_ms", ROUTE(idle_timeout_ms), UINT(0, 86400000, 0), .floor = 1000,
	  RELOAD },
	{ .name = "connect_timeout_ms", ROUTE(connect_timeout_ms),
	  UINT(100, 600000, CONFIG_DEF_CONNECT_MS), RELOAD },
	{ .name = "pickle_loader", ROUTE(pickle_loader), .kind = KW_ENUM, .names = cfg_loader_names,
	  .def = CONFIG_LOADER_STOCK, RELOAD },
	{ .name = "splice", ROUTE(splice), .kind = KW_BOOL, .def = true, RELOAD },
	{ .name = "pickle_globals", ROUTE(pickle_globals), .kind = KW_FN, .fn = cfg_kw_globals,
	  RELOAD },
	{ .name = "pickle_msgpack", ROUTE(pickle_msgpack), .kind = KW_BOOL, .def = true, RELOAD },
};

#define CFG_KW_N (sizeof(cfg_kw_table) / sizeof(cfg_kw_table[0]))

/* Error-message names of the scopes. */
static const char *const cfg_scope_names[] = {
	[CONFIG_SCOPE_TOP] = "", [CONFIG_SCOPE_ROUTE] = "route",
	[CONFIG_SCOPE_LOG] = "log", [CONFIG_SCOPE_METRICS] = "metrics",
};

/* ---- reading a group through the table ---- */

static const struct cfg_kw *cfg_kw_find(enum config_scope scope, const char *name, size_t *idx)
{
	for (size_t i = 0; i < CFG_KW_N; i++)
		if (cfg_kw_table[i].scope == scope && strcmp(cfg_kw_table[i].name, name) == 0) {
			*idx = i;
			return &cfg_kw_table[i];
		}
	return NULL;
}

/* The keys of a scope in table order, each printed with fmt ("%s": "a,
 * b, c"; "%s = ...;": "a = ...; b = ...;"), into buf. */
static const char *cfg_kw_list(enum config_scope scope, const char *fmt, const char *sep,
			       char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < CFG_KW_N && n < len; i++) {
		if (cfg_kw_table[i].scope != scope)
			continue;
		if (n)
			n += (size_t)snprintf(buf + n, len - n, "%s", sep);
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, fmt, cfg_kw_table[i].name);
	}
	return buf;
}

/* An enum is stored as its int: the same bytes as a uint32_t here. */
_Static_assert(sizeof(int) == sizeof(uint32_t), "enum fields are 32 bits");

/* v into a field of size bytes (config_kw_check matched sizes to kinds). */
static void cfg_kw_store(void *dst, size_t size, uint64_t v)
{
	uint32_t v32 = (uint32_t)v;
	bool b = v != 0;
	if (size == sizeof(v))
		memcpy(dst, &v, sizeof(v));
	else if (size == sizeof(b))
		memcpy(dst, &b, sizeof(b));
	else
		memcpy(dst, &v32, sizeof(v32));
}

static int cfg_kw_group(struct cfg_ctx *x, const config_setting_t *s, const struct cfg_kw *kw,
			void *base)
{
	struct cfg_walk sub = { 0 };
	const char *missing, *hint;
	char keys[256];
	if (config_setting_type(s) != CONFIG_TYPE_GROUP)
		return cfg_fail(x, s, "%s: expected a group { %s }, got %s", kw->name,
				cfg_kw_list(kw->sub, "%s = ...;", " ", keys, sizeof(keys)),
				cfg_type_name(s));
	if (cfg_kw_walk(x, s, kw->sub, base, &sub) != 0)
		return -1;
	if ((missing = cfg_kw_missing(kw->sub, &sub, &hint)) != NULL)
		return cfg_fail(x, s, "%s: missing '%s'%s", kw->name, missing, hint);
	if (kw->size)
		cfg_kw_store((char *)base + kw->off, kw->size, 1);
	return 0;
}

static int cfg_kw_parse(struct cfg_ctx *x, const config_setting_t *s, const struct cfg_kw *kw,
			void *base, struct cfg_walk *w)
{
	void *dst = (char *)base + kw->off;
	uint64_t u;
	bool b;
	int e;

	switch (kw->kind) {
	case KW_UINT:
		if (cfg_uint(x, s, kw->min, kw->max, kw->why, &u) != 0)
			return -1;
		if (u != 0 && u < kw->floor)
			return cfg_fail(x, s, "%s: %llu too small (0 = off, or %llu..%llu)",
					kw->name, (unsigned long long)u,
					(unsigned long long)kw->floor, (unsigned long long)kw->max);
		cfg_kw_store(dst, kw->size, u);
		return 0;
	case KW_BOOL:
		if (cfg_bool(x, s, &b) != 0)
			return -1;
		cfg_kw_store(dst, kw->size, b);
		return 0;
	case KW_ENUM:
		if ((e = cfg_enum(x, s, kw->names)) < 0)
			return -1;
		cfg_kw_store(dst, kw->size, (uint64_t)e);
		return 0;
	case KW_ADDR:
		return cfg_addr(x, s, kw->unix_ok, dst);
	case KW_CIDRS:
		return cfg_cidrs(x, s, dst);
	case KW_NAMES:
		return cfg_names(x, s, kw->names, kw->why, dst, kw->width, kw->max,
				 (size_t *)(void *)((char *)base + kw->count_off));
	case KW_FN:
		return kw->fn(x, s, kw, dst);
	case KW_GROUP:
		return cfg_kw_group(x, s, kw, base);
	case KW_ROUTES:
		w->routes = s;
		return 0;
	}
	return -1;
}

int cfg_kw_walk(struct cfg_ctx *x, const config_setting_t *g, enum config_scope scope,
		void *base, struct cfg_walk *w)
{
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct cfg_kw *kw;
		size_t idx = 0;
		char keys[640];
		if ((kw = cfg_kw_find(scope, name, &idx)) == NULL)
			return cfg_fail(x, s, "unknown key '%s'%s%s (expected one of %s)", name,
					scope == CONFIG_SCOPE_TOP ? "" : " in ",
					cfg_scope_names[scope],
					cfg_kw_list(scope, "%s", ", ", keys, sizeof(keys)));
		if (cfg_kw_parse(x, s, kw, base, w) != 0)
			return -1;
		w->seen |= 1ull << idx;
	}
	return 0;
}

const char *cfg_kw_missing(enum config_scope scope, const struct cfg_walk *w, const char **hint)
{
	for (size_t i = 0; i < CFG_KW_N; i++) {
		const struct cfg_kw *kw = &cfg_kw_table[i];
		if (kw->scope == scope && kw->required && !(w->seen & (1ull << i))) {
			*hint = kw->why ? kw->why : "";
			return kw->name;
		}
	}
	return NULL;
}

void cfg_kw_defaults(enum config_scope scope, void *base)
{
	for (size_t i = 0; i < CFG_KW_N; i++) {
		const struct cfg_kw *kw = &cfg_kw_table[i];
		char *dst = (char *)base + kw->off;
		if (kw->scope != scope)
			continue;
		if (kw->kind == KW_UINT || kw->kind == KW_BOOL || kw->kind == KW_ENUM) {
			cfg_kw_store(dst, kw->size, kw->def);
		} else if (kw->kind == KW_NAMES && kw->def_name) {
			memset(dst, 0, kw->size); /* NUL-padded: the wire form */
			memcpy(dst, kw->def_name, strlen(kw->def_name));
			*(size_t *)(void *)((char *)base + kw->count_off) = 1;
		} else if (kw->kind == KW_GROUP) {
			cfg_kw_defaults(kw->sub, base);
		} else if (kw->kind == KW_FN && kw->flat && kw->def) {
			cfg_kw_store(dst, kw->size, kw->def); /* an integer field (threads) */
		}
	}
}

/* ---- the table as others see it ---- */

/* "log", "metrics" for the keys of a top-level group, else NULL. */
static const char *cfg_kw_group_of(const struct cfg_kw *kw)
{
	bool grouped = kw->scope == CONFIG_SCOPE_LOG || kw->scope == CONFIG_SCOPE_METRICS;
	return grouped ? cfg_scope_names[kw->scope] : NULL;
}

/* The key as the README spells it: "log.level", "max_frame_size". */
static const char *cfg_kw_key(const struct cfg_kw *kw, char *buf, size_t len)
{
	const char *g = cfg_kw_group_of(kw);
	snprintf(buf, len, "%s%s%s", g ? g : "", g ? "." : "", kw->name);
	return buf;
}

bool config_kw_at(size_t i, struct config_kw_info *out)
{
	if (i >= CFG_KW_N)
		return false;
	out->name = cfg_kw_table[i].name;
	out->scope = cfg_kw_table[i].scope;
	out->group = cfg_kw_group_of(&cfg_kw_table[i]);
	out->reload = cfg_kw_table[i].reload;
	return true;
}

/* A value a reload can compare and copy back: no pointer inside. */
static bool cfg_kw_flat(const struct cfg_kw *kw)
{
	return kw->kind == KW_UINT || kw->kind == KW_BOOL || kw->kind == KW_ENUM ||
	       kw->kind == KW_ADDR || (kw->kind == KW_FN && kw->flat);
}

static int cfg_kw_bad(char *err, size_t errlen, const struct cfg_kw *kw, const char *why)
{
	char key[80];
	snprintf(err, errlen, "row '%s'%s: %s", cfg_kw_key(kw, key, sizeof(key)),
		 kw->scope == CONFIG_SCOPE_ROUTE ? " (route)" : "", why);
	return -1;
}

int config_kw_check(char *err, size_t errlen)
{
	for (size_t i = 0; i < CFG_KW_N; i++) {
		const struct cfg_kw *kw = &cfg_kw_table[i];
		size_t n = 0;
		if (i >= 64)
			return cfg_kw_bad(err, errlen, kw, "past row 64 (cfg_walk.seen)");
		for (size_t j = 0; j < i; j++)
			if (cfg_kw_table[j].scope == kw->scope &&
			    strcmp(cfg_kw_table[j].name, kw->name) == 0)
				return cfg_kw_bad(err, errlen, kw, "defined twice");
		if (!kw->reload && !cfg_kw_flat(kw))
			return cfg_kw_bad(err, errlen, kw, "restart-only but not a plain value");
		switch (kw->kind) {
		case KW_UINT:
			if (kw->size != 4 && kw->size != 8)
				return cfg_kw_bad(err, errlen, kw, "field is not 32 or 64 bits");
			if (kw->min > kw->def || kw->def > kw->max ||
			    (kw->def && kw->def < kw->floor))
				return cfg_kw_bad(err, errlen, kw, "default out of bounds");
			if (kw->size == 4 && kw->max > UINT32_MAX)
				return cfg_kw_bad(err, errlen, kw, "max does not fit the field");
			break;
		case KW_BOOL:
			if (kw->size != sizeof(bool))
				return cfg_kw_bad(err, errlen, kw, "field is not a bool");
			break;
		case KW_ENUM:
			while (kw->names[n])
				n++;
			if (kw->size != sizeof(int) || kw->def >= n)
				return cfg_kw_bad(err, errlen, kw, "not an enum, or bad default");
			break;
		case KW_NAMES:
			if (!kw->width || kw->size != kw->width * kw->max)
				return cfg_kw_bad(err, errlen, kw, "slots do not match the field");
			break;
		default:
			break;
		}
	}
	return 0;
}

/* One restart-only value: the running one back into the new snapshot. */
static size_t cfg_kw_keep(const struct cfg_kw *kw, void *nbase, const void *rbase,
			  const char *route, config_kw_restart_fn fn, void *arg)
{
	char key[80];
	void *n = (char *)nbase + kw->off;
	const void *r = (const char *)rbase + kw->off;
	if (memcmp(n, r, kw->size) == 0)
		return 0;
	fn(arg, cfg_kw_key(kw, key, sizeof(key)), route);
	memcpy(n, r, kw->size);
	return 1;
}

size_t config_kw_keep_restart_only(struct config *nc, const struct config *running,
				   config_kw_restart_fn fn, void *arg)
{
	size_t kept = 0;
	for (size_t i = 0; i < CFG_KW_N; i++) {
		const struct cfg_kw *kw = &cfg_kw_table[i];
		if (kw->reload || !cfg_kw_flat(kw))
			continue;
		if (kw->scope != CONFIG_SCOPE_ROUTE) {
			kept += cfg_kw_keep(kw, nc, running, NULL, fn, arg);
			continue;
		}
		for (size_t r = 0; r < nc->n_routes; r++) {
			struct config_route *nr = &nc->routes[r];
			for (size_t o = 0; o < running->n_routes; o++)
				if (cfg_addr_same(&nr->listen, &running->routes[o].listen))
					kept += cfg_kw_keep(kw, nr, &running->routes[o], nr->name, fn,
							    arg);
		}
	}
	return kept;
}
