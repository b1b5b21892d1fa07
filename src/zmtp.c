/* zmtp: ZMTP 3.x greeting, frame and command parsing. Pure, no allocation. */
#include "zmtpfw/zmtp.h"

#include <string.h>

/* ZMTP 3.1 / RFC 37 socket types. */
const char *const zmtp_socket_types[] = {
	"PAIR", "PUB", "SUB", "REQ", "REP", "DEALER", "ROUTER", "PULL", "PUSH", "XPUB", "XSUB",
	"STREAM", "SERVER", "CLIENT", "RADIO", "DISH", "GATHER", "SCATTER", "DGRAM", "PEER",
	"CHANNEL", NULL,
};

bool zmtp_socket_type_valid(const char *name)
{
	for (size_t i = 0; zmtp_socket_types[i]; i++)
		if (strcmp(name, zmtp_socket_types[i]) == 0)
			return true;
	return false;
}

/* Byte i of the greeting is checked only against bytes < i, so a prefix that
 * passed stays valid: the relay can forward each byte as soon as it passes. */
enum zmtp_result zmtp_greeting_check(const uint8_t *g, size_t have,
				     const char (*mechs)[ZMTP_MECH_LEN], size_t n_mechs,
				     const char **why)
{
	if (have > ZMTP_GREETING_LEN)
		have = ZMTP_GREETING_LEN;
	for (size_t i = 0; i < have; i++) {
		uint8_t b = g[i];
		if (i == 0 && b != 0xFF) {
			*why = "unversioned peer (ZMTP 1.0 signature)";
			return ZMTP_ERR;
		}
		/* 1..8: padding, ignored by libzmq whatever it holds. */
		if (i == 9 && b != 0x7F) {
			*why = "bad signature byte 9 (ZMTP 1.0 or garbage)";
			return ZMTP_ERR;
		}
		if (i == 10 && b != 3) {
			/* 0/1 select 1.0/2.0 framing, 2 and >=4 mean 3.1 to libzmq. */
			*why = b < 3 ? "ZMTP revision below 3 refused" : "unknown ZMTP revision";
			return ZMTP_ERR;
		}
		if (i == 11 && b > 1) {
			*why = "unknown ZMTP minor version";
			return ZMTP_ERR;
		}
		if (i >= 12 && i < 32) {
			bool any = false;
			for (size_t m = 0; m < n_mechs && !any; m++)
				any = memcmp(g + 12, mechs[m], i - 12 + 1) == 0;
			if (!any) {
				*why = "mechanism not allowed";
				return ZMTP_ERR;
			}
		}
		if (i == 32 && b > 1) {
			*why = "bad as-server byte";
			return ZMTP_ERR;
		}
		if (i >= 33 && b != 0) {
			*why = "non-zero greeting filler";
			return ZMTP_ERR;
		}
	}
	return ZMTP_OK;
}

void zmtp_dec_init(struct zmtp_dec *d, uint64_t max_frame)
{
	memset(d, 0, sizeof(*d));
	d->state = ZMTP_DEC_HEADER;
	d->max_frame = max_frame;
}

static size_t zmtp_dec_fail(struct zmtp_dec *d, struct zmtp_ev *ev, const char *why)
{
	d->state = ZMTP_DEC_FAILED;
	ev->kind = ZMTP_EV_ERROR;
	ev->why = why;
	return 0;
}

size_t zmtp_dec_step(struct zmtp_dec *d, const uint8_t *p, size_t n, struct zmtp_ev *ev)
{
	size_t used = 0;

	ev->kind = ZMTP_EV_NEED_MORE;
	ev->frame_end = false;
	ev->p = NULL;
	ev->n = 0;
	ev->why = NULL;

	if (d->state == ZMTP_DEC_FAILED)
		return zmtp_dec_fail(d, ev, "decoder failed earlier");

	if (d->state == ZMTP_DEC_BODY) {
		size_t take = d->left < n ? (size_t)d->left : n;
		if (take == 0)
			return 0;
		d->left -= take;
		ev->kind = ZMTP_EV_BODY;
		ev->p = p;
		ev->n = take;
		if (d->left == 0) {
			ev->frame_end = true;
			d->state = ZMTP_DEC_HEADER;
			d->hdr_have = 0;
		}
		return take;
	}

	/* Gather the header (in as few copies as its flags allow), then let
	 * zmtp_hdr_parse judge it: flags from the first byte, size once whole. */
	while (used < n) {
		size_t take = d->hdr_have ? (size_t)zmtp_hdr_len(d->hdr[0]) - d->hdr_have : 1;
		if (take > n - used)
			take = n - used;
		memcpy(d->hdr + d->hdr_have, p + used, take);
		d->hdr_have += (uint8_t)take;
		used += take;
		struct zmtp_hdr h;
		const char *why = NULL;
		enum zmtp_result r = zmtp_hdr_parse(d->hdr, d->hdr_have, d->max_frame, &h, &why);
		if (r == ZMTP_ERR)
			return zmtp_dec_fail(d, ev, why);
		if (r == ZMTP_NEED_MORE)
			continue;
		d->flags = h.flags;
		d->hdr_len = h.len;
		d->size = h.size;
		d->left = h.size;
		ev->kind = ZMTP_EV_HEADER;
		if (h.size == 0) {
			ev->frame_end = true;
			d->hdr_have = 0;
		} else {
			d->state = ZMTP_DEC_BODY;
		}
		return used;
	}
	return used;
}

bool zmtp_dec_skip(struct zmtp_dec *d, uint64_t n, bool *frame_end)
{
	*frame_end = false;
	if (d->state != ZMTP_DEC_BODY || n == 0 || n > d->left) {
		d->state = ZMTP_DEC_FAILED;
		return false;
	}
	d->left -= n;
	if (d->left == 0) {
		*frame_end = true;
		d->state = ZMTP_DEC_HEADER;
		d->hdr_have = 0;
	}
	return true;
}

/* Property names per RFC 23: 1*255 of ALPHA / DIGIT / "-" / "_" / "." / "+". */
static bool zmtp_name_ok(const uint8_t *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '-' || c == '_' || c == '.' || c == '+';
		if (!ok)
			return false;
	}
	return true;
}

static bool zmtp_name_is(const uint8_t *s, size_t n, const char *name)
{
	return n == strlen(name) && memcmp(s, name, n) == 0;
}

/* ASCII-only case folding. strncasecmp() folds by the process's LC_CTYPE:
 * in a Turkish locale 'I' does not fold to 'i', so "IDENTITY" escaped the
 * misspelling check and "Identity"+"IDENTITY" the duplicate check. Property
 * names are ASCII by construction (zmtp_name_ok), and RFC 23 compares them
 * case-insensitively in ASCII, whatever the locale. */
static uint8_t zmtp_ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

static bool zmtp_ascii_caseeq(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (zmtp_ascii_lower(a[i]) != zmtp_ascii_lower(b[i]))
			return false;
	return true;
}

static bool zmtp_name_like(const uint8_t *s, size_t n, const char *name)
{
	return n == strlen(name) && zmtp_ascii_caseeq(s, (const uint8_t *)name, n);
}

#define ZMTP_MAX_PROPS 32

static enum zmtp_result zmtp_ready_props(const uint8_t *p, size_t n, struct zmtp_ready *r,
					 const char **why)
{
	/* Offsets of names seen, to refuse duplicates: libzmq checks every
	 * Socket-Type occurrence but lets the last Identity win, and the
	 * application sees whichever it looks up. One name, one value. */
	size_t seen_off[ZMTP_MAX_PROPS], seen_len[ZMTP_MAX_PROPS], n_seen = 0;
	size_t i = 0;

	while (i < n) {
		size_t nl = p[i++];
		if (nl == 0 || nl > n - i) {
			*why = "bad property name length";
			return ZMTP_ERR;
		}
		const uint8_t *name = p + i;
		if (!zmtp_name_ok(name, nl)) {
			*why = "bad property name";
			return ZMTP_ERR;
		}
		i += nl;
		if (n - i < 4) {
			*why = "truncated property value length";
			return ZMTP_ERR;
		}
		uint32_t vl = ((uint32_t)p[i] << 24) | ((uint32_t)p[i + 1] << 16) |
			      ((uint32_t)p[i + 2] << 8) | p[i + 3];
		i += 4;
		if (vl > n - i) {
			*why = "property value overruns READY";
			return ZMTP_ERR;
		}
		const uint8_t *val = p + i;
		i += vl;

		for (size_t k = 0; k < n_seen; k++)
			if (seen_len[k] == nl && zmtp_ascii_caseeq(p + seen_off[k], name, nl)) {
				*why = "duplicate property";
				return ZMTP_ERR;
			}
		if (n_seen == ZMTP_MAX_PROPS) {
			*why = "too many properties";
			return ZMTP_ERR;
		}
		seen_off[n_seen] = (size_t)(name - p);
		seen_len[n_seen++] = nl;

		if (zmtp_name_like(name, nl, "Socket-Type")) {
			/* libzmq compares the name case-sensitively: a variant
			 * spelling would skip its check but not ours. Refuse it. */
			if (!zmtp_name_is(name, nl, "Socket-Type")) {
				*why = "Socket-Type misspelled";
				return ZMTP_ERR;
			}
			if (vl == 0 || vl >= sizeof(r->socket_type)) {
				*why = "bad Socket-Type";
				return ZMTP_ERR;
			}
			memcpy(r->socket_type, val, vl);
			r->socket_type[vl] = '\0';
			if (strlen(r->socket_type) != vl || !zmtp_socket_type_valid(r->socket_type)) {
				*why = "unknown Socket-Type";
				return ZMTP_ERR;
			}
			r->subscriber = strcmp(r->socket_type, "SUB") == 0 ||
					strcmp(r->socket_type, "XSUB") == 0;
		} else if (zmtp_name_like(name, nl, "Identity")) {
			if (!zmtp_name_is(name, nl, "Identity")) {
				*why = "Identity misspelled";
				return ZMTP_ERR;
			}
			if (vl > 255) {
				*why = "Identity longer than 255 bytes";
				return ZMTP_ERR;
			}
			r->has_identity = true;
			r->identity_len = (uint8_t)vl;
		}
	}
	return ZMTP_OK;
}

/* Splits "<len><NAME>rest"; returns false when the name overruns. */
static bool zmtp_cmd_name(const uint8_t *body, size_t n, const uint8_t **name, size_t *nl)
{
	if (n < 1 || body[0] == 0 || (size_t)body[0] > n - 1)
		return false;
	*name = body + 1;
	*nl = body[0];
	return true;
}

enum zmtp_result zmtp_handshake_parse(const uint8_t *body, size_t n, enum zmtp_cmd *cmd,
				      struct zmtp_ready *r, const char **why)
{
	const uint8_t *name;
	size_t nl;

	memset(r, 0, sizeof(*r));
	if (n > ZMTP_CMD_MAX) {
		*why = "handshake command too large";
		return ZMTP_ERR;
	}
	if (!zmtp_cmd_name(body, n, &name, &nl)) {
		*why = "malformed command name";
		return ZMTP_ERR;
	}
	if (zmtp_name_is(name, nl, "READY")) {
		*cmd = ZMTP_CMD_READY;
		return zmtp_ready_props(body + 1 + nl, n - 1 - nl, r, why);
	}
	if (zmtp_name_is(name, nl, "ERROR")) {
		size_t rest = n - 1 - nl;
		if (rest < 1 || body[1 + nl] != rest - 1) {
			*why = "malformed ERROR";
			return ZMTP_ERR;
		}
		*cmd = ZMTP_CMD_ERROR;
		return ZMTP_OK;
	}
	*why = "expected READY or ERROR";
	return ZMTP_ERR;
}

enum zmtp_result zmtp_command_parse(const uint8_t *body, size_t n, enum zmtp_cmd *cmd,
				    const char **why)
{
	const uint8_t *name;
	size_t nl;

	if (n > ZMTP_CMD_MAX) {
		*why = "command too large";
		return ZMTP_ERR;
	}
	if (!zmtp_cmd_name(body, n, &name, &nl)) {
		*why = "malformed command name";
		return ZMTP_ERR;
	}
	size_t rest = n - 1 - nl;
	if (zmtp_name_is(name, nl, "PING")) {
		/* TTL (2 bytes) + up to 16 bytes of context; libzmq reads the TTL
		 * without checking the length, so a short PING is refused here. */
		if (rest < 2 || rest > 2 + 16) {
			*why = "malformed PING";
			return ZMTP_ERR;
		}
		*cmd = ZMTP_CMD_PING;
		return ZMTP_OK;
	}
	if (zmtp_name_is(name, nl, "PONG")) {
		if (rest > 16) {
			*why = "malformed PONG";
			return ZMTP_ERR;
		}
		*cmd = ZMTP_CMD_PONG;
		return ZMTP_OK;
	}
	if (zmtp_name_is(name, nl, "SUBSCRIBE")) {
		*cmd = ZMTP_CMD_SUBSCRIBE;
		return ZMTP_OK;
	}
	if (zmtp_name_is(name, nl, "CANCEL")) {
		*cmd = ZMTP_CMD_CANCEL;
		return ZMTP_OK;
	}
	*why = "unknown or misplaced command";
	return ZMTP_ERR;
}
