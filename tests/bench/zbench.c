/* zbench: the libzmq peers of tests/bench/run.sh. One binary, one subcommand
 * per role; every measuring role prints one JSON line on stdout.
 *
 *   zbench pull    --bind EP --count N [--size S] [--header H] [--verify 0|1|2]
 *                  [--unordered 1] [--stamps 1] [--timeout-secs T]
 *   zbench push    --connect EP --size S --count N [--header H] [--zero-copy 1]
 *                  [--pickles K] [--conns C]
 *   zbench rep     --bind EP [--count N (default: until idle --timeout-secs)]
 *   zbench req     --connect EP --size S --count N [--warmup W]
 *   zbench idle    --connect EP --conns N [--sources K] [--hold-secs T]
 *   zbench trickle --connect EP --conns N --rate R --secs T [--size S] [--watch-pid P]
 *                  [--settle-secs W (default 0.5)]
 *   zbench version
 *
 * Payloads. Every frame looks like JSON: '{' first, '}' last, so a pickle
 * scanner passes it at the first byte ('{' is no pickle opcode). A frame of
 * 10 bytes or more carries the message's sequence number (uint64, bytes 1-8);
 * trickle frames of 18 bytes or more also carry their send time (CLOCK_MONOTONIC
 * nanoseconds, bytes 9-16). The other bytes are 'a'..'z' repeating.
 *
 * pull receives N messages and checks each one (--verify 1, the default):
 * frames per message (2 with --header, else 1), the MORE flags, every
 * frame's size when --size/--header are given, the '{'/'}' ends, and the
 * sequence number: 0, 1, 2... in order, or with --unordered 1 each below N
 * and seen once (many senders). --verify 2 also compares every other byte;
 * --verify 0 checks only the count. A message that fails is an error: pull
 * exits 2 and says so ("errors", "first_error"). It times the first to the
 * last message: msg_per_s and mb_per_s (MB = 10^6 bytes) count the N-1
 * messages after the first. --stamps 1 (trickle) adds per-message latency
 * (receive time minus the stamped send time, p50/p99/max), the delivered
 * rate from the first send to the last receive, and drain_ms: last receive
 * minus last send.
 *
 * push with --header sends two-frame messages: an H-byte header and an
 * S-byte tensor. Senders copy each message (zmq_send) unless --zero-copy 1
 * (then frames carry no sequence number: use pull --verify 0). --conns C
 * opens C PUSH sockets (C connections) and sends message i on socket i % C:
 * use pull --unordered 1.
 * --pickles K also sends K extra messages whose tensor frame is a pickle
 * (GLOBAL os.system), spread over the run: a firewall must drop them, and
 * pull (which expects only the N clean ones, in order) fails if one arrives.
 *
 * req checks that every reply is the request it sent, byte for byte (after
 * taking the time, so the check costs no latency).
 *
 * idle speaks ZMTP 3.1 NULL over raw TCP (greeting, READY as a PUSH, and
 * reads the peer's greeting and READY), so a relay holds full connections;
 * it prints its JSON once all are open, then holds them until killed or
 * --hold-secs. --sources K spreads them over source addresses 127.0.0.1..K.
 *
 * trickle opens N PUSH sockets, waits until every one has completed its
 * ZMTP handshake (socket monitors; through a relay, that is with the worker:
 * "ready_secs" says how long all took, and fewer than N within --timeout-secs
 * is a failure), waits W more seconds, then sends R messages per second on
 * each, spread evenly, for T seconds; --watch-pid reports that process's CPU use
 * (all threads, from schedstat) during the sending phase.
 *
 * Exit: 0 done, 2 timeout, lost or corrupted messages, 3 usage or setup error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#define SEQ_OFF 1    /* uint64 sequence number at bytes 1..8 */
#define SEQ_MIN 10   /* frames at least this long carry it */
#define STAMP_OFF 9  /* uint64 send time (ns) at bytes 9..16 */
#define STAMP_MIN 18 /* frames at least this long carry it (trickle) */

struct opts {
	const char *bind, *connect; /* libzmq endpoints */
	long count;                 /* messages (pull, push, req) or 0 = unbounded (rep) */
	size_t size, header;        /* frame sizes; header 0 = single-frame messages */
	int size_set;               /* pull: --size given, so sizes are checked */
	long warmup;                /* req: round trips not measured */
	int conns, sources;         /* idle, trickle, push */
	double rate, secs;          /* trickle: per connection msg/s, duration */
	double hold_secs;           /* idle */
	double settle_secs;         /* trickle: wait after connecting, before sending */
	double timeout_secs;        /* longest wait for any one message */
	long watch_pid;             /* trickle: process whose CPU is reported */
	int verify;                 /* pull: 0 count only, 1 structure + seq, 2 every byte */
	int unordered;              /* pull: many senders, seqs in any order */
	int stamps;                 /* pull: frames carry send times */
	long pickles;               /* push: extra pickle messages to slip in */
};

static void die(const char *what)
{
	fprintf(stderr, "zbench: %s: %s\n", what, zmq_strerror(zmq_errno()));
	exit(3);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_secs(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	while (s > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* 10k connections need 20k+ descriptors on each side. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_max < 65536) {
		struct rlimit want = { 65536, 65536 };
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
}

/* JSON-looking payload: never a pickle, whatever the scanner looks at. */
static unsigned char *payload(size_t n)
{
	unsigned char *p = malloc(n ? n : 1);
	if (!p)
		die("malloc");
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)('a' + i % 26);
	if (n)
		p[0] = '{';
	if (n > 1)
		p[n - 1] = '}';
	return p;
}

static void put_u64(unsigned char *p, size_t n, size_t off, size_t min, uint64_t v)
{
	if (n >= min)
		memcpy(p + off, &v, sizeof v);
}

static uint64_t get_u64(const unsigned char *p, size_t off)
{
	uint64_t v;
	memcpy(&v, p + off, sizeof v);
	return v;
}

static void *new_socket(void *ctx, int type, const struct opts *o)
{
	void *s = zmq_socket(ctx, type);
	/* Queues deep enough never to starve the wire, bounded to ~256 MiB. */
	size_t per_msg = o->size + o->header + 64;
	int hwm = per_msg < 256 ? 1000000 : (int)((256u << 20) / per_msg) + 4, linger = (int)(o->timeout_secs * 1000);
	int tmo = (int)(o->timeout_secs * 1000);
	if (!s || zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
	    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
	    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) ||
	    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo) ||
	    zmq_setsockopt(s, ZMQ_SNDTIMEO, &tmo, sizeof tmo))
		die("zmq_socket");
	if (o->bind && zmq_bind(s, o->bind))
		die(o->bind);
	if (o->connect && zmq_connect(s, o->connect))
		die(o->connect);
	return s;
}

/* zmq_send() copies, as most applications do; --zero-copy hands libzmq the
 * constant buffer itself (libzmq "cmsg"), which makes the sender cheaper. */
static int zero_copy;

static int send_const(void *s, const void *p, size_t n, int flags)
{
	zmq_msg_t m;
	if (!zero_copy)
		return zmq_send(s, p, n, flags) < 0 ? -1 : 0;
	zmq_msg_init_data(&m, (void *)p, n, NULL, NULL);
	if (zmq_msg_send(&m, s, flags) < 0) {
		zmq_msg_close(&m);
		return -1;
	}
	return 0;
}

/* ---- pull: receive, verify, time ---------------------------------------- */

struct checker {
	const struct opts *o;
	unsigned char *want_body, *want_head; /* expected bytes (verify 2) */
	unsigned char *seen;                  /* unordered: one bit per sequence number */
	long errors;
	char first[200];
};

static void check_fail(struct checker *k, const char *fmt, ...)
{
	va_list ap;
	if (k->errors++ == 0) {
		va_start(ap, fmt);
		vsnprintf(k->first, sizeof k->first, fmt, ap);
		va_end(ap);
	}
}

/* One frame of message `msg` (its frame `idx`). Returns its sequence number,
 * or -1 if it carries none. */
static long check_frame(struct checker *k, long msg, int idx, const unsigned char *p, size_t n,
			int more)
{
	const struct opts *o = k->o;
	int frames = o->header ? 2 : 1;
	size_t want = idx == 0 && o->header ? o->header : o->size;
	const unsigned char *ref = idx == 0 && o->header ? k->want_head : k->want_body;
	long seq = -1;

	if (idx >= frames) {
		check_fail(k, "message %ld: more than %d frames", msg, frames);
		return -1;
	}
	if (more != (idx + 1 < frames))
		check_fail(k, "message %ld frame %d: MORE is %d", msg, idx, more);
	if (o->size_set && n != want) {
		check_fail(k, "message %ld frame %d: %zu bytes, want %zu", msg, idx, n, want);
		return -1;
	}
	if (n == 0)
		return -1;
	if (p[0] != '{' || (n > 1 && p[n - 1] != '}')) {
		check_fail(k, "message %ld frame %d (%zu bytes): not a zbench payload (first byte 0x%02x)",
			   msg, idx, n, p[0]);
		return -1;
	}
	if (n >= SEQ_MIN)
		seq = (long)get_u64(p, SEQ_OFF);
	if (o->verify >= 2 && ref && n >= 2) {
		/* Everything but the sequence number and, in trickle frames, the stamp. */
		size_t from = n >= SEQ_MIN ? SEQ_OFF + 8 : 1;
		if (o->stamps && n >= STAMP_MIN)
			from = STAMP_OFF + 8;
		if (from < n - 1 && memcmp(p + from, ref + from, n - 1 - from) != 0)
			check_fail(k, "message %ld frame %d: payload bytes differ", msg, idx);
	}
	return seq;
}

/* A whole message: its sequence number must be the next one (ordered) or
 * new and in range (unordered). */
static void check_seq(struct checker *k, long msg, long seq)
{
	const struct opts *o = k->o;
	if (seq < 0)
		return;
	if (!o->unordered) {
		if (seq != msg)
			check_fail(k, "message %ld: sequence number %ld (lost, duplicated or reordered)",
				   msg, seq);
		return;
	}
	if (seq >= o->count) {
		check_fail(k, "message %ld: sequence number %ld out of range", msg, seq);
		return;
	}
	if (k->seen[seq / 8] & (1u << (seq % 8)))
		check_fail(k, "message %ld: sequence number %ld delivered twice", msg, seq);
	k->seen[seq / 8] |= (unsigned char)(1u << (seq % 8));
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int cmd_pull(void *ctx, const struct opts *o)
{
	void *s = new_socket(ctx, ZMQ_PULL, o);
	long msgs = 0, frames = 0, seq = -1;
	int idx = 0;
	uint64_t bytes = 0, first_bytes = 0, stamp_min = UINT64_MAX, stamp_max = 0, last_recv = 0;
	double t0 = 0, t1 = 0, *lat = NULL;
	struct checker k = { .o = o };
	zmq_msg_t m;

	if (o->verify >= 2) {
		k.want_body = payload(o->size);
		k.want_head = o->header ? payload(o->header) : NULL;
	}
	if (o->unordered && !(k.seen = calloc((size_t)o->count / 8 + 1, 1)))
		die("malloc");
	if (o->stamps && !(lat = calloc((size_t)o->count, sizeof *lat)))
		die("malloc");
	zmq_msg_init(&m);
	while (msgs < o->count) {
		if (zmq_msg_recv(&m, s, 0) < 0)
			break; /* EAGAIN: timeout */
		const unsigned char *p = zmq_msg_data(&m);
		size_t n = zmq_msg_size(&m);
		int more = zmq_msg_more(&m);
		frames++;
		bytes += n;
		if (o->verify) {
			long fs = check_frame(&k, msgs, idx, p, n, more);
			if (fs >= 0) {
				if (idx > 0 && seq >= 0 && fs != seq)
					check_fail(&k, "message %ld: frames of messages %ld and %ld", msgs,
						   seq, fs);
				seq = fs;
			}
		}
		if (o->stamps && !more) {
			if (n >= STAMP_MIN) {
				uint64_t sent = get_u64(p, STAMP_OFF), got = now_ns();
				lat[msgs] = (double)(int64_t)(got - sent) / 1e3;
				stamp_min = sent < stamp_min ? sent : stamp_min;
				stamp_max = sent > stamp_max ? sent : stamp_max;
				last_recv = got;
			} else {
				check_fail(&k, "message %ld: %zu bytes, too short for a send time", msgs, n);
			}
		}
		if (more) {
			idx++;
			continue;
		}
		if (o->verify)
			check_seq(&k, msgs, seq);
		idx = 0;
		seq = -1;
		t1 = now();
		if (msgs++ == 0) {
			t0 = t1;
			first_bytes = bytes;
		}
	}
	zmq_msg_close(&m);
	if (msgs < o->count)
		check_fail(&k, "%ld of %ld messages arrived (timeout after %.0f s)", msgs, o->count,
			   o->timeout_secs);
	double secs = t1 - t0, d = secs > 0 ? secs : 1e-9;
	printf("{\"msgs\":%ld,\"frames\":%ld,\"bytes\":%llu,\"secs\":%.6f,"
	       "\"msg_per_s\":%.1f,\"mb_per_s\":%.2f",
	       msgs, frames, (unsigned long long)bytes, secs, msgs > 1 ? (double)(msgs - 1) / d : 0.0,
	       msgs > 1 ? (double)(bytes - first_bytes) / d / 1e6 : 0.0);
	if (o->stamps && msgs > 0 && last_recv) {
		double span = (double)(last_recv - stamp_min) / 1e9;
		qsort(lat, (size_t)msgs, sizeof *lat, cmp_double);
		printf(",\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,\"lat_max_us\":%.1f,"
		       "\"delivered_per_s\":%.1f,\"drain_ms\":%.3f",
		       lat[msgs / 2], lat[msgs * 99 / 100], lat[msgs - 1],
		       span > 0 ? (double)msgs / span : 0.0, (double)(int64_t)(last_recv - stamp_max) / 1e6);
	}
	printf(",\"verify\":%d,\"errors\":%ld,\"first_error\":\"%s\",\"complete\":%s}\n", o->verify,
	       k.errors, k.first, k.errors == 0 ? "true" : "false");
	zmq_close(s);
	free(k.want_body);
	free(k.want_head);
	free(k.seen);
	free(lat);
	return k.errors == 0 ? 0 : 2;
}

/* ---- push --------------------------------------------------------------- */

/* What CPython would run: pickle protocol 0, GLOBAL os.system, REDUCE. */
static const char evil[] = "cos\nsystem\n(S'echo zbench'\ntR.";

static void push_failed(long i)
{
	fprintf(stderr, "zbench push: send %ld: %s\n", i, zmq_strerror(zmq_errno()));
	exit(2); /* without zmq_ctx_term: it would wait for the linger */
}

static int cmd_push(void *ctx, const struct opts *o)
{
	void **ss = calloc((size_t)o->conns, sizeof *ss), *s;
	unsigned char *body = payload(o->size), *head = payload(o->header);
	long stride = o->pickles > 0 ? (o->count / o->pickles > 0 ? o->count / o->pickles : 1) : 0;
	long pickles = 0;
	double t0 = now();

	if (!ss)
		die("malloc");
	for (int c = 0; c < o->conns; c++)
		ss[c] = new_socket(ctx, ZMQ_PUSH, o);
	for (long i = 0; i < o->count; i++) {
		s = ss[i % o->conns];
		if (stride && pickles < o->pickles && i % stride == 0) {
			if ((o->header && send_const(s, head, o->header, ZMQ_SNDMORE) < 0) ||
			    zmq_send(s, evil, sizeof evil - 1, 0) < 0)
				push_failed(i);
			pickles++;
		}
		if (!zero_copy) { /* the buffers are copied at each send: number them */
			put_u64(head, o->header, SEQ_OFF, SEQ_MIN, (uint64_t)i);
			put_u64(body, o->size, SEQ_OFF, SEQ_MIN, (uint64_t)i);
		}
		if ((o->header && send_const(s, head, o->header, ZMQ_SNDMORE) < 0) ||
		    send_const(s, body, o->size, 0) < 0)
			push_failed(i);
	}
	for (int c = 0; c < o->conns; c++)
		zmq_close(ss[c]); /* lingers until everything is written */
	free(ss);
	zmq_ctx_term(ctx);
	printf("{\"sent\":%ld,\"pickles\":%ld,\"secs\":%.6f}\n", o->count, pickles, now() - t0);
	free(body);
	free(head);
	return 0;
}

/* ---- rep / req ---------------------------------------------------------- */

static int cmd_rep(void *ctx, const struct opts *o)
{
	void *s = new_socket(ctx, ZMQ_REP, o);
	long served = 0;
	zmq_msg_t m;

	zmq_msg_init(&m);
	while (!o->count || served < o->count) {
		if (zmq_msg_recv(&m, s, 0) < 0 || zmq_msg_send(&m, s, 0) < 0)
			break;
		served++;
	}
	zmq_msg_close(&m);
	printf("{\"served\":%ld}\n", served);
	zmq_close(s);
	return 0;
}

static int cmd_req(void *ctx, const struct opts *o)
{
	void *s = new_socket(ctx, ZMQ_REQ, o);
	unsigned char *body = payload(o->size), *back = malloc(o->size + 1);
	double *rtt = calloc((size_t)o->count, sizeof *rtt), sum = 0;
	int rc = 2;

	if (!back || !rtt)
		die("malloc");
	for (long i = -o->warmup; i < o->count; i++) {
		double t0, t1;
		int n;
		put_u64(body, o->size, SEQ_OFF, SEQ_MIN, (uint64_t)(i + o->warmup));
		t0 = now();
		if (send_const(s, body, o->size, 0) < 0 ||
		    (n = zmq_recv(s, back, o->size + 1, 0)) < 0) {
			fprintf(stderr, "zbench req: round trip %ld: %s\n", i, zmq_strerror(zmq_errno()));
			goto out;
		}
		t1 = now();
		if ((size_t)n != o->size || memcmp(back, body, o->size) != 0) {
			fprintf(stderr, "zbench req: round trip %ld: reply of %d bytes is not the %zu-byte request\n",
				i, n, o->size);
			goto out;
		}
		if (i >= 0)
			sum += rtt[i] = (t1 - t0) * 1e6;
	}
	qsort(rtt, (size_t)o->count, sizeof *rtt, cmp_double);
	printf("{\"rtts\":%ld,\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f}\n",
	       o->count, rtt[o->count / 2], rtt[o->count * 99 / 100], sum / (double)o->count,
	       rtt[o->count - 1]);
	rc = 0;
out:
	if (rc) {
		int zero = 0; /* drop an unanswered request rather than linger on it */
		zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
	}
	zmq_close(s);
	free(body);
	free(back);
	free(rtt);
	return rc;
}

/* ---- idle --------------------------------------------------------------- */

/* "tcp://A.B.C.D:PORT" -> sockaddr_in. */
static void parse_tcp(const char *ep, struct sockaddr_in *sa)
{
	char host[64];
	unsigned port;
	if (sscanf(ep, "tcp://%63[0-9.]:%u", host, &port) != 2 || port > 65535)
		die("endpoint must be tcp://IPV4:PORT");
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		die("endpoint must be tcp://IPV4:PORT");
}

static int read_full(int fd, unsigned char *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One raw ZMTP 3.1 NULL connection as a PUSH peer, fully handshaken. */
static int zmtp_open(const struct sockaddr_in *dst, int src_index, int sources)
{
	static const unsigned char ready[] = "\x04\x1a\x05READY\x0bSocket-Type\0\0\0\x04PUSH";
	unsigned char greet[64] = { 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 1, 'N', 'U', 'L', 'L' };
	unsigned char peer[64], cmd[9 + 4096];
	struct timeval tv = { 5, 0 };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (sources > 1) {
		/* Source port chosen at connect time, per destination. */
		struct sockaddr_in src = { .sin_family = AF_INET };
		src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(src_index % sources));
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 ||
	    write(fd, greet, sizeof greet) != (ssize_t)sizeof greet ||
	    read_full(fd, peer, sizeof peer) < 0 || peer[0] != 0xff || peer[9] != 0x7f ||
	    write(fd, ready, sizeof ready - 1) != (ssize_t)(sizeof ready - 1) ||
	    read_full(fd, cmd, 2) < 0 || cmd[0] != 0x04 || /* short command */
	    read_full(fd, cmd + 2, cmd[1]) < 0 || memcmp(cmd + 2, "\x05READY", 6) != 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

static int cmd_idle(const struct opts *o)
{
	struct sockaddr_in dst;
	int *fds = calloc((size_t)o->conns, sizeof *fds), opened = 0;
	double t0 = now();

	if (!fds)
		die("malloc");
	parse_tcp(o->connect, &dst);
	for (int i = 0; i < o->conns; i++) {
		fds[i] = zmtp_open(&dst, i, o->sources);
		opened += fds[i] >= 0;
	}
	printf("{\"conns\":%d,\"opened\":%d,\"failed\":%d,\"secs\":%.3f}\n", o->conns, opened,
	       o->conns - opened, now() - t0);
	fflush(stdout);
	sleep_secs(o->hold_secs);
	for (int i = 0; i < o->conns; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	return opened == o->conns ? 0 : 2;
}

/* ---- trickle ------------------------------------------------------------ */

/* CPU time of a process, all its threads, in seconds (schedstat: ns
 * resolution, where utime + stime count 10 ms ticks); -1 if unreadable. */
static double proc_cpu(long pid)
{
	char path[64], line[256];
	double total = 0;
	DIR *d;
	struct dirent *e;
	snprintf(path, sizeof path, "/proc/%ld/task", pid);
	if (!(d = opendir(path)))
		return -1;
	while ((e = readdir(d))) {
		char file[sizeof path + 256 + 16];
		unsigned long long ns;
		FILE *f;
		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof file, "%s/%s/schedstat", path, e->d_name);
		if ((f = fopen(file, "r"))) {
			if (fgets(line, sizeof line, f) && sscanf(line, "%llu", &ns) == 1)
				total += (double)ns / 1e9;
			fclose(f);
		}
	}
	closedir(d);
	return total;
}

/* Connect N PUSH sockets and wait until every one has completed its ZMTP
 * handshake (through a relay that means with the worker itself), watching
 * each with a socket monitor. Returns how many did within timeout_secs. */
static int connect_all(void *ctx, void **s, const struct opts *o)
{
	struct opts no_connect = *o;
	void **mon = calloc((size_t)o->conns, sizeof *mon);
	zmq_pollitem_t *items = calloc((size_t)o->conns, sizeof *items);
	char ep[64];
	int ready = 0;
	double t0;

	no_connect.connect = NULL;
	if (!mon || !items)
		die("malloc");
	for (int i = 0; i < o->conns; i++) {
		s[i] = new_socket(ctx, ZMQ_PUSH, &no_connect);
		snprintf(ep, sizeof ep, "inproc://zbench-monitor-%d", i);
		if (zmq_socket_monitor(s[i], ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ||
		    !(mon[i] = zmq_socket(ctx, ZMQ_PAIR)) || zmq_connect(mon[i], ep) ||
		    zmq_connect(s[i], o->connect))
			die("connect");
		items[i] = (zmq_pollitem_t){ .socket = mon[i], .events = ZMQ_POLLIN };
	}
	t0 = now();
	while (ready < o->conns && now() - t0 < o->timeout_secs) {
		if (zmq_poll(items, o->conns, 100) < 0)
			die("zmq_poll");
		for (int i = 0; i < o->conns; i++) {
			zmq_msg_t m;
			if (!(items[i].revents & ZMQ_POLLIN))
				continue;
			zmq_msg_init(&m);
			/* Frame 1: event (uint16) and value (uint32); frame 2: endpoint. */
			if (zmq_msg_recv(&m, mon[i], 0) >= 0 && zmq_msg_size(&m) >= 2) {
				uint16_t ev;
				memcpy(&ev, zmq_msg_data(&m), sizeof ev);
				if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && items[i].events) {
					items[i].events = 0; /* counted once; not polled again */
					ready++;
				}
			}
			while (zmq_msg_more(&m) && zmq_msg_recv(&m, mon[i], 0) >= 0)
				;
			zmq_msg_close(&m);
		}
	}
	for (int i = 0; i < o->conns; i++) {
		zmq_socket_monitor(s[i], NULL, 0);
		zmq_close(mon[i]);
	}
	free(mon);
	free(items);
	return ready;
}

static int cmd_trickle(void *ctx, const struct opts *o)
{
	void **s = calloc((size_t)o->conns, sizeof *s);
	unsigned char *body = payload(o->size);
	long total = (long)((double)o->conns * o->rate * o->secs), eagain = 0;
	double gap = 1.0 / ((double)o->conns * o->rate), t0, cpu0, cpu1, secs, ready_secs;
	int ready;

	if (o->size < STAMP_MIN) {
		fprintf(stderr, "zbench trickle: --size must be at least %d (sequence number and send time)\n",
			STAMP_MIN);
		exit(3);
	}
	zero_copy = 0; /* every message is numbered and stamped in the shared buffer */
	/* Each connection: its socket, a monitor's PAIR and libzmq's own end of it. */
	if (!s || zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, 3 * o->conns + 16))
		die("setup");
	t0 = now();
	ready = connect_all(ctx, s, o);
	ready_secs = now() - t0;
	if (ready < o->conns) {
		printf("{\"conns\":%d,\"ready\":%d,\"ready_secs\":%.3f,\"sent\":0,\"failed\":%ld}\n", o->conns,
		       ready, ready_secs, total);
		fprintf(stderr, "zbench trickle: %d of %d connections completed their handshake in %.0f s\n",
			ready, o->conns, o->timeout_secs);
		exit(2); /* without closing: lingering sockets would wait for peers that never came */
	}
	sleep_secs(o->settle_secs); /* let the last handshakes' traffic die down */
	cpu0 = o->watch_pid ? proc_cpu(o->watch_pid) : -1;
	t0 = now();
	for (long i = 0; i < total; i++) {
		double ahead = t0 + (double)i * gap - now();
		if (ahead > 0.0005)
			sleep_secs(ahead);
		put_u64(body, o->size, SEQ_OFF, SEQ_MIN, (uint64_t)i);
		put_u64(body, o->size, STAMP_OFF, STAMP_MIN, now_ns());
		if (send_const(s[i % o->conns], body, o->size, ZMQ_DONTWAIT) < 0)
			eagain++;
	}
	secs = now() - t0;
	cpu1 = o->watch_pid ? proc_cpu(o->watch_pid) : -1;
	printf("{\"conns\":%d,\"ready\":%d,\"ready_secs\":%.3f,\"sent\":%ld,\"failed\":%ld,"
	       "\"secs\":%.3f,\"watch_cpu_pct\":%.2f}\n",
	       o->conns, ready, ready_secs, total - eagain, eagain, secs,
	       cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) / secs * 100 : -1.0);
	fflush(stdout);
	for (int i = 0; i < o->conns; i++)
		zmq_close(s[i]);
	zmq_ctx_term(ctx);
	free(s);
	free(body);
	return eagain ? 2 : 0;
}

__attribute__((noreturn)) static void usage(void)
{
	fputs("usage: zbench pull|push|rep|req|idle|trickle|version [options]\n"
	      "  --bind EP | --connect EP   libzmq endpoint (idle: tcp://IPV4:PORT)\n"
	      "  --count N --size S --header H --warmup W --timeout-secs T\n"
	      "  --verify 0|1|2 --unordered 1 --stamps 1 --pickles K\n"
	      "  --conns N --sources K --hold-secs T --rate R --secs T --settle-secs W --watch-pid P\n"
	      "  --zero-copy 1\n"
	      "(see the comment at the top of tests/bench/zbench.c)\n",
	      stderr);
	exit(3);
}

int main(int argc, char **argv)
{
	struct opts o = { .count = 0, .size = 64, .warmup = 100, .conns = 1, .sources = 1,
			  .rate = 1, .secs = 1, .hold_secs = 3600, .settle_secs = 0.5, .timeout_secs = 30, .verify = 1 };
	const char *cmd = argc > 1 ? argv[1] : "";
	void *ctx;
	int rc;

	for (int i = 2; i < argc; i += 2) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (!strcmp(k, "--bind")) o.bind = v;
		else if (!strcmp(k, "--connect")) o.connect = v;
		else if (!strcmp(k, "--count")) o.count = atol(v);
		else if (!strcmp(k, "--size")) o.size = (size_t)atol(v), o.size_set = 1;
		else if (!strcmp(k, "--header")) o.header = (size_t)atol(v);
		else if (!strcmp(k, "--warmup")) o.warmup = atol(v);
		else if (!strcmp(k, "--conns")) o.conns = atoi(v);
		else if (!strcmp(k, "--sources")) o.sources = atoi(v);
		else if (!strcmp(k, "--rate")) o.rate = atof(v);
		else if (!strcmp(k, "--secs")) o.secs = atof(v);
		else if (!strcmp(k, "--hold-secs")) o.hold_secs = atof(v);
		else if (!strcmp(k, "--settle-secs")) o.settle_secs = atof(v);
		else if (!strcmp(k, "--timeout-secs")) o.timeout_secs = atof(v);
		else if (!strcmp(k, "--watch-pid")) o.watch_pid = atol(v);
		else if (!strcmp(k, "--zero-copy")) zero_copy = atoi(v);
		else if (!strcmp(k, "--verify")) o.verify = atoi(v);
		else if (!strcmp(k, "--unordered")) o.unordered = atoi(v);
		else if (!strcmp(k, "--stamps")) o.stamps = atoi(v);
		else if (!strcmp(k, "--pickles")) o.pickles = atol(v);
		else usage();
	}
	if (o.count < 0 || o.warmup < 0 || o.conns < 1 || o.sources < 1 || o.sources > 254 ||
	    o.rate <= 0 || o.secs <= 0 || o.timeout_secs <= 0 || o.verify < 0 || o.verify > 2 ||
	    o.pickles < 0)
		usage();
	if (o.stamps)
		o.unordered = 1; /* stamped messages come from many senders */
	raise_nofile();
	if (!strcmp(cmd, "version")) {
		int ma, mi, pa;
		zmq_version(&ma, &mi, &pa);
		printf("%d.%d.%d\n", ma, mi, pa);
		return 0;
	}
	if (!strcmp(cmd, "idle") && o.connect)
		return cmd_idle(&o);
	if (!(ctx = zmq_ctx_new()))
		die("zmq_ctx_new");
	if (!strcmp(cmd, "pull") && o.bind && o.count > 0) rc = cmd_pull(ctx, &o);
	else if (!strcmp(cmd, "push") && o.connect && o.count > 0) return cmd_push(ctx, &o);
	else if (!strcmp(cmd, "rep") && o.bind) rc = cmd_rep(ctx, &o);
	else if (!strcmp(cmd, "req") && o.connect && o.count > 0) rc = cmd_req(ctx, &o);
	else if (!strcmp(cmd, "trickle") && o.connect) return cmd_trickle(ctx, &o);
	else usage();
	zmq_ctx_term(ctx);
	return rc;
}
