/* relay: the session of one connection's data path. For each direction it
 * validates the greeting byte by byte, parses the handshake frame, then
 * hands the frames to relay_frames.c; it answers the I/O layer with what
 * to do next (continue, splice n bytes, close). */
#include "relay_int.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "zmtpfw/config.h"

struct relay *relay_new(const struct relay_peer *p)
{
	struct relay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->route = p->route;
	r->m = p->m;
	r->ctx = p->ctx;
	r->sa = p->sa;
	r->gen = p->route->gen;
	r->up.from_client = true;
	zmtp_dec_init(&r->up.dec, r->route->cfg->max_frame_size);
	zmtp_dec_init(&r->down.dec, r->route->cfg->max_frame_size);
	if (relay_frames_policy(r) < 0) {
		relay_free(r);
		return NULL;
	}
	return r;
}

/* The route was reloaded since r last looked. Frame limits are checked at
 * each header: apply them before the next. Scanning, trust and mode change
 * between messages, never inside one. */
static void relay_reconfigure(struct relay *r)
{
	r->up.dec.max_frame = r->down.dec.max_frame = r->route->cfg->max_frame_size;
	r->repolicy = true;
	r->gen = r->route->gen;
}

void relay_free(struct relay *r)
{
	if (!r)
		return;
	if (r->up.hold)
		evbuffer_free(r->up.hold);
	if (r->up.ins)
		inspect_free(r->up.ins);
	free(r->up.ins);
	ppolicy_free(r->up.icfg.policy);
	free(r);
}

/* ---- greeting ---------------------------------------------------------- */

static int relay_greeting(struct relay *r, struct dir *d, struct evbuffer *in, struct evbuffer *out)
{
	const struct config_route *cfg = r->route->cfg;
	size_t avail = evbuffer_get_length(in);
	size_t n = ZMTP_GREETING_LEN - d->greet_have;
	const char *why = NULL;

	if (avail < n)
		n = avail;
	if (n == 0)
		return 0;
	if (evbuffer_copyout(in, d->greet + d->greet_have, n) != (ev_ssize_t)n)
		return relay_fail(r, d, "internal", "copyout failed");
	/* libzmq waits for our peer's bytes before sending more of its own, so
	 * each validated byte is forwarded at once (ZMTP.md). */
	if (zmtp_greeting_check(d->greet, d->greet_have + n,
				(const char(*)[ZMTP_MECH_LEN])cfg->mechanisms, cfg->n_mechanisms,
				&why) != ZMTP_OK)
		return relay_fail(r, d, "greeting", why);
	if (evbuffer_remove_buffer(in, out, n) != (int)n)
		return relay_fail(r, d, "internal", "move failed");
	d->greet_have += n;
	if (d->greet_have == ZMTP_GREETING_LEN)
		d->phase = RELAY_HANDSHAKE;
	return 0;
}

/* ---- handshake --------------------------------------------------------- */

static bool relay_socket_type_allowed(const struct config_route *cfg, const char *t)
{
	for (size_t i = 0; i < cfg->n_socket_types; i++)
		if (strcmp(cfg->socket_types[i], t) == 0)
			return true;
	return false;
}

/* The first frame each way is the handshake. libzmq ignores its flags, so a
 * READY hidden in a data frame would be a command to the worker and data to
 * a laxer parser: only a flagged, final command frame is accepted. */
static int relay_handshake(struct relay *r, struct dir *d, struct evbuffer *in, struct evbuffer *out)
{
	const struct config_route *cfg = r->route->cfg;
	uint8_t hdr[ZMTP_HDR_MAX];
	uint8_t body[ZMTP_CMD_MAX];
	size_t avail = evbuffer_get_length(in);
	const char *why = NULL;
	struct zmtp_ready ready;
	enum zmtp_cmd cmd;

	struct zmtp_hdr h;

	if (avail < 1)
		return 0;
	ev_ssize_t got = evbuffer_copyout(in, hdr, avail < ZMTP_HDR_MAX ? avail : ZMTP_HDR_MAX);
	if ((hdr[0] & ~ZMTP_FLAG_LONG) != ZMTP_FLAG_COMMAND)
		return relay_fail(r, d, "handshake", "first frame is not a command frame");
	/* flags are valid now: only the size can be refused */
	enum zmtp_result hr = zmtp_hdr_parse(hdr, got > 0 ? (size_t)got : 0, ZMTP_CMD_MAX, &h, &why);
	if (hr == ZMTP_ERR)
		return relay_fail(r, d, "handshake", "handshake command too large");
	size_t hlen = h.len, size = (size_t)h.size;
	if (hr == ZMTP_NEED_MORE || avail < hlen + size)
		return 0;

	struct evbuffer_ptr pos;
	if (evbuffer_ptr_set(in, &pos, hlen, EVBUFFER_PTR_SET) < 0 ||
	    evbuffer_copyout_from(in, &pos, body, size) != (ev_ssize_t)size)
		return relay_fail(r, d, "internal", "copyout failed");
	if (zmtp_handshake_parse(body, size, &cmd, &ready, &why) != ZMTP_OK)
		return relay_fail(r, d, "handshake", why);

	if (cmd == ZMTP_CMD_READY && d->from_client && cfg->n_socket_types > 0 &&
	    (ready.socket_type[0] == '\0' || !relay_socket_type_allowed(cfg, ready.socket_type))) {
		const char *t = ready.socket_type[0] ? ready.socket_type : "(none)";
		if (!r->log_only)
			return relay_fail(r, d, "socket-type", t);
		log_event(LOG_WARN, &r->ctx, r->route->rl, "would-reject", LOG_STR("reason", "socket-type"),
			  LOG_STR("detail", t), LOG_END);
	}
	if (evbuffer_remove_buffer(in, out, hlen + size) != (int)(hlen + size))
		return relay_fail(r, d, "internal", "move failed");
	if (cmd == ZMTP_CMD_READY)
		d->subscriber = ready.subscriber;
	/* ERROR: the worker's reason reaches the client; the sender then closes. */
	d->phase = cmd == ZMTP_CMD_ERROR ? RELAY_ERRORED : RELAY_TRAFFIC;
	return 0;
}

/* What of d's current frame may move socket to socket without being read:
 * the frame's verdict and its message's are known, nothing of it waits in
 * a buffer (in_len = 0), and it goes straight to the other side. */
static struct relay_action relay_offer(const struct dir *d, size_t in_len)
{
	if (d->phase != RELAY_TRAFFIC || d->dec.state != ZMTP_DEC_BODY || d->dest != FRAME_FWD ||
	    d->frame_cmd || d->parsed != 0 || d->drain_stop || in_len != 0)
		return (struct relay_action){ .act = RELAY_CONTINUE };
	return (struct relay_action){ .act = RELAY_SPLICE, .splice = d->dec.left };
}

struct relay_action relay_drained(const struct relay *r, enum relay_way w,
				  const struct evbuffer *in)
{
	return relay_offer(w == RELAY_UP ? &r->up : &r->down, evbuffer_get_length(in));
}

struct relay_action relay_spliced(struct relay *r, enum relay_way w, uint64_t n)
{
	struct dir *d = relay_dir(r, w);
	bool frame_end = false;

	/* conn never moves more than relay_offer allowed: a refusal here
	 * would be a bug, and the sticky FAILED state closes at the next read. */
	if (zmtp_dec_skip(&d->dec, n, &frame_end) && frame_end)
		relay_frames_done(r, d);
	return relay_offer(d, 0); /* the input stays empty while the kernel moves bytes */
}

static int relay_step(struct relay *r, struct dir *d, struct evbuffer *in, struct evbuffer *out)
{
	for (;;) {
		enum relay_phase before = d->phase;
		size_t len = evbuffer_get_length(in);

		switch (d->phase) {
		case RELAY_GREETING:
			if (relay_greeting(r, d, in, out) < 0)
				return -1;
			break;
		case RELAY_HANDSHAKE:
			if (relay_handshake(r, d, in, out) < 0)
				return -1;
			break;
		case RELAY_TRAFFIC:
			return relay_frames_walk(r, d, in, out);
		case RELAY_ERRORED:
			if (len > 0)
				return relay_fail(r, d, "protocol", "bytes after ERROR");
			return 0;
		}
		if (d->phase == before)
			return 0;
	}
}

struct relay_action relay_process(struct relay *r, enum relay_way w, struct evbuffer *in,
				  struct evbuffer *out)
{
	struct dir *d = relay_dir(r, w);

	if (r->gen != r->route->gen)
		relay_reconfigure(r);
	if (relay_step(r, d, in, out) < 0)
		return r->close;
	return relay_offer(d, evbuffer_get_length(in));
}

bool relay_handshake_done(const struct relay *r)
{
	return r->up.phase >= RELAY_TRAFFIC && r->down.phase >= RELAY_TRAFFIC;
}

bool relay_at_boundary(const struct relay *r, enum relay_way w, const struct evbuffer *in)
{
	const struct dir *d = w == RELAY_UP ? &r->up : &r->down;

	if (d->phase != RELAY_TRAFFIC)
		return d->phase != RELAY_HANDSHAKE || evbuffer_get_length(in) == 0;
	return !d->in_msg && d->parsed == 0 && zmtp_dec_idle(&d->dec) &&
	       (d->drain_stop || evbuffer_get_length(in) == 0);
}

void relay_stop_client(struct relay *r)
{
	r->up.drain_stop = true;
}

bool relay_client_stopped(const struct relay *r)
{
	return r->up.drain_stop;
}

uint64_t relay_held(const struct relay *r)
{
	return r->up.hold ? evbuffer_get_length(r->up.hold) : 0;
}

uint64_t relay_msgs(const struct relay *r)
{
	return r->up.msgs;
}

uint64_t relay_dropped(const struct relay *r)
{
	return r->up.dropped;
}
