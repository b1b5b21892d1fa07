/* relay_frames: one direction's frames after the handshake. It walks
 * frames with the zmtp decoder over the input buffer in place
 * (evbuffer_peek), and moves whole ranges to their destination with
 * evbuffer_remove_buffer: bodies are never copied.
 *
 * The front of a direction's input buffer is always laid out as
 *   [fwd: judged, to forward][parsed: current frame, not yet judged][unparsed]
 * so consecutive forwardable frames leave in one move, and a frame whose
 * verdict is pending stays where it is until the inspector decides. */
#include "relay_int.h"

#include <stdlib.h>

#include <event2/buffer.h>

#include "zmtpfw/cidr.h"
#include "zmtpfw/config.h"
#include "zmtpfw/metrics.h"

#define RELAY_IOV 16
#define RELAY_MAX_FRAMES 65536 /* frames in one client message */

/* What the route's pickle_loader lets the scanner assume (PSCAN_*). */
static unsigned relay_loader_opts(enum config_loader l)
{
	switch (l) {
	case CONFIG_LOADER_ANY: return 0;
	case CONFIG_LOADER_PLAIN: return PSCAN_STOCK;
	case CONFIG_LOADER_STOCK: break;
	}
	return PSCAN_EXT_UNREGISTERED | PSCAN_NO_PERSID;
}

int relay_frames_policy(struct relay *r)
{
	const struct config_route *cfg = r->route->cfg;
	bool listed;

	r->log_only = cfg->mode == CONFIG_MODE_LOG_ONLY;
	listed = cidr_list_match(&cfg->allow_pickle_from, r->sa);
	/* A trusted peer is judged only under pickle_globals; pickle =
	 * "allow" turns judging off for everyone. */
	r->up.scan = cfg->pickle != CONFIG_PICKLE_ALLOW && (!listed || cfg->pickle_globals);
	/* The connection holds the list it judges by: a reload may free the
	 * snapshot it came from while a message is in flight. */
	const struct ppolicy *old = r->up.icfg.policy;
	r->up.icfg = (struct inspect_cfg){
		.pscan_opts = relay_loader_opts(cfg->pickle_loader),
		.policy = ppolicy_ref(listed ? cfg->pickle_globals : NULL),
		.msgpack = cfg->pickle_msgpack,
	};
	ppolicy_free(old);
	r->up.dec.max_frame = r->down.dec.max_frame = cfg->max_frame_size;
	r->repolicy = false;
	if (r->up.scan && !r->up.hold && !(r->up.hold = evbuffer_new()))
		return -1;
	/* The inspector comes with the first frame to inspect (relay_inspector). */
	if (r->up.ins && r->up.icfg.policy && inspect_enable_policy(r->up.ins) < 0)
		return -1;
	return 0;
}

/* The direction's inspector, made at its first frame to inspect: 14 KiB
 * that an idle connection (10,000 of them on a gateway) never needs.
 * NULL when out of memory. */
static struct inspect *relay_inspector(struct dir *d)
{
	if (d->ins)
		return d->ins;
	if (!(d->ins = calloc(1, sizeof(*d->ins))))
		return NULL;
	if (d->icfg.policy && inspect_enable_policy(d->ins) < 0) {
		/* never keep one without its names: the next frame would be
		 * judged by a policy inspector that cannot record imports */
		free(d->ins);
		d->ins = NULL;
		return NULL;
	}
	return d->ins;
}

/* Move the judged prefix to the other side: one call for many frames. */
static int relay_flush(struct evbuffer *in, struct evbuffer *out, size_t *fwd)
{
	if (*fwd == 0)
		return 0;
	int moved = evbuffer_remove_buffer(in, out, *fwd);
	if (moved < 0 || (size_t)moved != *fwd)
		return -1;
	*fwd = 0;
	return 0;
}

/* The frame being judged is still whole in the input, at *fwd: its first
 * body bytes are copied for the log line only now, not for every frame. */
static void relay_log_pickle(struct relay *r, struct dir *d, struct evbuffer *in, size_t fwd,
			     const char *event)
{
	const struct log_ctx *ctx = &r->ctx;
	struct evbuffer_ptr pos;
	uint8_t head[32];
	size_t body = d->parsed > d->dec.hdr_len ? d->parsed - d->dec.hdr_len : 0;
	size_t n = body < sizeof(head) ? body : sizeof(head);

	if (evbuffer_ptr_set(in, &pos, fwd + d->dec.hdr_len, EVBUFFER_PTR_SET) < 0 ||
	    evbuffer_copyout_from(in, &pos, head, n) != (ev_ssize_t)n)
		n = 0;
	const struct inspect *ins = d->ins;
	if (ins->pv) {
		const char *globals[PPOLICY_GLOBALS_MAX];
		for (uint32_t i = 0; i < ins->pv->n; i++)
			globals[i] = ppolicy_verdict_global(ins->pv, i);
		log_event(LOG_WARN, ctx, r->route->rl, event, LOG_STR("reason", ins->reason),
			  LOG_STR("global", inspect_global(ins)), LOG_STR("where", ins->where),
			  LOG_STR("opcode", ins->opcode), LOG_U64("offset", ins->offset),
			  LOG_U64("frame", d->frame_idx), LOG_U64("frame_size", d->dec.size),
			  LOG_BYTES("head", head, n), LOG_BOOL("globals_cut", ins->pv->more),
			  LOG_STRS("globals", globals, ins->pv->n), LOG_END);
		return;
	}
	log_event(LOG_WARN, ctx, r->route->rl, event, LOG_STR("reason", ins->reason),
		  LOG_STR("where", ins->where), LOG_STR("opcode", ins->opcode),
		  LOG_U64("offset", ins->offset), LOG_U64("frame", d->frame_idx),
		  LOG_U64("frame_size", d->dec.size), LOG_BYTES("head", head, n), LOG_END);
}

/* Feed n body bytes of the pending frame to its inspector, and stop at
 * max_scan_bytes: a frame undecided there is judged a pickle, whatever
 * the bytes beyond (so the verdict does not depend on how reads split the
 * frame), unless the frame ends exactly there. */
static enum inspect_verdict relay_inspect(const struct relay *r, struct dir *d,
					  const uint8_t *p, size_t n, bool frame_end)
{
	uint64_t budget = r->route->cfg->max_scan_bytes;
	size_t first = n;

	if (d->frame_seen < budget && budget - d->frame_seen < n)
		first = (size_t)(budget - d->frame_seen);
	d->frame_seen += first;
	enum inspect_verdict v = inspect_feed(d->ins, p, first);
	if (v == INSPECT_NEED_MORE && first == n && frame_end)
		return inspect_end(d->ins);
	if (v == INSPECT_NEED_MORE && d->frame_seen >= budget)
		return inspect_budget_spent(d->ins, d->frame_seen);
	if (first < n) {
		/* decided inside the budget: the rest only passes through */
		d->frame_seen += n - first;
	}
	return v;
}

/* The current data frame's verdict is known; its bytes so far are the
 * `parsed` region. Decide where they, the held frames and the rest go.
 * Returns 1 when in changed (the caller must re-peek), 0 when the
 * frame only joined the forward prefix, -1 to close. */
static int relay_judge(struct relay *r, struct dir *d, struct evbuffer *in, struct evbuffer *out,
		       size_t *fwd, enum inspect_verdict v)
{
	const struct config_route *cfg = r->route->cfg;

	if (v == INSPECT_DROP) {
		if (r->log_only) {
			relay_log_pickle(r, d, in, *fwd, "would-drop");
			d->would_drop = true;
			d->drop_reason = d->ins->reason;
		} else {
			relay_log_pickle(r, d, in, *fwd, "drop");
			d->dropped++;
			d->drop_reason = d->ins->reason;
			if (relay_flush(in, out, fwd) < 0)
				return relay_fail(r, d, "internal", "move failed");
			if (cfg->on_violation == CONFIG_ON_VIOLATION_CLOSE) {
				metrics_add_reason(r->m, METRICS_MSGS_DROPPED, METRICS_DIR_UP,
						   d->drop_reason, 1);
				metrics_add_reason(r->m, METRICS_FRAMES_DROPPED, METRICS_DIR_UP,
						   d->drop_reason, d->frame_idx + 1);
				/* no "from": a policy verdict, not a protocol breach */
				r->close = (struct relay_action){ .act = RELAY_CLOSE,
								  .reason = d->drop_reason,
								  .detail = d->ins->opcode };
				return -1;
			}
			evbuffer_drain(in, d->parsed);
			evbuffer_drain(d->hold, evbuffer_get_length(d->hold));
			d->parsed = 0;
			d->msg = MSG_DROP;
			d->dest = FRAME_DRAIN;
			return 1;
		}
	}
	if (d->frame_more) {
		/* Clean, but a later frame may still condemn the message. */
		if (relay_flush(in, out, fwd) < 0 ||
		    evbuffer_remove_buffer(in, d->hold, d->parsed) != (int)d->parsed)
			return relay_fail(r, d, "internal", "move failed");
		d->parsed = 0;
		d->msg = MSG_HOLD;
		d->dest = FRAME_HOLD;
		return 1;
	}
	/* Last frame and clean: release the message. Commands that arrived
	 * mid-message (in fwd) go first; they are not part of it. */
	int changed = 0;
	if (evbuffer_get_length(d->hold) > 0) {
		if (relay_flush(in, out, fwd) < 0 || evbuffer_add_buffer(out, d->hold) < 0)
			return relay_fail(r, d, "internal", "move failed");
		changed = 1;
	}
	*fwd += d->parsed;
	d->parsed = 0;
	d->msg = MSG_IDLE;
	d->dest = FRAME_FWD;
	return changed;
}

static int relay_on_header(struct relay *r, struct dir *d, struct evbuffer *in, struct evbuffer *out,
			   size_t *fwd)
{
	const struct config_route *cfg = r->route->cfg;
	const struct dir *peer = d == &r->up ? &r->down : &r->up;
	uint8_t flags = d->dec.flags;

	/* libzmq sends nothing after its READY until it has the peer's: a frame
	 * earlier is not libzmq, and would reach a worker still handshaking. */
	if (peer->phase != RELAY_TRAFFIC)
		return relay_fail(r, d, "protocol", "frame before the peer's handshake");
	d->frame_cmd = (flags & ZMTP_FLAG_COMMAND) != 0;
	d->frame_more = (flags & ZMTP_FLAG_MORE) != 0;
	d->frame_seen = 0;

	if (d->frame_cmd) {
		if (d->dec.size > ZMTP_CMD_MAX)
			return relay_fail(r, d, "bad-command", "command too large");
		d->dest = FRAME_PENDING;
		return 0;
	}
	/* A message starts after a frame without MORE, whatever the scan state
	 * (unscanned directions never leave MSG_IDLE). */
	if (!d->in_msg) {
		d->frame_idx = 0;
		d->msg_bytes = 0;
		if (d->from_client && r->repolicy && relay_frames_policy(r) < 0)
			return relay_fail(r, d, "internal", "out of memory");
	}
	d->msg_bytes += d->dec.size;
	if (d->from_client && d->msg_bytes > cfg->max_message_size)
		return relay_fail(r, d, "message-too-large", "message exceeds max_message_size");
	/* Held empty frames add no payload but 2 bytes each: cap their count so
	 * a message that never ends cannot grow memory below the byte limit. */
	if (d->from_client && d->frame_idx >= RELAY_MAX_FRAMES)
		return relay_fail(r, d, "message-too-large", "more than 65536 frames in a message");

	if (!d->scan) {
		d->dest = FRAME_FWD;
		*fwd += d->parsed;
		d->parsed = 0;
		return 0;
	}
	if (d->msg == MSG_DROP) {
		d->dest = FRAME_DRAIN;
		if (relay_flush(in, out, fwd) < 0)
			return relay_fail(r, d, "internal", "move failed");
		evbuffer_drain(in, d->parsed);
		d->parsed = 0;
		return 0;
	}
	if (!relay_inspector(d))
		return relay_fail(r, d, "internal", "out of memory");
	d->dest = FRAME_PENDING;
	inspect_begin(d->ins, &d->icfg, d->dec.size);
	return 0;
}

/* A command frame is complete in the `parsed` region: validate, forward. */
static int relay_on_command(struct relay *r, struct dir *d, struct evbuffer *in, size_t *fwd)
{
	uint8_t body[ZMTP_CMD_MAX];
	size_t hlen = d->dec.hdr_len, n = (size_t)d->dec.size;
	struct evbuffer_ptr pos;
	enum zmtp_cmd cmd;
	const char *why = NULL;

	if (evbuffer_ptr_set(in, &pos, *fwd + hlen, EVBUFFER_PTR_SET) < 0 ||
	    evbuffer_copyout_from(in, &pos, body, n) != (ev_ssize_t)n)
		return relay_fail(r, d, "internal", "copyout failed");
	if (zmtp_command_parse(body, n, &cmd, &why) != ZMTP_OK)
		return relay_fail(r, d, "bad-command", why);
	if (cmd == ZMTP_CMD_SUBSCRIBE || cmd == ZMTP_CMD_CANCEL) {
		/* libzmq hands these to every application as a message
		 * (\x09SUBSCRIBE..., \x06CANCEL...): only a subscriber has a
		 * reason to send them. */
		if (!d->subscriber)
			return relay_fail(r, d, "bad-command",
					  "SUBSCRIBE or CANCEL from a peer that is not SUB or XSUB");
		/* libzmq delivers one sent between two frames of a message in
		 * stream order, splitting it ([f1, SUB], [f2]); passed ahead of
		 * held frames it would arrive first. libzmq never sends one
		 * inside a message (a subscription is a message of its own). */
		if (d->in_msg)
			return relay_fail(r, d, "bad-command", "SUBSCRIBE or CANCEL inside a message");
	}
	/* PING and PONG are not part of a message and the worker's engine
	 * consumes them (libzmq sends its heartbeats between any two frames):
	 * they may pass ahead of held frames. */
	*fwd += d->parsed;
	d->parsed = 0;
	d->dest = FRAME_FWD;
	return 0;
}

/* A frame ended. At a message's end, count it and, while draining, stop
 * taking client messages: the rest of the input is never parsed. */
void relay_frames_done(struct relay *r, struct dir *d)
{
	enum metrics_dir dir = d->from_client ? METRICS_DIR_UP : METRICS_DIR_DOWN;
	uint64_t frames = (uint64_t)d->frame_idx + 1;

	if (d->frame_cmd)
		return;
	if (d->frame_more) {
		d->frame_idx++;
		d->in_msg = true;
		return;
	}
	if (d->msg == MSG_DROP) {
		metrics_add_reason(r->m, METRICS_MSGS_DROPPED, dir, d->drop_reason, 1);
		metrics_add_reason(r->m, METRICS_FRAMES_DROPPED, dir, d->drop_reason, frames);
	} else {
		metrics_add(r->m, METRICS_MSGS_FORWARDED, dir, 1);
		metrics_add(r->m, METRICS_FRAMES_FORWARDED, dir, frames);
		if (d->would_drop)
			metrics_add_reason(r->m, METRICS_MSGS_WOULD_DROP, dir, d->drop_reason, 1);
	}
	d->would_drop = false;
	d->in_msg = false;
	d->msgs++;
	d->msg = MSG_IDLE;
	if (d->from_client && r->route->draining)
		d->drain_stop = true;
}

/* Handle one decoder event. Returns 1 when the input buffer was modified
 * (the walk must re-peek), 0 to go on, -1 to close. */
static int relay_event(struct relay *r, struct dir *d, struct evbuffer *in, struct evbuffer *out,
		       size_t *fwd, const struct zmtp_ev *ev, size_t used)
{
	int changed = 0;

	if (ev->kind == ZMTP_EV_ERROR) {
		if (relay_flush(in, out, fwd) < 0)
			return relay_fail(r, d, "internal", "move failed");
		return relay_fail(r, d, ev->why, "frame header");
	}
	if (ev->kind == ZMTP_EV_NEED_MORE) {
		d->parsed += used; /* part of a header */
		return 0;
	}
	if (ev->kind == ZMTP_EV_HEADER) {
		d->parsed += used;
		if (relay_on_header(r, d, in, out, fwd) < 0)
			return -1;
		changed = d->dest == FRAME_DRAIN;
		if (ev->frame_end) {
			if (d->frame_cmd)
				return relay_on_command(r, d, in, fwd) < 0 ? -1 : 1;
			if (d->dest == FRAME_PENDING) {
				int j = relay_judge(r, d, in, out, fwd, inspect_end(d->ins));
				if (j < 0)
					return -1;
				changed |= j;
			}
			relay_frames_done(r, d);
		}
		return changed;
	}

	/* BODY */
	switch (d->dest) {
	case FRAME_FWD:
		*fwd += used;
		break;
	case FRAME_DRAIN:
		if (relay_flush(in, out, fwd) < 0)
			return relay_fail(r, d, "internal", "move failed");
		evbuffer_drain(in, used);
		changed = 1;
		break;
	case FRAME_HOLD:
		if (relay_flush(in, out, fwd) < 0 ||
		    evbuffer_remove_buffer(in, d->hold, used) != (int)used)
			return relay_fail(r, d, "internal", "move failed");
		changed = 1;
		break;
	case FRAME_PENDING:
		d->parsed += used;
		if (d->frame_cmd) {
			if (ev->frame_end)
				return relay_on_command(r, d, in, fwd) < 0 ? -1 : 1;
			break;
		}
		enum inspect_verdict v = relay_inspect(r, d, ev->p, used, ev->frame_end);
		if (v != INSPECT_NEED_MORE) {
			int j = relay_judge(r, d, in, out, fwd, v);
			if (j < 0)
				return -1;
			changed = j;
		}
		break;
	}
	if (ev->frame_end)
		relay_frames_done(r, d);
	return changed;
}

/* Fast path: a whole message of short data frames lies in p[0..n) and the
 * parse state is at a message boundary. Judge it in place: returns its
 * length when every frame is clean (it joins the forward prefix, nothing is
 * copied or held), 0 when the general path must take it from its first
 * byte (a long or command frame, a frame cut by the span's end, a limit, a
 * pickle). Checks exactly what relay_on_header and the decoder check; the
 * one thing it may change is making the direction's inspector. */
static size_t relay_fast_message(const struct relay *r, struct dir *d, const uint8_t *p,
				 size_t n, uint32_t *frames)
{
	const struct config_route *cfg = r->route->cfg;
	uint64_t msg_bytes = 0;
	size_t off = 0;
	uint32_t k = 0;

	for (;;) {
		struct zmtp_hdr h;
		const char *why;
		/* The one header parser; only short data frames whose body is
		 * in the span are taken here, anything else goes the general way. */
		if (zmtp_hdr_parse(p + off, n - off, d->dec.max_frame, &h, &why) != ZMTP_OK ||
		    (h.flags & ~ZMTP_FLAG_MORE) != 0 || h.size > n - off - 2)
			return 0;
		size_t size = (size_t)h.size;
		msg_bytes += size;
		if (d->from_client && (msg_bytes > cfg->max_message_size || k >= RELAY_MAX_FRAMES))
			return 0;
		/* The same inspector as the general path; a drop is left to
		 * that path, which logs it. */
		if (d->scan && size > 0 && !inspect_first_byte_pass(p[off + 2])) {
			if (size > cfg->max_scan_bytes || !relay_inspector(d))
				return 0; /* the general path applies the budget (or fails) */
			inspect_begin(d->ins, &d->icfg, size);
			enum inspect_verdict v = inspect_feed(d->ins, p + off + 2, size);
			if (v == INSPECT_NEED_MORE)
				v = inspect_end(d->ins);
			if (v != INSPECT_PASS)
				return 0;
		}
		k++;
		off += 2 + size;
		if (!(h.flags & ZMTP_FLAG_MORE)) {
			*frames = k;
			return off;
		}
	}
}

int relay_frames_walk(struct relay *r, struct dir *d, struct evbuffer *in, struct evbuffer *out)
{
	const struct dir *peer = d == &r->up ? &r->down : &r->up;
	enum metrics_dir mdir = d->from_client ? METRICS_DIR_UP : METRICS_DIR_DOWN;
	/* what the fast path skips: the peer's handshake check, a pending policy */
	bool fast = peer->phase == RELAY_TRAFFIC && !(d->from_client && r->repolicy);
	uint64_t fast_msgs = 0, fast_frames = 0;
	size_t fwd = 0;
	int rc = 0;

	for (;;) {
		struct evbuffer_iovec v[RELAY_IOV];
		struct evbuffer_ptr pos;
		size_t skip = fwd + d->parsed;
		int changed = 0;

		if (skip >= evbuffer_get_length(in) || d->drain_stop)
			break;
		if (evbuffer_ptr_set(in, &pos, skip, EVBUFFER_PTR_SET) < 0) {
			rc = relay_fail(r, d, "internal", "ptr");
			break;
		}
		int nv = evbuffer_peek(in, -1, &pos, v, RELAY_IOV);
		if (nv > RELAY_IOV)
			nv = RELAY_IOV;
		for (int i = 0; i < nv && !changed && !d->drain_stop; i++) {
			const uint8_t *p = v[i].iov_base;
			size_t n = v[i].iov_len;
			while (n > 0 && !changed && !d->drain_stop) {
				uint32_t frames;
				size_t m;
				if (fast && !d->in_msg && d->parsed == 0 && zmtp_dec_idle(&d->dec) &&
				    (m = relay_fast_message(r, d, p, n, &frames)) > 0) {
					fwd += m;
					p += m;
					n -= m;
					fast_msgs++;
					fast_frames += frames;
					d->msgs++;
					if (d->from_client && r->route->draining)
						d->drain_stop = true;
					continue;
				}
				struct zmtp_ev ev;
				size_t used = zmtp_dec_step(&d->dec, p, n, &ev);
				changed = relay_event(r, d, in, out, &fwd, &ev, used);
				if (changed < 0) {
					/* what was judged before the violation still goes */
					(void)relay_flush(in, out, &fwd);
					break;
				}
				p += used;
				n -= used;
			}
		}
		if (changed < 0) {
			rc = -1;
			break;
		}
		/* Keep skips short: what is judged leaves before the next peek. */
		if (relay_flush(in, out, &fwd) < 0) {
			rc = relay_fail(r, d, "internal", "move failed");
			break;
		}
	}
	/* counted once per read, not per message */
	metrics_add(r->m, METRICS_MSGS_FORWARDED, mdir, fast_msgs);
	metrics_add(r->m, METRICS_FRAMES_FORWARDED, mdir, fast_frames);
	if (rc < 0)
		return -1;
	return relay_flush(in, out, &fwd) < 0 ? relay_fail(r, d, "internal", "move failed") : 0;
}

