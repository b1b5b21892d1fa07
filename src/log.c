/* log: one event per line on stderr, JSON or text.
 *
 * Each line is formatted completely in a stack buffer and handed to a single
 * write(2): lines from concurrent writers never interleave, and a line of at
 * most PIPE_BUF bytes is atomic on a pipe (journald, docker and kubectl all
 * read our stderr through one). Peer-controlled strings are escaped so the
 * output is valid JSON whatever bytes were sent, and a line that does not fit
 * is cut at a field boundary and marked "truncated":true.
 *
 * Thread safety: log_setup may run while other threads log (the level
 * and format are atomics); log_event_v is reentrant. A struct
 * log_ratelimit used by several threads needs its `lock` (zmtpfw shares
 * one per route across event loops).
 */
#include "zmtpfw/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One line, newline included. 4096 = PIPE_BUF on Linux: see above. */
#define LOG_LINE_MAX 4096
/* Room kept back for the closing ',"truncated":true}\n' or '"' + marker. */
#define LOG_RESERVE 32
/* LOG_BYTES fields show at most this many bytes of peer data. */
#define LOG_BYTES_MAX 32

/* Token bucket: sustained lines per second, and burst size. */
#define LOG_RL_RATE 20.0
#define LOG_RL_BURST 100.0
/* Every source of a route together (many addresses flooding at once). */
#define LOG_RL_TOTAL_RATE 200.0
#define LOG_RL_TOTAL_BURST 1000.0

/* Set by a reload on the main thread while other loops log: atomics
 * (relaxed: a line in the previous level or format is fine; the format is
 * read once per line, so no line mixes the two). */
static _Atomic enum log_level log_min = LOG_INFO;
static _Atomic enum log_format log_fmt = LOG_FORMAT_JSON;

static const char *const log_level_names[] = { "debug", "info", "warn", "error" };

void log_setup(enum log_level min, enum log_format fmt)
{
	log_min = min;
	log_fmt = fmt;
}

/* JSON-escape up to n bytes of p into out (room bytes, not terminated).
 * Never splits an escape sequence; *used reports input bytes consumed. */
static size_t log_esc(char *out, size_t room, const uint8_t *p, size_t n, size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < n; i++) {
		uint8_t ch = p[i];
		if (ch == '"' || ch == '\\') {
			if (room - o < 2)
				break;
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			/* Bytes >= 0x7f too: the input is not known to be UTF-8,
			 * and \u00XX keeps every line valid JSON (the byte reads
			 * back as the Latin-1 code point of the same value). */
			if (room - o < 6)
				break;
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[ch >> 4];
			out[o + 5] = hex[ch & 15];
			o += 6;
		} else {
			if (room - o < 1)
				break;
			out[o++] = (char)ch;
		}
	}
	*used = i;
	return o;
}

size_t log_escape(char *buf, size_t len, const void *p, size_t n, size_t max)
{
	size_t used, o;
	if (buf == NULL || len == 0)
		return 0;
	if (p == NULL)
		n = 0;
	if (n > max)
		n = max;
	o = log_esc(buf, len - 1, p, n, &used);
	buf[o] = '\0';
	return o;
}

/* A line under construction. cap excludes LOG_RESERVE, so the closing bytes
 * always fit. */
struct log_buf {
	char *p;
	size_t len;  /* bytes used */
	size_t cap;  /* usable bytes */
	bool full;   /* a field did not fit: stop adding fields */
	bool cut;    /* some value was shortened */
	bool json;   /* the format, read once per line: a reload on another
			thread must not switch it halfway */
};

static void log_put(struct log_buf *b, const char *s, size_t n)
{
	if (b->full || n > b->cap - b->len) {
		b->full = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void log_puts(struct log_buf *b, const char *s)
{
	log_put(b, s, strlen(s));
}

/* Escaped string content, shortened (and marked cut) if the line is full. */
static void log_put_esc(struct log_buf *b, const void *p, size_t n)
{
	size_t used;
	if (b->full)
		return;
	b->len += log_esc(b->p + b->len, b->cap - b->len, p, n, &used);
	if (used < n)
		b->cut = true;
}

/* Text values go bare when they are plain printable tokens, else quoted and
 * escaped like JSON so a line stays one line and "k=v" stays parseable. */
static bool log_text_needs_quotes(const uint8_t *p, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\' || p[i] == '=')
			return true;
	return false;
}

/* Start a field: ',"key":' (JSON) or ' key=' (text). */
static void log_key(struct log_buf *b, const char *key)
{
	if (b->json) {
		log_puts(b, ",\"");
		log_put_esc(b, key, strlen(key));
		log_puts(b, "\":");
	} else {
		log_puts(b, " ");
		log_put_esc(b, key, strlen(key));
		log_puts(b, "=");
	}
}

static void log_val_str(struct log_buf *b, const void *p, size_t n)
{
	bool q = b->json || log_text_needs_quotes(p, n);
	if (q)
		log_puts(b, "\"");
	/* Keep one byte for the closing quote when shortening. */
	if (q && !b->full && b->cap > b->len) {
		b->cap--;
		log_put_esc(b, p, n);
		b->cap++;
	} else {
		log_put_esc(b, p, n);
	}
	if (q)
		log_puts(b, "\"");
}

static void log_val_num(struct log_buf *b, const struct log_field *f)
{
	char num[32];
	int n = f->kind == LOG_K_I64 ? snprintf(num, sizeof(num), "%" PRId64, f->i)
				     : snprintf(num, sizeof(num), "%" PRIu64, f->u);
	if (n > 0)
		log_put(b, num, (size_t)n);
}

/* One complete field; on overflow it is taken back whole and no later
 * field is added, so the line stays well formed. */
static void log_field(struct log_buf *b, const struct log_field *f)
{
	size_t mark = b->len;
	size_t n;

	if (f->key == NULL || b->full)
		return;
	if (f->kind == LOG_K_STR && f->s == NULL)
		return; /* absent, like NULL ctx fields */
	log_key(b, f->key);
	switch (f->kind) {
	case LOG_K_STR:
		log_val_str(b, f->s, strlen(f->s));
		break;
	case LOG_K_U64:
	case LOG_K_I64:
		log_val_num(b, f);
		break;
	case LOG_K_BOOL:
		log_puts(b, f->u ? "true" : "false");
		break;
	case LOG_K_BYTES:
		n = f->b ? f->blen : 0;
		log_val_str(b, f->b, n > LOG_BYTES_MAX ? LOG_BYTES_MAX : n);
		break;
	case LOG_K_STRS: {
		/* JSON: an array; text: comma-joined in one value */
		const char *const *v = f->b;
		bool json = b->json;
		log_puts(b, json ? "[" : "\"");
		for (size_t i = 0; i < f->blen; i++) {
			if (i)
				log_puts(b, ",");
			if (json)
				log_val_str(b, v[i], strlen(v[i]));
			else
				log_put_esc(b, v[i], strlen(v[i]));
		}
		log_puts(b, json ? "]" : "\"");
		break;
	}
	case LOG_K_END:
		break;
	}
	if (b->full) {
		b->len = mark;
		b->cut = true;
	}
}

/* "2026-11-23T12:00:00.123Z" from CLOCK_REALTIME. */
static void log_ts(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL) {
		snprintf(out, len, "1970-01-01T00:00:00.000Z");
		return;
	}
	n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void log_write(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* logging never fails the caller */
		p += w;
		n -= (size_t)w;
	}
}

/* Format and write one line: ts, level, event, ctx, extra u64 fields given
 * inline (suppressed/count), then the caller's fields. */
static void log_emit(enum log_level lvl, const struct log_ctx *ctx, const char *event,
		     const struct log_field *pre, size_t npre, const struct log_field *fields)
{
	char line[LOG_LINE_MAX];
	char ts[40];
	struct log_buf b = { .p = line, .len = 0, .cap = sizeof(line) - LOG_RESERVE,
			     .json = log_fmt == LOG_FORMAT_JSON };
	const char *lname = log_level_names[(unsigned)lvl <= LOG_ERROR ? (unsigned)lvl : LOG_ERROR];

	if (event == NULL)
		event = "";
	log_ts(ts, sizeof(ts));
	if (b.json) {
		log_puts(&b, "{\"ts\":\"");
		log_puts(&b, ts);
		log_puts(&b, "\",\"level\":\"");
		log_puts(&b, lname);
		log_puts(&b, "\",\"event\":");
		log_val_str(&b, event, strlen(event));
	} else {
		log_puts(&b, ts);
		log_puts(&b, " ");
		log_puts(&b, lname);
		log_puts(&b, " ");
		log_val_str(&b, event, strlen(event));
	}
	if (ctx) {
		if (ctx->route)
			log_field(&b, &LOG_STR("route", ctx->route));
		if (ctx->conn)
			log_field(&b, &LOG_U64("conn", ctx->conn));
		if (ctx->peer)
			log_field(&b, &LOG_STR("peer", ctx->peer));
	}
	for (size_t i = 0; i < npre; i++)
		log_field(&b, &pre[i]);
	for (size_t i = 0; fields && fields[i].kind != LOG_K_END; i++)
		log_field(&b, &fields[i]);

	/* The reserve guarantees these fit. */
	b.cap = sizeof(line);
	b.full = false;
	if (b.json) {
		if (b.cut)
			log_puts(&b, ",\"truncated\":true");
		log_puts(&b, "}\n");
	} else {
		if (b.cut)
			log_puts(&b, " truncated=true");
		log_puts(&b, "\n");
	}
	log_write(line, b.len);
}

static uint64_t log_mono_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The bucket counting this event. When all slots hold other names, the
 * last slot is renamed "*" and shared by every event without a slot of its
 * own: an attacker who finds a ninth event still cannot flood the log.
 * Names are compared on their first 15 bytes (the slot's size). */
static size_t log_rl_slot(struct log_rl_bucket *slot, const char *event, uint64_t now)
{
	const size_t klen = sizeof(slot[0].event);
	for (size_t i = 0; i < LOG_RL_EVENTS; i++) {
		if (slot[i].event[0] == '\0') {
			/* Free slot (zeroed state): claim it with a full bucket. */
			snprintf(slot[i].event, klen, "%s", event);
			slot[i].tokens = LOG_RL_BURST;
			slot[i].last_ms = now;
			slot[i].suppressed = 0;
			return i;
		}
		if (strncmp(slot[i].event, event, klen - 1) == 0)
			return i;
	}
	snprintf(slot[LOG_RL_EVENTS - 1].event, klen, "*");
	return LOG_RL_EVENTS - 1;
}

/* Refill b for the time since its last refill, capped at burst. A clock
 * that went backwards (or a bucket stamped ahead by a test) refills
 * nothing until it catches up. */
static void log_rl_refill(struct log_rl_bucket *b, uint64_t now, double rate, double burst)
{
	if (now > b->last_ms) {
		double t = b->tokens + (double)(now - b->last_ms) * rate / 1000.0;
		b->tokens = t > burst ? burst : t;
		b->last_ms = now;
	}
}

/* "a.b.c.d:port" -> "a.b.c.d", "[v6]:port" -> "[v6]": a source is an
 * address, so a flood over many connections shares one bucket. */
static void log_rl_addr(char *out, size_t len, const char *peer)
{
	const char *colon = peer ? strrchr(peer, ':') : NULL;
	size_t n = peer == NULL ? 0 : colon && colon != peer && colon[-1] != ':' ? (size_t)(colon - peer)
										  : strlen(peer);
	if (n >= len)
		n = len - 1;
	if (n)
		memcpy(out, peer, n);
	out[n] = '\0';
}

/* Report what a source's buckets suppressed, and reset the counts. */
static void log_rl_report(const struct log_ctx *ctx, struct log_rl_source *src)
{
	struct log_ctx c = { .route = ctx ? ctx->route : NULL, .peer = src->addr[0] ? src->addr : NULL };
	for (size_t i = 0; i < LOG_RL_EVENTS; i++) {
		struct log_field pre[2];
		if (src->slot[i].suppressed == 0)
			continue;
		pre[0] = LOG_STR("of", src->slot[i].event);
		pre[1] = LOG_U64("count", src->slot[i].suppressed);
		src->slot[i].suppressed = 0;
		/* Not level-filtered: a count exists only for lines that passed
		 * the filter, and losing it would hide the flood. */
		log_emit(LOG_WARN, &c, "suppressed", pre, 2, NULL);
	}
}

/* The table entry of this source: found, a free one, or the least recently
 * used one, reported first so no count is lost. */
static struct log_rl_source *log_rl_source(struct log_ratelimit *rl, const struct log_ctx *ctx)
{
	char addr[sizeof(rl->src[0].addr)];
	struct log_rl_source *victim = NULL;

	log_rl_addr(addr, sizeof(addr), ctx ? ctx->peer : NULL);
	for (size_t i = 0; i < LOG_RL_SOURCES; i++) {
		struct log_rl_source *s = &rl->src[i];
		if (s->used && strcmp(s->addr, addr) == 0)
			return s;
		if (!s->used) {
			if (victim == NULL || victim->used)
				victim = s;
		} else if (victim == NULL || (victim->used && s->stamp < victim->stamp)) {
			victim = s;
		}
	}
	if (victim->used)
		log_rl_report(ctx, victim);
	memset(victim, 0, sizeof(*victim));
	victim->used = true;
	snprintf(victim->addr, sizeof(victim->addr), "%s", addr);
	return victim;
}

void log_event_v(enum log_level lvl, const struct log_ctx *ctx, struct log_ratelimit *rl,
		 const char *event, const struct log_field *fields)
{
	struct log_field pre[1];
	size_t npre = 0;

	if (lvl < log_min)
		return;
	if (event == NULL || event[0] == '\0')
		event = "-"; /* an empty name would also mean "free" to the limiter */
	/* Errors are rare and operator-relevant: never limited. */
	if (rl && lvl < LOG_ERROR) {
		uint64_t now;
		struct log_rl_source *src;
		if (rl->lock)
			pthread_mutex_lock(rl->lock);
		now = log_mono_ms();
		src = log_rl_source(rl, ctx);
		size_t k = log_rl_slot(src->slot, event, now);
		struct log_rl_bucket *b = &src->slot[k];

		src->stamp = ++rl->clock;
		if (rl->total.event[0] == '\0') {
			snprintf(rl->total.event, sizeof(rl->total.event), "total");
			rl->total.tokens = LOG_RL_TOTAL_BURST;
			rl->total.last_ms = now;
		}
		log_rl_refill(b, now, LOG_RL_RATE, LOG_RL_BURST);
		log_rl_refill(&rl->total, now, LOG_RL_TOTAL_RATE, LOG_RL_TOTAL_BURST);
		if (b->tokens < 1.0 || rl->total.tokens < 1.0) {
			b->suppressed++; /* counted where it belongs: this source */
			if (rl->lock)
				pthread_mutex_unlock(rl->lock);
			return;
		}
		b->tokens -= 1.0;
		rl->total.tokens -= 1.0;
		if (b->suppressed) {
			pre[npre++] = LOG_U64("suppressed", b->suppressed);
			b->suppressed = 0;
		}
		if (rl->lock)
			pthread_mutex_unlock(rl->lock);
	}
	log_emit(lvl, ctx, event, pre, npre, fields);
}

void log_ratelimit_flush(const struct log_ctx *ctx, struct log_ratelimit *rl)
{
	if (rl == NULL)
		return;
	if (rl->lock)
		pthread_mutex_lock(rl->lock);
	for (size_t i = 0; i < LOG_RL_SOURCES; i++)
		if (rl->src[i].used)
			log_rl_report(ctx, &rl->src[i]);
	if (rl->lock)
		pthread_mutex_unlock(rl->lock);
}
