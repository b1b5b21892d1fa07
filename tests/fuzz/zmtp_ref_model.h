/* zmtp_ref_model.h: the independent reference models fuzz_zmtp.c checks
 * src/zmtp.c against, written from the wire rules (RFC 23/37 and the
 * strictness rules in zmtp.h) without looking at zmtp.c:
 *   - model(): what the frame decoder must report for a whole buffer, as a
 *     list of records (the record format fuzz_zmtp.c's runs produce too);
 *   - ref_handshake() / ref_command(): what zmtp_handshake_parse and
 *     zmtp_command_parse must accept, and what they must report.
 * Included by fuzz_zmtp.c only; not a fuzz target of its own. */
#ifndef ZMTPFW_TESTS_ZMTP_REF_MODEL_H
#define ZMTPFW_TESTS_ZMTP_REF_MODEL_H

#include "zmtpfw/zmtp.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum rec_kind { REC_HEADER = 1, REC_END, REC_ERROR, REC_TAIL };

struct rec {
	enum rec_kind kind;
	uint8_t flags;
	uint64_t size;   /* HEADER: size; TAIL: bytes left in the body */
	uint64_t hash;   /* END / TAIL: FNV-1a of the body bytes */
	size_t off;      /* HEADER / END: stream offset after the event */
	int state;       /* TAIL: decoder state */
	unsigned hdr;    /* TAIL in HEADER state: header bytes held */
	const char *why; /* ERROR */
};

struct recs {
	struct rec *r;
	size_t n, cap;
};

static inline void rec_add(struct recs *l, struct rec r)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->r = realloc(l->r, l->cap * sizeof(*l->r));
		if (!l->r)
			abort();
	}
	l->r[l->n++] = r;
}

#define FNV_INIT 0xcbf29ce484222325ull

static inline uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Independent model: what the decoder must report for the whole buffer. */
static inline void model(const uint8_t *p, size_t n, uint64_t max_frame, struct recs *out)
{
	size_t i = 0;

	for (;;) {
		if (i == n) {
			rec_add(out, (struct rec){.kind = REC_TAIL, .state = ZMTP_DEC_HEADER, .hash = FNV_INIT});
			return;
		}
		uint8_t f = p[i];
		if (f & 0xF8) {
			rec_add(out, (struct rec){.kind = REC_ERROR, .why = "reserved-flags"});
			return;
		}
		if ((f & 0x04) && (f & 0x01)) {
			rec_add(out, (struct rec){.kind = REC_ERROR, .why = "command-more"});
			return;
		}
		size_t hl = (f & 0x02) ? 9 : 2;
		if (n - i < hl) {
			rec_add(out, (struct rec){.kind = REC_TAIL, .state = ZMTP_DEC_HEADER,
						  .hdr = (unsigned)(n - i), .hash = FNV_INIT});
			return;
		}
		uint64_t size = 0;
		for (size_t k = 1; k < hl; k++)
			size = size * 256 + p[i + k];
		if (size > max_frame) {
			rec_add(out, (struct rec){.kind = REC_ERROR, .why = "frame-too-large"});
			return;
		}
		i += hl;
		rec_add(out, (struct rec){.kind = REC_HEADER, .flags = f, .size = size, .off = i});
		if (size > n - i) {
			rec_add(out, (struct rec){.kind = REC_TAIL, .state = ZMTP_DEC_BODY,
						  .size = size - (n - i),
						  .hash = fnv(FNV_INIT, p + i, n - i)});
			return;
		}
		rec_add(out, (struct rec){.kind = REC_END, .off = i + (size_t)size,
					  .hash = fnv(FNV_INIT, p + i, (size_t)size)});
		i += (size_t)size;
	}
}

/* ---- reference model of the command parsers (from RFC 23/37 and the
 * strictness rules in zmtp.h, written independently of zmtp.c) ---------- */

static const char *const ref_types[] = {
	"PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH", "XPUB", "XSUB",
	"STREAM", "SERVER", "CLIENT", "RADIO", "DISH", "GATHER", "SCATTER", "DGRAM", "PEER",
	"CHANNEL", NULL,
};

static inline int ref_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static inline bool ref_ieq(const uint8_t *a, size_t an, const char *b)
{
	if (an != strlen(b))
		return false;
	for (size_t i = 0; i < an; i++)
		if (ref_lower(a[i]) != ref_lower((unsigned char)b[i]))
			return false;
	return true;
}

static inline bool ref_eq(const uint8_t *a, size_t an, const char *b)
{
	return an == strlen(b) && memcmp(a, b, an) == 0;
}

struct ref_ready {
	enum zmtp_cmd cmd;
	char socket_type[16];
	bool has_identity;
	unsigned identity_len;
};

static inline bool ref_handshake(const uint8_t *b, size_t n, struct ref_ready *out)
{
	memset(out, 0, sizeof(*out));
	if (n > ZMTP_CMD_MAX || n < 1 || b[0] == 0 || b[0] > n - 1)
		return false;
	const uint8_t *name = b + 1, *p = b + 1 + b[0];
	size_t nl = b[0], m = n - 1 - nl;
	if (ref_eq(name, nl, "ERROR")) {
		out->cmd = ZMTP_CMD_ERROR;
		return m >= 1 && p[0] == m - 1;
	}
	if (!ref_eq(name, nl, "READY"))
		return false;
	out->cmd = ZMTP_CMD_READY;
	const uint8_t *names[40];
	size_t lens[40], count = 0, i = 0;
	while (i < m) {
		size_t pl = p[i++];
		if (pl == 0 || pl > m - i)
			return false;
		const uint8_t *pn = p + i;
		for (size_t k = 0; k < pl; k++) {
			uint8_t c = pn[k];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '+'))
				return false;
		}
		i += pl;
		if (m - i < 4)
			return false;
		size_t vl = ((size_t)p[i] << 24) | ((size_t)p[i + 1] << 16) | ((size_t)p[i + 2] << 8) |
			    p[i + 3];
		i += 4;
		if (vl > m - i)
			return false;
		const uint8_t *v = p + i;
		i += vl;
		for (size_t k = 0; k < count; k++) {
			if (lens[k] != pl)
				continue;
			size_t q = 0;
			while (q < pl && ref_lower(names[k][q]) == ref_lower(pn[q]))
				q++;
			if (q == pl)
				return false; /* duplicate, any case */
		}
		if (count == 32)
			return false; /* more than 32 properties */
		names[count] = pn;
		lens[count++] = pl;
		if (ref_ieq(pn, pl, "Socket-Type")) {
			if (!ref_eq(pn, pl, "Socket-Type"))
				return false;
			bool known = false;
			for (size_t t = 0; ref_types[t] && !known; t++)
				known = ref_eq(v, vl, ref_types[t]);
			if (!known)
				return false;
			memcpy(out->socket_type, v, vl);
		} else if (ref_ieq(pn, pl, "Identity")) {
			if (!ref_eq(pn, pl, "Identity") || vl > 255)
				return false;
			out->has_identity = true;
			out->identity_len = (unsigned)vl;
		}
	}
	return true;
}

static inline bool ref_command(const uint8_t *b, size_t n, enum zmtp_cmd *cmd)
{
	if (n > ZMTP_CMD_MAX || n < 1 || b[0] == 0 || b[0] > n - 1)
		return false;
	size_t nl = b[0], rest = n - 1 - nl;
	if (ref_eq(b + 1, nl, "PING")) {
		*cmd = ZMTP_CMD_PING;
		return rest >= 2 && rest <= 18; /* TTL + up to 16 bytes of context */
	}
	if (ref_eq(b + 1, nl, "PONG")) {
		*cmd = ZMTP_CMD_PONG;
		return rest <= 16;
	}
	if (ref_eq(b + 1, nl, "SUBSCRIBE")) {
		*cmd = ZMTP_CMD_SUBSCRIBE;
		return true;
	}
	if (ref_eq(b + 1, nl, "CANCEL")) {
		*cmd = ZMTP_CMD_CANCEL;
		return true;
	}
	return false;
}

#endif
