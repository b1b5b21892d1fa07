/* Unit tests for config. Run from the repository root (fixtures are in
 * tests/unit/configs/, and conf/zmtpfw.conf is checked as a good case). */
#include "zmtpfw/config.h"
#include "zmtpfw/config_kw.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "unit_check.h"

#define DIR "tests/unit/configs/"

/* Does a hold family/ip/port (ip as text), or the unix path? */
static bool addr_is(const struct config_addr *a, const char *ip, unsigned port)
{
	char buf[INET6_ADDRSTRLEN];
	if (a->sa.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)&a->sa;
		inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
		return a->len == sizeof(*in) && ntohs(in->sin_port) == port &&
		       strcmp(buf, ip) == 0;
	}
	if (a->sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)&a->sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
		return a->len == sizeof(*in6) && ntohs(in6->sin6_port) == port &&
		       strcmp(buf, ip) == 0;
	}
	if (a->sa.ss_family == AF_UNIX) {
		const struct sockaddr_un *un = (const void *)&a->sa;
		return port == 0 && strcmp(un->sun_path, ip) == 0 &&
		       a->len == offsetof(struct sockaddr_un, sun_path) + strlen(ip) + 1;
	}
	return false;
}

/* The list formatted as "a,b,c". */
static const char *cidrs(const struct cidr_list *l)
{
	static char out[512];
	size_t n = 0;
	out[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		char one[64];
		cidr_format(&l->v[i], one, sizeof(one));
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", i ? "," : "", one);
	}
	return out;
}

static bool mech_is(const char m[20], const char *name)
{
	char want[20] = { 0 };
	memcpy(want, name, strlen(name));
	return memcmp(m, want, 20) == 0;
}

static struct config *load(const char *path)
{
	char err[512] = "";
	struct config *c = config_load_file(path, err, sizeof(err));
	CHECK(c != NULL, "load %s: %s", path, err);
	return c;
}

static void test_good_full(void)
{
	struct config *c = load(DIR "good_full.conf");
	const struct config_route *r;
	if (c == NULL)
		return;
	CHECK(c->mode == CONFIG_MODE_LOG_ONLY, "global mode");
	CHECK(c->log_level == LOG_DEBUG && c->log_format == LOG_FORMAT_TEXT, "log");
	CHECK(strcmp(c->path, DIR "good_full.conf") == 0, "path '%s'", c->path);
	CHECK(c->n_routes == 3, "n_routes %zu", c->n_routes);
	if (c->n_routes != 3)
		goto out;

	r = &c->routes[0];
	CHECK(strcmp(r->name, "sglang-scheduler") == 0, "name '%s'", r->name);
	CHECK(r->line == 5, "line %d", r->line);
	CHECK(addr_is(&r->listen, "0.0.0.0", 15555) && strcmp(r->listen.text, "0.0.0.0:15555") == 0,
	      "listen");
	CHECK(addr_is(&r->upstream, "127.0.0.1", 5555), "upstream");
	CHECK(strcmp(cidrs(&r->allow), "10.0.0.0/8,::1/128,192.168.1.7/32") == 0, "allow %s",
	      cidrs(&r->allow));
	CHECK(strcmp(cidrs(&r->allow_pickle_from), "10.1.2.0/24") == 0, "allow_pickle_from %s",
	      cidrs(&r->allow_pickle_from));
	CHECK(r->pickle == CONFIG_PICKLE_ALLOW, "pickle");
	CHECK(r->on_violation == CONFIG_ON_VIOLATION_CLOSE, "on_violation");
	CHECK(r->n_mechanisms == 1 && mech_is(r->mechanisms[0], "NULL"), "mechanisms");
	CHECK(r->n_socket_types == 2 && strcmp(r->socket_types[0], "PUSH") == 0 &&
		      strcmp(r->socket_types[1], "DEALER") == 0,
	      "socket_types");
	CHECK(r->max_frame_size == 4294967296ull, "max_frame_size %llu",
	      (unsigned long long)r->max_frame_size);
	CHECK(r->max_message_size == 1048576, "max_message_size");
	CHECK(r->handshake_timeout_ms == 100, "handshake");
	CHECK(r->max_connections == 1000000, "max_connections");
	CHECK(r->mode == CONFIG_MODE_ENFORCE, "route mode override");

	r = &c->routes[1];
	CHECK(strcmp(r->name, "route1") == 0, "default name '%s'", r->name);
	CHECK(r->line == 21, "line %d", r->line);
	CHECK(addr_is(&r->listen, "::1", 15556) && strcmp(r->listen.text, "[::1]:15556") == 0,
	      "v6 listen");
	CHECK(addr_is(&r->upstream, "/run/worker.sock", 0) &&
		      strcmp(r->upstream.text, "unix:/run/worker.sock") == 0,
	      "unix upstream");
	CHECK(r->allow.n == 0 && r->allow_pickle_from.n == 0, "empty allow");
	CHECK(r->pickle == CONFIG_PICKLE_DROP && r->on_violation == CONFIG_ON_VIOLATION_DROP_MESSAGE,
	      "defaults");
	CHECK(r->mode == CONFIG_MODE_LOG_ONLY, "inherits global mode");
	CHECK(r->n_socket_types == 0 && r->n_mechanisms == 1 && mech_is(r->mechanisms[0], "NULL"),
	      "default mechanisms");
	CHECK(r->max_frame_size == CONFIG_DEF_MAX_FRAME && r->max_message_size == CONFIG_DEF_MAX_MESSAGE &&
		      r->handshake_timeout_ms == CONFIG_DEF_HANDSHAKE_MS &&
		      r->max_connections == CONFIG_DEF_MAX_CONNS,
	      "default limits");

	r = &c->routes[2];
	CHECK(strcmp(r->name, "tokenizer") == 0, "name");
	CHECK(addr_is(&r->listen, "0.0.0.0", 15557) && strcmp(r->listen.text, "*:15557") == 0,
	      "* listen");
	CHECK(addr_is(&r->upstream, "127.0.0.1", 5557) &&
		      strcmp(r->upstream.text, "localhost:5557") == 0,
	      "localhost upstream");
	CHECK(strcmp(cidrs(&r->allow), "0.0.0.0/0") == 0, "allow as a list ( )");
	CHECK(r->max_frame_size == 16 && r->max_message_size == (1ull << 62), "hex and 2^62");
	CHECK(r->handshake_timeout_ms == 600000 && r->max_connections == 1, "bounds inclusive");
out:
	config_free(c);
}

static void test_good_minimal(void)
{
	struct config *c = load(DIR "good_minimal.conf");
	const struct config_route *r;
	if (c == NULL)
		return;
	CHECK(c->mode == CONFIG_MODE_ENFORCE && c->log_level == LOG_INFO &&
		      c->log_format == LOG_FORMAT_JSON && c->n_routes == 1,
	      "global defaults");
	r = &c->routes[0];
	CHECK(strcmp(r->name, "route0") == 0 && r->line == 2, "name/line");
	CHECK(strcmp(cidrs(&r->allow), "127.0.0.1/32") == 0, "allow");
	CHECK(r->mode == CONFIG_MODE_ENFORCE && r->pickle == CONFIG_PICKLE_DROP &&
		      r->on_violation == CONFIG_ON_VIOLATION_DROP_MESSAGE && r->n_socket_types == 0 &&
		      r->allow_pickle_from.n == 0 && r->n_mechanisms == 1 &&
		      r->max_frame_size == 268435456 && r->max_message_size == 268435456 &&
		      r->handshake_timeout_ms == 10000 && r->max_connections == 1024,
	      "route defaults");
	config_free(c);
}

static void test_good_order(void)
{
	struct config *c = load(DIR "good_order.conf");
	if (c == NULL)
		return;
	CHECK(c->n_routes == 3 && c->mode == CONFIG_MODE_LOG_ONLY, "routes");
	if (c->n_routes == 3) {
		CHECK(c->routes[0].mode == CONFIG_MODE_LOG_ONLY &&
			      c->routes[1].mode == CONFIG_MODE_LOG_ONLY &&
			      c->routes[2].mode == CONFIG_MODE_ENFORCE,
		      "mode set after routes is inherited");
		CHECK(addr_is(&c->routes[0].upstream, "::1", 5555), "v6 upstream");
		CHECK(addr_is(&c->routes[2].listen, "::", 15556), "[::] listen");
		CHECK(strcmp(cidrs(&c->routes[0].allow), "::/0") == 0, "::/0");
	}
	config_free(c);
}

/* Listen addresses that can all listen at once, wildcards included. */
static void test_good_overlap_none(void)
{
	struct config *c = load(DIR "overlap_none.conf");
	if (c == NULL)
		return;
	CHECK(c->n_routes == 5, "routes: %zu", c->n_routes);
	config_free(c);
}

/* The libconfig 1.5 pre-scan must not trip on digits in comments or
 * strings, and accepts the largest plain ints. */
static void test_good_numbers(void)
{
	struct config *c = load(DIR "good_numbers.conf");
	const struct config_route *r;
	if (c == NULL)
		return;
	r = &c->routes[0];
	CHECK(strcmp(r->name, "n4294967296") == 0, "name");
	CHECK(addr_is(&r->upstream, "/run/4294967296.sock", 0), "unix path with digits");
	CHECK(r->max_frame_size == 2147483647 && r->max_message_size == 0x7fffffff &&
		      r->max_connections == 100,
	      "values %llu %llu %u", (unsigned long long)r->max_frame_size,
	      (unsigned long long)r->max_message_size, r->max_connections);
	config_free(c);
}

static void test_shipped(void)
{
	struct config *c = load("conf/zmtpfw.conf");
	const struct config_route *r;
	if (c == NULL)
		return;
	CHECK(c->mode == CONFIG_MODE_ENFORCE && c->log_level == LOG_INFO &&
		      c->log_format == LOG_FORMAT_JSON && c->n_routes == 1,
	      "shipped globals");
	r = &c->routes[0];
	CHECK(strcmp(r->name, "worker") == 0, "name");
	CHECK(addr_is(&r->listen, "0.0.0.0", 15555) && addr_is(&r->upstream, "127.0.0.1", 5555),
	      "addresses");
	CHECK(strcmp(cidrs(&r->allow), "127.0.0.0/8,::1/128") == 0, "allow %s", cidrs(&r->allow));
	CHECK(r->allow_pickle_from.n == 0 && r->pickle == CONFIG_PICKLE_DROP &&
		      r->on_violation == CONFIG_ON_VIOLATION_DROP_MESSAGE &&
		      r->mode == CONFIG_MODE_ENFORCE && r->n_socket_types == 0 &&
		      r->n_mechanisms == 1 && mech_is(r->mechanisms[0], "NULL"),
	      "shipped policy");
	CHECK(r->max_frame_size == CONFIG_DEF_MAX_FRAME && r->max_message_size == CONFIG_DEF_MAX_MESSAGE &&
		      r->handshake_timeout_ms == CONFIG_DEF_HANDSHAKE_MS &&
		      r->max_connections == CONFIG_DEF_MAX_CONNS &&
		      r->max_scan_bytes == CONFIG_DEF_MAX_SCAN_BYTES &&
		      c->max_memory == CONFIG_DEF_MAX_MEMORY,
	      "shipped values equal the built-in defaults");
	config_free(c);
}

/* Each bad fixture: the exact line and part of the message. */
static const struct {
	const char *file;
	int line;
	const char *msg;
} bad[] = {
	{ "bad_syntax", 3, "syntax error" },
	{ "bad_dup_key", 6, "duplicate setting name" },
	{ "bad_unknown_top", 3, "unknown key 'routez'" },
	{ "bad_unknown_log", 4, "unknown key 'colour' in log" },
	{ "bad_unknown_route", 6, "unknown key 'alow' in route" },
	{ "bad_type_listen", 3, "listen: expected a string, got an integer" },
	{ "bad_type_allow", 5, "allow: expected an array of strings" },
	{ "bad_type_allow_elem", 6, "allow: element 1: expected a string" },
	{ "bad_type_int", 6, "max_connections: expected an integer, got a string" },
	{ "bad_type_float", 6, "handshake_timeout_ms: expected an integer, got a float" },
	{ "bad_type_log", 2, "log: expected a group" },
	{ "bad_type_mode", 2, "mode: expected a string, got a boolean" },
	{ "bad_routes_group", 2, "routes: expected a list" },
	{ "bad_route_not_group", 4, "element 0: expected a group" }, /* libconfig: line after */
	{ "bad_missing_listen", 3, "route 'w': missing 'listen'" },
	{ "bad_missing_upstream", 3, "missing 'upstream'" },
	{ "bad_missing_allow", 3, "missing 'allow'" },
	{ "bad_cidr", 7, "allow: bad CIDR '10.0.0.1/8': host bits set" },
	{ "bad_cidr_pickle", 6, "allow_pickle_from: bad CIDR 'junk': bad address" },
	{ "bad_cidr_prefix", 6, "bad CIDR '10.0.0.0/33': prefix length out of range" },
	{ "bad_listen_addr", 3, "listen: bad address '10.0.0.1': missing port" },
	{ "bad_listen_unix", 3, "TCP only" },
	{ "bad_listen_port", 3, "bad address '0.0.0.0:70000': bad port" },
	{ "bad_listen_v6", 3, "IPv6 addresses need brackets" },
	{ "bad_listen_host", 3, "bad address 'example.com:5555': host must be a numeric" },
	{ "bad_upstream_relative", 4,
	  "upstream: bad address 'unix:run/worker.sock': unix socket path must be absolute" },
	{ "bad_upstream_octal", 4, "upstream: bad address '010.0.0.1:5555'" },
	{ "bad_mode", 2, "mode: unknown value 'enforcing'" },
	{ "bad_route_mode", 6, "mode: unknown value 'log_only'" },
	{ "bad_pickle", 6, "pickle: unknown value 'deny'" },
	{ "bad_violation", 6, "on_violation: unknown value 'drop'" },
	{ "bad_level", 3, "level: unknown value 'warning'" },
	{ "bad_format", 2, "format: unknown value 'logfmt'" },
	{ "bad_mech", 7, "unsupported mechanism 'CURVE'" },
	{ "bad_mech_empty", 6, "mechanisms: empty list" },
	{ "bad_mech_dup", 6, "mechanisms: duplicate 'NULL'" },
	{ "bad_socket_type", 6, "unknown socket type 'push'" },
	{ "bad_socket_type_dup", 6, "socket_types: duplicate 'PUSH'" },
	{ "bad_socket_type_empty", 6, "socket_types: empty list" },
	{ "bad_frame_zero", 6, "max_frame_size: 0 out of range 1..4611686018427387904" },
	{ "bad_frame_big", 6, "max_frame_size: 4611686018427387905 out of range" },
	{ "bad_frame_nosuffix", 6, "integer 4294967296 does not fit in 32 bits" },
	{ "bad_frame_nosuffix_wrap", 6, "write 4294968296L" },
	{ "bad_hex_big", 6, "integer 0x100000005 does not fit in 32 bits" },
	{ "bad_float", 6, "max_frame_size: expected an integer, got a float" },
	{ "bad_msg_neg", 6, "max_message_size: -1 out of range" },
	{ "bad_handshake_low", 6, "handshake_timeout_ms: 99 out of range 100..600000" },
	{ "bad_handshake_high", 6, "handshake_timeout_ms: 600001 out of range" },
	{ "bad_conns_zero", 6, "max_connections: 0 out of range 1..1000000" },
	{ "bad_conns_high", 6, "max_connections: 1000001 out of range" },
	{ "bad_name", 6, "name: 'my route' may only contain" },
	{ "bad_name_type", 6, "name: expected a string" },
	{ "bad_dup_name", 4, "duplicate route name 'a' (also at line 3)" },
	{ "bad_dup_autoname", 4, "duplicate route name 'route1'" },
	{ "bad_dup_listen", 4, "route 'b': listen *:15555 is already used by route 'a' (line 3)" },
	{ "bad_dup_listen_v6", 4, "already used by route 'a'" },
	{ "bad_overlap_any4", 4,
	  "route 'b': listen *:15555 overlaps 127.0.0.1:15555 of route 'a' (line 3)" },
	{ "bad_overlap_any6", 4, "listen [::]:15555 overlaps 127.0.0.1:15555 of route 'a'" },
	{ "bad_overlap_mapped", 4, "overlaps 127.0.0.1:15555 of route 'a'" },
	{ "bad_no_routes", 1, "no routes defined" },
	{ "bad_empty", 1, "no routes defined" },
	{ "bad_empty_routes", 3, "no routes defined" },
	{ "bad_include", 3, "@include is not supported" },
};

static void test_bad(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char path[256], prefix[300], err[1024];
		struct config *c;
		snprintf(path, sizeof(path), DIR "%s.conf", bad[i].file);
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, bad[i].line);
		memset(err, 0, sizeof(err));
		c = config_load_file(path, err, sizeof(err));
		CHECK(c == NULL, "%s: loaded, want error", path);
		config_free(c);
		CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "%s: want prefix '%s', got '%s'",
		      bad[i].file, prefix, err);
		CHECK(strstr(err, bad[i].msg) != NULL, "%s: want '%s' in '%s'", bad[i].file,
		      bad[i].msg, err);
		CHECK(strchr(err, '\n') == NULL, "%s: message has a newline", bad[i].file);
	}
}

/* Operations keys, loaded from memory (config_load_buffer). */
#define OPS_ROUTE(extra)                                                                 \
	"routes = ( { listen = \"127.0.0.1:15555\"; upstream = \"127.0.0.1:5555\";\n" \
	"  allow = [ \"127.0.0.1\" ];\n" extra " } );\n"

static const struct {
	const char *text;
	int line; /* 0: must load */
	const char *msg;
} ops[] = {
	{ "metrics = { listen = \"127.0.0.1:9464\"; };\n" OPS_ROUTE(""), 0, NULL },
	{ "metrics = { listen = \"[::1]:9464\"; probe_upstream = false; };\n" OPS_ROUTE(""), 0,
	  NULL },
	{ "metrics = { };\n" OPS_ROUTE(""), 1, "metrics: missing 'listen'" },
	{ "metrics = { listen = \"unix:/m\"; };\n" OPS_ROUTE(""), 1, "TCP only" },
	{ "metrics = { listen = \"127.0.0.1:9464\"; port = 1; };\n" OPS_ROUTE(""), 1,
	  "unknown key 'port' in metrics" },
	{ "metrics = { listen = \"127.0.0.1:15555\"; };\n" OPS_ROUTE(""), 2,
	  "listen 127.0.0.1:15555 is the metrics address" },
	{ "metrics = { listen = \"*:15555\"; };\n" OPS_ROUTE(""), 2,
	  "listen 127.0.0.1:15555 overlaps the metrics address *:15555" },
	{ "metrics = \"127.0.0.1:9464\";\n" OPS_ROUTE(""), 1, "metrics: expected a group" },
	{ "metrics = { listen = \"127.0.0.1:9464\"; probe_upstream = 1; };\n" OPS_ROUTE(""), 1,
	  "probe_upstream: expected true or false, got an integer" },
	{ "user = \"zmtpfw\";\n" OPS_ROUTE(""), 0, NULL },
	{ "user = \"\";\n" OPS_ROUTE(""), 1, "user: length must be" },
	{ "user = \"a b\";\n" OPS_ROUTE(""), 1, "user: 'a b' is not a user name" },
	{ "user = 0;\n" OPS_ROUTE(""), 1, "user: expected a string" },
	{ "drain_timeout_ms = 0;\n" OPS_ROUTE(""), 0, NULL },
	{ "drain_timeout_ms = 600001;\n" OPS_ROUTE(""), 1, "drain_timeout_ms: 600001 out of range" },
	{ "reload_closes_disallowed = true;\n" OPS_ROUTE(""), 0, NULL },
	{ "reload_closes_disallowed = \"yes\";\n" OPS_ROUTE(""), 1, "expected true or false" },
	{ OPS_ROUTE("max_connections_per_peer = 8; idle_timeout_ms = 1000; connect_timeout_ms = 100;"),
	  0, NULL },
	{ OPS_ROUTE("idle_timeout_ms = 999;"), 3, "idle_timeout_ms: 999 too small" },
	{ OPS_ROUTE("pickle_loader = \"plain\";"), 0, NULL },
	{ OPS_ROUTE("pickle_loader = \"custom\";"), 3, "pickle_loader: unknown value 'custom'" },
	{ OPS_ROUTE("idle_timeout_ms = 86400001;"), 3, "idle_timeout_ms: 86400001 out of range" },
	{ OPS_ROUTE("connect_timeout_ms = 99;"), 3, "connect_timeout_ms: 99 out of range 100..600000" },
	{ OPS_ROUTE("max_connections_per_peer = -1;"), 3, "max_connections_per_peer: -1 out of range" },
	{ OPS_ROUTE("splice = false;"), 0, NULL },
	{ OPS_ROUTE("splice = 0;"), 3, "splice: expected true or false, got an integer" },
	/* threads: top level, 1..CONFIG_MAX_THREADS or "auto" (0) */
	{ "threads = 2;\n" OPS_ROUTE(""), 0, NULL },
	{ "threads = \"auto\";\n" OPS_ROUTE(""), 0, NULL },
	{ "threads = 64;\n" OPS_ROUTE(""), 0, NULL },
	{ "threads = 0;\n" OPS_ROUTE(""), 1, "threads: 0 out of range 1..64" },
	{ "threads = 65;\n" OPS_ROUTE(""), 1, "threads: 65 out of range 1..64" },
	{ "threads = \"all\";\n" OPS_ROUTE(""), 1,
	  "threads: expected an integer 1..64 or \"auto\", got \"all\"" },
	{ "threads = true;\n" OPS_ROUTE(""), 1, "threads: expected an integer, got a boolean" },
	{ OPS_ROUTE("threads = 2;"), 3, "unknown key 'threads' in route" },
	/* max_memory: top level, 1 MiB..2^62 */
	{ "max_memory = 1048576;\n" OPS_ROUTE(""), 0, NULL },
	{ "max_memory = 4611686018427387904L;\n" OPS_ROUTE(""), 0, NULL },
	{ "max_memory = 1048575;\n" OPS_ROUTE(""), 1,
	  "max_memory: 1048575 out of range 1048576..4611686018427387904" },
	{ "max_memory = 4611686018427387905L;\n" OPS_ROUTE(""), 1,
	  "max_memory: 4611686018427387905 out of range" },
	{ "max_memory = 0;\n" OPS_ROUTE(""), 1, "max_memory: 0 out of range" },
	{ "max_memory = \"1G\";\n" OPS_ROUTE(""), 1, "max_memory: expected an integer, got a string" },
	{ "max_memory = 4294967296;\n" OPS_ROUTE(""), 1, "integer 4294967296 does not fit in 32 bits" },
	{ OPS_ROUTE("max_memory = 1048576;"), 3, "unknown key 'max_memory' in route" },
	/* max_scan_bytes: route, 1..CONFIG_MAX_SCAN_LIMIT, the limit's reason said */
	{ OPS_ROUTE("max_scan_bytes = 1;"), 0, NULL },
	{ OPS_ROUTE("max_scan_bytes = 1073741824;"), 0, NULL },
	{ OPS_ROUTE("max_scan_bytes = 1073741825;"), 3,
	  "max_scan_bytes: 1073741825 out of range 1..1073741824 (libevent moves at most INT_MAX "
	  "bytes per call)" },
	{ OPS_ROUTE("max_scan_bytes = 4294967296L;"), 3, "max_scan_bytes: 4294967296 out of range" },
	{ OPS_ROUTE("max_scan_bytes = 0;"), 3, "max_scan_bytes: 0 out of range 1..1073741824" },
	{ OPS_ROUTE("max_scan_bytes = -1;"), 3, "max_scan_bytes: -1 out of range" },
	{ OPS_ROUTE("max_scan_bytes = true;"), 3, "max_scan_bytes: expected an integer, got a boolean" },
	{ "max_scan_bytes = 1;\n" OPS_ROUTE(""), 1, "unknown key 'max_scan_bytes' (expected one of" },
};

static void test_ops_keys(void)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		char err[1024] = "", prefix[64];
		struct config *c = config_load_buffer(ops[i].text, strlen(ops[i].text), "mem", err,
						      sizeof(err));
		if (ops[i].line == 0) {
			CHECK(c != NULL, "ops %zu: want ok, got '%s'", i, err);
		} else {
			snprintf(prefix, sizeof(prefix), "mem:%d: ", ops[i].line);
			CHECK(c == NULL && strncmp(err, prefix, strlen(prefix)) == 0 &&
				      strstr(err, ops[i].msg) != NULL,
			      "ops %zu: want '%s%s', got '%s'", i, prefix, ops[i].msg, err);
		}
		config_free(c);
	}
	/* Values land where they should; defaults otherwise. */
	const char *t = "metrics = { listen = \"127.0.0.1:9464\"; probe_upstream = false; };\n"
			"user = \"nobody\"; drain_timeout_ms = 2500; reload_closes_disallowed = true;\n"
			"max_memory = 3145728;\n"
			OPS_ROUTE("max_connections_per_peer = 8; idle_timeout_ms = 60000; "
				  "connect_timeout_ms = 250; splice = false; max_scan_bytes = 4096;");
	char err[256] = "";
	struct config *c = config_load_buffer(t, strlen(t), "mem", err, sizeof(err));
	CHECK(c != NULL, "ops values: %s", err);
	if (c) {
		const struct config_route *r = &c->routes[0];
		CHECK(c->metrics_enabled && addr_is(&c->metrics_listen, "127.0.0.1", 9464) &&
			      !c->metrics_probe_upstream && strcmp(c->user, "nobody") == 0 &&
			      c->drain_timeout_ms == 2500 && c->reload_closes_disallowed,
		      "ops globals");
		CHECK(r->max_connections_per_peer == 8 && r->idle_timeout_ms == 60000 &&
			      r->connect_timeout_ms == 250 && !r->splice && r->max_scan_bytes == 4096,
		      "ops route values");
		CHECK(c->max_memory == (3ull << 20), "max_memory %llu",
		      (unsigned long long)c->max_memory);
		config_free(c);
	}
	c = config_load_buffer(OPS_ROUTE(""), strlen(OPS_ROUTE("")), "mem", err, sizeof(err));
	CHECK(c != NULL, "ops defaults: %s", err);
	if (c) {
		const struct config_route *r = &c->routes[0];
		CHECK(!c->metrics_enabled && c->metrics_probe_upstream && c->user[0] == 0 &&
			      c->drain_timeout_ms == CONFIG_DEF_DRAIN_MS && !c->reload_closes_disallowed,
		      "ops global defaults");
		CHECK(r->max_connections_per_peer == CONFIG_DEF_MAX_CONNS_PER_PEER && r->idle_timeout_ms == 0 &&
			      r->connect_timeout_ms == CONFIG_DEF_CONNECT_MS && r->splice,
		      "ops route defaults");
		CHECK(c->max_memory == CONFIG_DEF_MAX_MEMORY && c->max_memory == (1ull << 30),
		      "max_memory default %llu", (unsigned long long)c->max_memory);
		/* The default scan bound is the default frame limit: no frame
		 * a default route accepts is judged by the bound alone. */
		CHECK(r->max_scan_bytes == CONFIG_DEF_MAX_SCAN_BYTES &&
			      r->max_scan_bytes == CONFIG_DEF_MAX_FRAME,
		      "max_scan_bytes default %llu", (unsigned long long)r->max_scan_bytes);
		config_free(c);
	}
	/* A buffer without a terminator, and one with a NUL inside. */
	char raw[] = "x";
	c = config_load_buffer(raw, 0, "mem", err, sizeof(err));
	CHECK(c == NULL && strstr(err, "no routes defined"), "empty buffer: %s", err);
	c = config_load_buffer("routes\0=", 8, "mem", err, sizeof(err));
	CHECK(c == NULL && strstr(err, "NUL byte"), "NUL: %s", err);
}

static void test_load_edges(void)
{
	char err[128];
	struct config *c;
	c = config_load_file(DIR "does_not_exist.conf", err, sizeof(err));
	CHECK(c == NULL &&
		      strcmp(err, DIR "does_not_exist.conf: cannot open: No such file or directory") == 0,
	      "missing file: '%s'", err);
	c = config_load_file(DIR "bad_cidr.conf", NULL, 0); /* no buffer: no crash */
	CHECK(c == NULL, "no err buffer");
	memset(err, 'x', sizeof(err));
	c = config_load_file(DIR "bad_unknown_route.conf", err, 20);
	CHECK(c == NULL && strlen(err) == 19 && err[20] == 'x', "short buffer truncates: '%s'", err);
	config_free(NULL);
}

static const struct {
	const char *in;
	bool unix_ok;
	const char *ip; /* expected address text, or unix path; NULL = error */
	unsigned port;
	const char *err;
} addrs[] = {
	{ "0.0.0.0:15555", false, "0.0.0.0", 15555, NULL },
	{ "*:1", false, "0.0.0.0", 1, NULL },
	{ "localhost:65535", false, "127.0.0.1", 65535, NULL },
	{ "10.1.2.3:80", true, "10.1.2.3", 80, NULL },
	{ "[::1]:5555", false, "::1", 5555, NULL },
	{ "[::]:5555", false, "::", 5555, NULL },
	{ "[2001:db8::1]:443", false, "2001:db8::1", 443, NULL },
	{ "[::ffff:10.0.0.1]:80", false, "::ffff:10.0.0.1", 80, NULL },
	{ "127.0.0.1:05555", false, "127.0.0.1", 5555, NULL },
	{ "unix:/run/w.sock", true, "/run/w.sock", 0, NULL },
	{ "unix:/run/w.sock", false, NULL, 0, "TCP only" },
	{ "unix:w.sock", true, NULL, 0, "absolute" },
	{ "unix:", true, NULL, 0, "absolute" },
	{ "", false, NULL, 0, "empty" },
	{ "127.0.0.1", false, NULL, 0, "missing port" },
	{ "127.0.0.1:", false, NULL, 0, "bad port" },
	{ "127.0.0.1:0", false, NULL, 0, "bad port" },
	{ "127.0.0.1:65536", false, NULL, 0, "bad port" },
	{ "127.0.0.1:123456", false, NULL, 0, "bad port" },
	{ "127.0.0.1:-1", false, NULL, 0, "bad port" },
	{ "127.0.0.1:http", false, NULL, 0, "bad port" },
	{ "127.0.0.1:80 ", false, NULL, 0, "bad port" },
	{ ":80", false, NULL, 0, "missing host" },
	{ "[]:80", false, NULL, 0, "missing host" },
	{ "::1:80", false, NULL, 0, "brackets" },
	{ "[::1]", false, NULL, 0, "missing port" },
	{ "[::1]80", false, NULL, 0, "missing port" },
	{ "[::1:80", false, NULL, 0, "missing ']'" },
	{ "[10.0.0.1]:80", false, NULL, 0, "bad IPv6" },
	{ "[zz::1]:80", false, NULL, 0, "bad IPv6" },
	{ "example.com:80", false, NULL, 0, "numeric" },
	{ "127.1:80", false, NULL, 0, "numeric" },
	{ "010.0.0.1:80", false, NULL, 0, "numeric" },
	{ "0x7f.0.0.1:80", false, NULL, 0, "numeric" },
	{ " 127.0.0.1:80", false, NULL, 0, "numeric" },
	{ "LOCALHOST:80", false, NULL, 0, "numeric" },
};

static void test_parse_addr(void)
{
	char longpath[200];
	struct config_addr a;
	const char *err;

	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		int rc;
		err = NULL;
		memset(&a, 0xAA, sizeof(a));
		rc = config_parse_addr(addrs[i].in, addrs[i].unix_ok, &a, &err);
		if (addrs[i].ip) {
			CHECK(rc == 0, "'%s': %s", addrs[i].in, err ? err : "?");
			CHECK(rc == 0 && addr_is(&a, addrs[i].ip, addrs[i].port) &&
				      strcmp(a.text, addrs[i].in) == 0,
			      "'%s': wrong result", addrs[i].in);
		} else {
			CHECK(rc == -1 && err && strstr(err, addrs[i].err), "'%s': want '%s', got '%s'",
			      addrs[i].in, addrs[i].err, rc ? err : "ok");
		}
	}
	/* sun_path is 108 bytes with the NUL. */
	memset(longpath, 'a', sizeof(longpath));
	memcpy(longpath, "unix:/", 6);
	longpath[5 + 107] = '\0';
	CHECK(config_parse_addr(longpath, true, &a, &err) == 0, "107-byte path: %s", err);
	longpath[5 + 107] = 'a';
	longpath[5 + 108] = '\0';
	CHECK(config_parse_addr(longpath, true, &a, &err) == -1 && strstr(err, "too long"),
	      "108-byte path");
	memset(longpath, '1', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	CHECK(config_parse_addr(longpath, false, &a, &err) == -1 && strstr(err, "too long"),
	      "long text");
	CHECK(config_parse_addr(NULL, false, &a, &err) == -1 && strstr(err, "empty"), "NULL");
}

static void test_flags(void)
{
	char err[256];
	struct config *c;
	const struct config_route *r;

	c = config_from_flags("*:15555", "unix:/run/w.sock", "10.0.0.0/8, ::1,192.168.0.0/16",
			      "10.1.0.0/16", true, err, sizeof(err));
	CHECK(c != NULL, "flags: %s", err);
	if (c) {
		r = &c->routes[0];
		CHECK(c->n_routes == 1 && strcmp(r->name, "cli") == 0 && r->line == 0 &&
			      c->path[0] == '\0',
		      "route");
		CHECK(c->mode == CONFIG_MODE_LOG_ONLY && r->mode == CONFIG_MODE_LOG_ONLY, "log_only");
		CHECK(addr_is(&r->listen, "0.0.0.0", 15555) &&
			      addr_is(&r->upstream, "/run/w.sock", 0),
		      "addresses");
		CHECK(strcmp(cidrs(&r->allow), "10.0.0.0/8,::1/128,192.168.0.0/16") == 0, "allow %s",
		      cidrs(&r->allow));
		CHECK(strcmp(cidrs(&r->allow_pickle_from), "10.1.0.0/16") == 0, "pickle from");
		CHECK(r->pickle == CONFIG_PICKLE_DROP && r->n_mechanisms == 1 &&
			      r->max_frame_size == CONFIG_DEF_MAX_FRAME &&
			      r->max_connections == CONFIG_DEF_MAX_CONNS &&
			      r->max_scan_bytes == CONFIG_DEF_MAX_SCAN_BYTES &&
			      c->max_memory == CONFIG_DEF_MAX_MEMORY && c->log_level == LOG_INFO,
		      "defaults");
		config_free(c);
	}
	c = config_from_flags("127.0.0.1:1", "127.0.0.1:2", "", NULL, false, err, sizeof(err));
	CHECK(c && c->mode == CONFIG_MODE_ENFORCE && c->routes[0].allow.n == 0 &&
		      c->routes[0].allow_pickle_from.n == 0,
	      "empty allow admits nobody");
	config_free(c);

	static const struct {
		const char *listen, *upstream, *allow, *pickle, *msg;
	} badf[] = {
		{ "127.0.0.1:1", "127.0.0.1:2", "10.0.0.1/8", NULL,
		  "--allow: bad CIDR '10.0.0.1/8': host bits set" },
		{ "127.0.0.1:1", "127.0.0.1:2", "10.0.0.0/8,,::1", NULL, "--allow: empty entry" },
		{ "127.0.0.1:1", "127.0.0.1:2", "10.0.0.0/8,", NULL, "--allow: empty entry" },
		{ "127.0.0.1:1", "127.0.0.1:2", "::1", "bogus",
		  "--allow-pickle-from: bad CIDR 'bogus': bad address" },
		{ "127.0.0.1:1", "127.0.0.1:2", NULL, NULL, "--allow is required" },
		{ NULL, "127.0.0.1:2", "::1", NULL, "--listen is required" },
		{ "127.0.0.1:1", NULL, "::1", NULL, "--upstream is required" },
		{ "unix:/x", "127.0.0.1:2", "::1", NULL, "--listen: bad address 'unix:/x': unix" },
		{ "127.0.0.1:1", "nowhere", "::1", NULL, "--upstream: bad address 'nowhere': missing port" },
	};
	for (size_t i = 0; i < sizeof(badf) / sizeof(badf[0]); i++) {
		err[0] = '\0';
		c = config_from_flags(badf[i].listen, badf[i].upstream, badf[i].allow, badf[i].pickle,
				      false, err, sizeof(err));
		CHECK(c == NULL && strncmp(err, badf[i].msg, strlen(badf[i].msg)) == 0,
		      "flags %zu: want '%s', got '%s'", i, badf[i].msg, err);
		config_free(c);
	}
}

/* The table itself: consistent, and the source of every "expected one
 * of" list (each key of the scope named, in a message that fits). */
static void test_kw_table(void)
{
	static const struct {
		const char *text;
		enum config_scope scope;
	} unknown[] = {
		{ "nope = 1;\n" OPS_ROUTE(""), CONFIG_SCOPE_TOP },
		{ OPS_ROUTE("nope = 1;"), CONFIG_SCOPE_ROUTE },
		{ "log = { nope = 1; };\n" OPS_ROUTE(""), CONFIG_SCOPE_LOG },
		{ "metrics = { nope = 1; };\n" OPS_ROUTE(""), CONFIG_SCOPE_METRICS },
	};
	char err[1024] = "";
	struct config_kw_info kw;
	size_t n = 0, restart = 0;

	CHECK(config_kw_check(err, sizeof(err)) == 0, "table: %s", err);
	for (size_t i = 0; config_kw_at(i, &kw); i++) {
		n++;
		restart += !kw.reload;
		CHECK(kw.name && kw.name[0], "row %zu has a name", i);
		CHECK((kw.group != NULL) ==
			      (kw.scope == CONFIG_SCOPE_LOG || kw.scope == CONFIG_SCOPE_METRICS),
		      "row %s: group", kw.name);
	}
	CHECK(n >= 30 && restart == 2, "%zu rows, %zu restart-only (user, threads)", n, restart);
	for (size_t u = 0; u < sizeof(unknown) / sizeof(unknown[0]); u++) {
		struct config *c = config_load_buffer(unknown[u].text, strlen(unknown[u].text), "mem",
						      err, sizeof(err));
		CHECK(c == NULL && strstr(err, "unknown key 'nope'") && strlen(err) < sizeof(err) - 1,
		      "unknown %zu: '%s'", u, err);
		config_free(c);
		char want[1024] = "(expected one of ";
		size_t len = strlen(want), first = len;
		for (size_t i = 0; config_kw_at(i, &kw); i++)
			if (kw.scope == unknown[u].scope)
				len += (size_t)snprintf(want + len, sizeof(want) - len, "%s%s",
							len > first ? ", " : "", kw.name);
		snprintf(want + len, sizeof(want) - len, ")");
		CHECK(strstr(err, want) != NULL, "unknown %zu: want '%s' in '%s'", u, want, err);
	}
	/* Group type errors list the group's keys from the table too. */
	const char *t = "metrics = 1;\n" OPS_ROUTE("");
	struct config *c = config_load_buffer(t, strlen(t), "mem", err, sizeof(err));
	CHECK(c == NULL && strstr(err, "mem:1: metrics: expected a group { listen = ...; "
				       "probe_upstream = ...; }, got an integer"),
	      "group type: '%s'", err);
	config_free(c);
}

static void restart_cb(void *arg, const char *key, const char *route)
{
	char *seen = arg;
	size_t n = strlen(seen);
	snprintf(seen + n, 128 - n, "%s%s@%s", n ? "," : "", key, route ? route : "-");
}

static struct config *mem(const char *text)
{
	char err[512] = "";
	struct config *c = config_load_buffer(text, strlen(text), "mem", err, sizeof(err));
	CHECK(c != NULL, "mem: %s", err);
	return c;
}

/* A reload keeps the running value of each restart-only key (user) and
 * says which; every other key is the new file's. */
static void test_kw_reload(void)
{
	struct config *run = mem("user = \"alice\"; drain_timeout_ms = 1000;\n" OPS_ROUTE(""));
	struct config *nc = mem("user = \"bob\"; drain_timeout_ms = 2000; max_memory = 2097152;\n"
				OPS_ROUTE("max_scan_bytes = 512; splice = false;"));
	struct config *same = mem("user = \"alice\";\n" OPS_ROUTE("max_frame_size = 5;"));
	struct config *none = mem(OPS_ROUTE(""));
	char seen[128] = "";
	if (!run || !nc || !same || !none)
		goto out;
	CHECK(config_kw_keep_restart_only(nc, run, restart_cb, seen) == 1, "one key kept");
	CHECK(strcmp(seen, "user@-") == 0, "warned '%s'", seen);
	CHECK(run->threads == 1 && nc->threads == 1, "threads defaults to 1");
	CHECK(strcmp(nc->user, "alice") == 0 && nc->drain_timeout_ms == 2000 &&
		      nc->max_memory == 2097152 && nc->routes[0].max_scan_bytes == 512 &&
		      !nc->routes[0].splice,
	      "user kept, the rest applied");
	seen[0] = '\0';
	CHECK(config_kw_keep_restart_only(same, run, restart_cb, seen) == 0 && seen[0] == '\0' &&
		      same->routes[0].max_frame_size == 5,
	      "no restart-only change: '%s'", seen);
	/* Removing user is a change too: the running user stays. */
	CHECK(config_kw_keep_restart_only(none, run, restart_cb, seen) == 1 &&
		      strcmp(none->user, "alice") == 0,
	      "user removed: '%s' '%s'", seen, none->user);
	/* threads is restart-only too: "auto" (0) over 2 is kept at 2. */
	struct config *t2 = mem("threads = 2;\n" OPS_ROUTE(""));
	struct config *ta = mem("threads = \"auto\";\n" OPS_ROUTE(""));
	seen[0] = '\0';
	if (t2 && ta) {
		CHECK(ta->threads == 0, "auto is 0");
		CHECK(config_kw_keep_restart_only(ta, t2, restart_cb, seen) == 1 &&
			      strcmp(seen, "threads@-") == 0 && ta->threads == 2,
		      "threads kept: '%s' %u", seen, ta->threads);
	}
	config_free(t2);
	config_free(ta);
out:
	config_free(run);
	config_free(nc);
	config_free(same);
	config_free(none);
}

int main(void)
{
	test_good_full();
	test_good_minimal();
	test_good_order();
	test_good_numbers();
	test_good_overlap_none();
	test_shipped();
	test_bad();
	test_load_edges();
	test_ops_keys();
	test_parse_addr();
	test_flags();
	test_kw_table();
	test_kw_reload();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
