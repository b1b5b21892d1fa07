/* zbench: the libzmq peers of tests/bench/run.sh. One binary, one subcommand
 * per role; every measuring role prints one JSON line on stdout.
 *
 *   zbench pull    --bind EP --count N [--timeout-secs T]
 *   zbench push    --connect EP --size S --count N [--header H] [--zero-copy 1]
 *   zbench rep     --bind EP [--count N (default: until idle --timeout-secs)]
 *   zbench req     --connect EP --size S --count N [--warmup W]
 *   zbench idle    --connect EP --conns N [--sources K] [--hold-secs T]
 *   zbench trickle --connect EP --conns N --rate R --secs T [--size S] [--watch-pid P]
 *   zbench version
 *
 * pull times the first to the last message received: msg_per_s and mb_per_s
 * (MB = 10^6 bytes) count the N-1 messages after the first. push with
 * --header sends two-frame messages: an H-byte header and an S-byte tensor.
 * Payloads are JSON-looking ('{' first), so a pickle scanner passes them at
 * the first byte. Senders copy each message (zmq_send) unless --zero-copy 1.
 *
 * idle speaks ZMTP 3.1 NULL over raw TCP (greeting, READY as a PUSH, and
 * reads the peer's greeting and READY), so a relay holds full connections;
 * it prints its JSON once all are open, then holds them until killed or
 * --hold-secs. --sources K spreads them over source addresses 127.0.0.1..K.
 *
 * trickle opens N PUSH sockets and sends R messages per second on each,
 * spread evenly, for T seconds; --watch-pid reports that process's CPU use
 * (utime + stime) during the sending phase.
 *
 * Exit: 0 done, 2 timeout or lost messages, 3 usage or setup error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

struct opts {
	const char *bind, *connect; /* libzmq endpoints */
	long count;                 /* messages (pull, push, req) or 0 = unbounded (rep) */
	size_t size, header;        /* frame sizes; header 0 = single-frame messages */
	long warmup;                /* req: round trips not measured */
	int conns, sources;         /* idle, trickle */
	double rate, secs;          /* trickle: per connection msg/s, duration */
	double hold_secs;           /* idle */
	double timeout_secs;        /* longest wait for any one message */
	long watch_pid;             /* trickle: process whose CPU is reported */
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

static int cmd_pull(void *ctx, const struct opts *o)
{
	void *s = new_socket(ctx, ZMQ_PULL, o);
	long msgs = 0, frames = 0;
	uint64_t bytes = 0, first_bytes = 0;
	double t0 = 0, t1 = 0;
	zmq_msg_t m;

	zmq_msg_init(&m);
	while (msgs < o->count) {
		int more;
		if (zmq_msg_recv(&m, s, 0) < 0)
			break; /* EAGAIN: timeout */
		frames++;
		bytes += zmq_msg_size(&m);
		more = zmq_msg_more(&m);
		if (more)
			continue;
		t1 = now();
		if (msgs++ == 0) {
			t0 = t1;
			first_bytes = bytes;
		}
	}
	zmq_msg_close(&m);
	double secs = t1 - t0, d = secs > 0 ? secs : 1e-9;
	printf("{\"msgs\":%ld,\"frames\":%ld,\"bytes\":%llu,\"secs\":%.6f,"
	       "\"msg_per_s\":%.1f,\"mb_per_s\":%.2f,\"complete\":%s}\n",
	       msgs, frames, (unsigned long long)bytes, secs, msgs > 1 ? (double)(msgs - 1) / d : 0.0,
	       msgs > 1 ? (double)(bytes - first_bytes) / d / 1e6 : 0.0,
	       msgs == o->count ? "true" : "false");
	zmq_close(s);
	return msgs == o->count ? 0 : 2;
}

static int cmd_push(void *ctx, const struct opts *o)
{
	void *s = new_socket(ctx, ZMQ_PUSH, o);
	unsigned char *body = payload(o->size), *head = payload(o->header);
	double t0 = now();

	for (long i = 0; i < o->count; i++) {
		if ((o->header && send_const(s, head, o->header, ZMQ_SNDMORE) < 0) ||
		    send_const(s, body, o->size, 0) < 0) {
			fprintf(stderr, "zbench push: send %ld: %s\n", i, zmq_strerror(zmq_errno()));
			exit(2); /* without zmq_ctx_term: it would wait for the linger */
		}
	}
	zmq_close(s); /* lingers until everything is written */
	zmq_ctx_term(ctx);
	printf("{\"sent\":%ld,\"secs\":%.6f}\n", o->count, now() - t0);
	free(body);
	free(head);
	return 0;
}

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

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
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
		double t0 = now();
		int n;
		if (send_const(s, body, o->size, 0) < 0 ||
		    (n = zmq_recv(s, back, o->size + 1, 0)) < 0) {
			fprintf(stderr, "zbench req: round trip %ld: %s\n", i, zmq_strerror(zmq_errno()));
			goto out;
		}
		if ((size_t)n != o->size) {
			fprintf(stderr, "zbench req: reply of %d bytes, sent %zu\n", n, o->size);
			goto out;
		}
		if (i >= 0)
			sum += rtt[i] = (now() - t0) * 1e6;
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

/* utime + stime of a process, in seconds; -1 if unreadable. */
static double proc_cpu(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	FILE *f;
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	p = fgets(buf, sizeof buf, f);
	fclose(f);
	/* Fields after the ")" closing comm: state is 3rd, utime 14th, stime 15th. */
	if (!p || !(p = strrchr(buf, ')')) ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmd_trickle(void *ctx, const struct opts *o)
{
	void **s = calloc((size_t)o->conns, sizeof *s);
	unsigned char *body = payload(o->size);
	long total = (long)((double)o->conns * o->rate * o->secs), eagain = 0;
	double gap = 1.0 / ((double)o->conns * o->rate), t0, cpu0, cpu1, secs;

	if (!s || zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, o->conns + 16))
		die("setup");
	for (int i = 0; i < o->conns; i++)
		s[i] = new_socket(ctx, ZMQ_PUSH, o);
	sleep_secs(1.0); /* handshakes settle before the measured phase */
	cpu0 = o->watch_pid ? proc_cpu(o->watch_pid) : -1;
	t0 = now();
	for (long i = 0; i < total; i++) {
		double ahead = t0 + (double)i * gap - now();
		if (ahead > 0.0005)
			sleep_secs(ahead);
		if (send_const(s[i % o->conns], body, o->size, ZMQ_DONTWAIT) < 0)
			eagain++;
	}
	secs = now() - t0;
	cpu1 = o->watch_pid ? proc_cpu(o->watch_pid) : -1;
	printf("{\"conns\":%d,\"sent\":%ld,\"failed\":%ld,\"secs\":%.3f,\"watch_cpu_pct\":%.2f}\n",
	       o->conns, total - eagain, eagain, secs,
	       cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) / secs * 100 : -1.0);
	fflush(stdout);
	for (int i = 0; i < o->conns; i++)
		zmq_close(s[i]);
	zmq_ctx_term(ctx);
	free(s);
	free(body);
	return eagain ? 2 : 0;
}

static void usage(void)
{
	fputs("usage: zbench pull|push|rep|req|idle|trickle|version [options]\n"
	      "  --bind EP | --connect EP   libzmq endpoint (idle: tcp://IPV4:PORT)\n"
	      "  --count N --size S --header H --warmup W --timeout-secs T\n"
	      "  --conns N --sources K --hold-secs T --rate R --secs T --watch-pid P\n"
	      "  --zero-copy 1\n"
	      "(see the comment at the top of tests/bench/zbench.c)\n",
	      stderr);
	exit(3);
}

int main(int argc, char **argv)
{
	struct opts o = { .count = 0, .size = 64, .warmup = 100, .conns = 1, .sources = 1,
			  .rate = 1, .secs = 1, .hold_secs = 3600, .timeout_secs = 30 };
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
		else if (!strcmp(k, "--size")) o.size = (size_t)atol(v);
		else if (!strcmp(k, "--header")) o.header = (size_t)atol(v);
		else if (!strcmp(k, "--warmup")) o.warmup = atol(v);
		else if (!strcmp(k, "--conns")) o.conns = atoi(v);
		else if (!strcmp(k, "--sources")) o.sources = atoi(v);
		else if (!strcmp(k, "--rate")) o.rate = atof(v);
		else if (!strcmp(k, "--secs")) o.secs = atof(v);
		else if (!strcmp(k, "--hold-secs")) o.hold_secs = atof(v);
		else if (!strcmp(k, "--timeout-secs")) o.timeout_secs = atof(v);
		else if (!strcmp(k, "--watch-pid")) o.watch_pid = atol(v);
		else if (!strcmp(k, "--zero-copy")) zero_copy = atoi(v);
		else usage();
	}
	if (o.count < 0 || o.warmup < 0 || o.conns < 1 || o.sources < 1 || o.sources > 254 ||
	    o.rate <= 0 || o.secs <= 0 || o.timeout_secs <= 0)
		usage();
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
