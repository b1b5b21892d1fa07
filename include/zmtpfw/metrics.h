/* metrics: counters and gauges per route, defined once in METRICS_TABLE, and
 * the HTTP endpoint that serves them (Prometheus text format) with /healthz
 * and /readyz. The relay increments plain integers; rendering happens only
 * when scraped. With threads = N every event loop counts into its own
 * shard (one entry per route name and loop, single writer: relaxed atomic
 * stores, plain adds on x86) and a scrape sums the shards with relaxed
 * loads. Registry changes take a mutex; they happen at start and reload. */
#ifndef ZMTPFW_METRICS_H
#define ZMTPFW_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "zmtpfw/config.h"

struct event_base;
struct evbuffer;

/* Which labels a series carries besides the metric name. */
#define METRICS_L_ROUTE 1u  /* route="NAME" */
#define METRICS_L_DIR 2u    /* direction="client_to_worker" | "worker_to_client" */
#define METRICS_L_REASON 4u /* reason="..." (a short literal from the caller; copied) */
#define METRICS_L_RESULT 8u /* result="success" | "failure" (reloads) */
#define METRICS_L_VERSION 16u /* version=ZMTPFW_VERSION (build info; constant 1) */

/* Values of the result label: pass one as the reason of
 *   metrics_add_reason(metrics_global(), METRICS_RELOADS, METRICS_DIR_NONE,
 *                      METRICS_RESULT_SUCCESS, 1);
 * Both are always rendered, 0 included. */
#define METRICS_RESULT_SUCCESS "success"
#define METRICS_RESULT_FAILURE "failure"

/* Bounds: reason series per route entry (beyond it new reasons are counted
 * as reason="other"), route entries per process (beyond it
 * metrics_route_get returns NULL: entries are never freed while the process
 * runs because retired listeners still point at them). */
#define METRICS_MAX_REASONS 256
#define METRICS_MAX_ROUTES 1024
#define METRICS_REASON_MAX_LEN 48 /* reason strings are copied, truncated to 47 bytes */

/* X(id, type, name, labels, help). type is counter or gauge. */
#define METRICS_TABLE(X)                                                                        \
	X(CONN_ACCEPTED, counter, "zmtpfw_connections_accepted_total", METRICS_L_ROUTE,            \
	  "Client connections admitted to a route")                                              \
	X(CONN_REJECTED, counter, "zmtpfw_connections_rejected_total",                           \
	  METRICS_L_ROUTE | METRICS_L_REASON, "Client connections refused at accept")            \
	X(CONN_ACTIVE, gauge, "zmtpfw_connections_active", METRICS_L_ROUTE,                      \
	  "Client connections open now")                                                        \
	X(CONN_CLOSED, counter, "zmtpfw_connections_closed_total",                               \
	  METRICS_L_ROUTE | METRICS_L_REASON, "Client connections closed, by reason")            \
	X(HANDSHAKE_FAILED, counter, "zmtpfw_handshake_failures_total",                          \
	  METRICS_L_ROUTE | METRICS_L_REASON,                                                     \
	  "Connections closed before both greetings and READY commands were relayed")            \
	X(UPSTREAM_FAILED, counter, "zmtpfw_upstream_connect_failures_total",                    \
	  METRICS_L_ROUTE | METRICS_L_REASON, "Failed dials of the worker")                      \
	X(MSGS_FORWARDED, counter, "zmtpfw_messages_forwarded_total",                            \
	  METRICS_L_ROUTE | METRICS_L_DIR, "Complete messages relayed")                          \
	X(MSGS_DROPPED, counter, "zmtpfw_messages_dropped_total",                                \
	  METRICS_L_ROUTE | METRICS_L_DIR | METRICS_L_REASON, "Messages dropped by policy")       \
	X(MSGS_WOULD_DROP, counter, "zmtpfw_messages_would_drop_total",                          \
	  METRICS_L_ROUTE | METRICS_L_DIR | METRICS_L_REASON,                                     \
	  "Messages log-only mode relayed that enforce mode would drop")                         \
	X(FRAMES_FORWARDED, counter, "zmtpfw_frames_forwarded_total",                            \
	  METRICS_L_ROUTE | METRICS_L_DIR, "Data frames relayed")                                \
	X(FRAMES_DROPPED, counter, "zmtpfw_frames_dropped_total",                                \
	  METRICS_L_ROUTE | METRICS_L_DIR | METRICS_L_REASON,                                     \
	  "Data frames dropped (every frame of a dropped message)")                              \
	X(BYTES, counter, "zmtpfw_relayed_bytes_total", METRICS_L_ROUTE | METRICS_L_DIR,          \
	  "Bytes relayed (greeting, commands and frames)")                                       \
	X(BYTES_SPLICED, counter, "zmtpfw_spliced_bytes_total", METRICS_L_ROUTE | METRICS_L_DIR,  \
	  "Of those, judged frame-body bytes moved socket to socket by splice(2)")              \
	X(WAKEUPS, counter, "zmtpfw_wakeups_total", METRICS_L_ROUTE | METRICS_L_DIR,              \
	  "Read and write events handled, by the direction they move: a connection spinning "    \
	  "on an event shows as a climb with no bytes behind it")                                \
	X(MEMORY, gauge, "zmtpfw_memory_bytes", 0,                                               \
	  "Bytes libevent holds now for connection buffers (frames awaiting a verdict, held "   \
	  "messages, output queues), as allocated")                                             \
	X(MEMORY_LIMIT, gauge, "zmtpfw_memory_limit_bytes", 0,                                   \
	  "max_memory: above it the connection holding the most is closed (reason memory)")     \
	X(RELOADS, counter, "zmtpfw_config_reloads_total", METRICS_L_RESULT,                     \
	  "Configuration reloads (SIGHUP), by result")                                          \
	X(BUILD_INFO, gauge, "zmtpfw_build_info", METRICS_L_VERSION,                             \
	  "Build information; the value is always 1")

enum metrics_id {
#define METRICS_ENUM(id, type, name, labels, help) METRICS_##id,
	METRICS_TABLE(METRICS_ENUM)
#undef METRICS_ENUM
	METRICS_COUNT
};

enum metrics_dir {
	METRICS_DIR_NONE = 0, /* for metrics without a direction label */
	METRICS_DIR_UP = 0,   /* client -> worker */
	METRICS_DIR_DOWN = 1, /* worker -> client */
	METRICS_DIR_COUNT = 2
};

/* Series with a reason label, kept in a short list per route: reasons come
 * from a fixed set of static strings, and the list is capped at
 * METRICS_MAX_REASONS anyway (overflow is counted as reason="other"). */
struct metrics_reason_series;

/* Everything counted for one route name. Created on first use and kept for
 * the life of the process, so counters stay monotonic across reloads. */
struct metrics_route {
	struct metrics_route *_Atomic next; /* registry list (first shard of each name), in
					       creation order; published with release */
	struct metrics_route *_Atomic shard_next; /* the same name's entries of other loops */
	unsigned shard;                    /* loop that writes this entry */
	char name[64];                     /* route name; "" for global series */
	_Atomic bool live;                 /* route present in the running config (first
					      shard's flag counts) */
	_Atomic uint64_t v[METRICS_COUNT][METRICS_DIR_COUNT]; /* series without a reason */
	struct metrics_reason_series *_Atomic reasons; /* series with one, in first-use order */
	unsigned n_reasons;                /* entries in reasons, for the bound */
};

/* The calling thread counts into shard idx (< CONFIG_MAX_THREADS) from now
 * on; threads that never call it use shard 0 (the main loop). */
void metrics_thread_shard(unsigned idx);

/* Find or create the entry for a route name in the calling thread's shard
 * (new entries start live). NULL
 * on allocation failure or once METRICS_MAX_ROUTES names exist (logged
 * once; callers then skip counting). */
struct metrics_route *metrics_route_get(const char *name);

/* The process-wide series (reloads): no route label. */
struct metrics_route *metrics_global(void);

/* Mark which routes the running config has: scrapes list only live routes'
 * gauges as current (counters of removed routes stay, frozen). */
void metrics_routes_begin_update(void);
void metrics_route_set_live(struct metrics_route *r);

/* Add n to a series with a reason (or, for RELOADS, result) label. The
 * reason is copied; keyed by (id, dir, reason). Used on a metric without a
 * reason label it adds to the plain series (reason ignored). r may be NULL;
 * a NULL reason counts as "unknown". */
void metrics_add_reason(struct metrics_route *r, enum metrics_id id, enum metrics_dir dir,
			const char *reason, uint64_t n);

/* Hot path: a plain add, inlined. r may be NULL. For series without a
 * reason label only (a reason metric counted this way is rendered with
 * reason="none" so the mistake shows in scrapes). */
static inline void metrics_add(struct metrics_route *r, enum metrics_id id, enum metrics_dir dir,
			       uint64_t n)
{
	/* one writer per entry: load + store, not a locked read-modify-write */
	if (r)
		atomic_store_explicit(&r->v[id][dir],
				      atomic_load_explicit(&r->v[id][dir], memory_order_relaxed) + n,
				      memory_order_relaxed);
}

/* Gauges move both ways; stored as uint64 with wrapping arithmetic. */
static inline void metrics_gauge(struct metrics_route *r, enum metrics_id id, int64_t delta)
{
	metrics_add(r, id, METRICS_DIR_NONE, (uint64_t)delta);
}

/* A gauge of the global entry set to a whole current value (the memory
 * limit, set on loop 0). */
static inline void metrics_set(struct metrics_route *r, enum metrics_id id, uint64_t v)
{
	if (r)
		atomic_store_explicit(&r->v[id][0], v, memory_order_relaxed);
}

/* A global gauge whose value is read at scrape time from fn (memory):
 * values stored by several loops could leave an older one last, and a
 * stored value stays stale until the next store. fn runs on loop 0 and
 * must only read. */
typedef uint64_t (*metrics_gauge_fn)(void);
void metrics_gauge_source(enum metrics_id id, metrics_gauge_fn fn);

/* Append the Prometheus text exposition (format 0.0.4) of everything: for
 * each metric of the table # HELP and # TYPE, then its series. Direction
 * series of every route are emitted even when 0, reason series once counted,
 * the active gauge for live routes only. Returns 0, or -1 when out of
 * memory. */
int metrics_render(struct evbuffer *out) __attribute__((warn_unused_result));

/* Readiness callback: returns true when ready; may append a human-readable
 * line per problem to why. */
typedef bool (*metrics_ready_fn)(void *arg, struct evbuffer *why);

struct metrics_http;

/* Serve GET and HEAD on /metrics, /healthz (200 "ok" while the loop runs) and
 * /readyz (200 "ready", or 503 "not ready" plus the lines ready() appended;
 * ready may be NULL: always ready). Other paths 404, other known methods
 * 405 (methods libevent cannot parse get its own 501).
 * Scrape-sized limits: 4 KiB of headers, 1 KiB of body, 10 s read/write
 * timeouts, at most 32 open connections (accepting pauses at the cap and
 * logs "error" reason "metrics-busy"; libevent 2.1 has no
 * evhttp_set_max_connections, so metrics.c counts them itself). Bind the
 * endpoint to loopback or a monitoring network only: it has no
 * authentication. Logs "metrics-listening"; on failure (bind error) logs
 * "error" reason "metrics-listen" and returns NULL. */
struct metrics_http *metrics_http_start(struct event_base *base, const struct config_addr *listen,
					metrics_ready_fn ready, void *arg);
void metrics_http_stop(struct metrics_http *h);

/* Free every route entry (at exit, for leak checkers). */
void metrics_free_all(void);

#endif
