/* log: one JSON object (or text line) per event on stderr, with the
 * connection's identity on every line, peer bytes escaped and truncated, and
 * per-route rate limiting so a flood cannot flood the log. */
#ifndef ZMTPFW_LOG_H
#define ZMTPFW_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_JSON = 0, LOG_FORMAT_TEXT };

void log_setup(enum log_level min, enum log_format fmt);

/* Identity carried on every line of a connection. Any field may be NULL/0. */
struct log_ctx {
	const char *route; /* route name */
	uint64_t conn;     /* connection id, 0 = none */
	const char *peer;  /* "ip:port" */
};

/* Per-route rate limiter, kept per (event, source address) so one source
 * flooding cannot hide another's lines: each source address gets its own
 * token bucket per event (LOG_RL_EVENTS names, then a shared "*"), in a
 * table of LOG_RL_SOURCES addresses (the least recently logged one is
 * reported and evicted for a new one). A route-wide bucket ten times a
 * source's bounds what many addresses together can write. Zero-initialised
 * is valid for one thread; event loops that share one set `lock`, so the
 * bounds are the route's, not each loop's. */
#define LOG_RL_EVENTS 8
#define LOG_RL_SOURCES 64
struct log_rl_bucket {
	char event[16];      /* event name this bucket counts ("" = free) */
	double tokens;       /* available lines */
	uint64_t last_ms;    /* last refill, monotonic ms */
	uint64_t suppressed; /* lines dropped since the last one written */
};
struct log_rl_source {
	char addr[48];       /* peer address without port; "" for lines without a peer */
	bool used;           /* slot taken */
	uint64_t stamp;      /* last line logged, on the limiter's own clock (for eviction) */
	struct log_rl_bucket slot[LOG_RL_EVENTS];
};
struct log_ratelimit {
	pthread_mutex_t *lock;       /* held while deciding; NULL = one thread only */
	struct log_rl_bucket total;  /* route-wide: every source together */
	uint64_t clock;              /* bumped per line: recency for eviction */
	struct log_rl_source src[LOG_RL_SOURCES];
};

/* Typed extra fields: a NULL-terminated list built with these macros.
 *   log_event(LOG_INFO, &ctx, rl, "drop",
 *             LOG_STR("reason", "pickle"), LOG_U64("frame", 1),
 *             LOG_BYTES("head", p, n), LOG_END);
 */
enum log_kind { LOG_K_END = 0, LOG_K_STR, LOG_K_U64, LOG_K_I64, LOG_K_BYTES, LOG_K_BOOL, LOG_K_STRS };
struct log_field {
	enum log_kind kind;
	const char *key;
	const char *s;     /* STR */
	uint64_t u;        /* U64, BOOL */
	int64_t i;         /* I64 */
	const void *b;     /* BYTES: escaped, truncated to 32 bytes;
			      STRS: const char *const[blen], a JSON array */
	size_t blen;
};
#define LOG_STR(k, v) ((struct log_field){ .kind = LOG_K_STR, .key = (k), .s = (v) })
#define LOG_U64(k, v) ((struct log_field){ .kind = LOG_K_U64, .key = (k), .u = (uint64_t)(v) })
#define LOG_I64(k, v) ((struct log_field){ .kind = LOG_K_I64, .key = (k), .i = (int64_t)(v) })
#define LOG_BOOL(k, v) ((struct log_field){ .kind = LOG_K_BOOL, .key = (k), .u = (v) ? 1 : 0 })
#define LOG_BYTES(k, p, n) ((struct log_field){ .kind = LOG_K_BYTES, .key = (k), .b = (p), .blen = (n) })
#define LOG_STRS(k, v, n) ((struct log_field){ .kind = LOG_K_STRS, .key = (k), .b = (v), .blen = (n) })
#define LOG_END ((struct log_field){ .kind = LOG_K_END })

/* Write one event. rl may be NULL (never limited). When rl suppresses the
 * line, the count is carried as "suppressed":N on the next line written for
 * that event and source. Returns nothing: logging never fails the caller. */
void log_event_v(enum log_level lvl, const struct log_ctx *ctx,
		 struct log_ratelimit *rl, const char *event,
		 const struct log_field *fields);
#define log_event(lvl, ctx, rl, event, ...) \
	log_event_v((lvl), (ctx), (rl), (event), (const struct log_field[]){ __VA_ARGS__ })

/* Emit "suppressed" summary lines (with the source as "peer") for counts
 * still pending (called from a 1 s timer so a burst that stops is still
 * accounted for). */
void log_ratelimit_flush(const struct log_ctx *ctx, struct log_ratelimit *rl);

/* Escape up to max bytes of p as JSON string content into buf (always NUL
 * terminated). Non-printables become \u00XX. Returns bytes written. */
size_t log_escape(char *buf, size_t len, const void *p, size_t n, size_t max);

#endif
