/* zmq_client: a real libzmq peer for the zmtpfw end-to-end tests.
 *
 *   zmq_client --connect tcp://127.0.0.1:PORT --type PUSH|REQ|DEALER
 *              [--count N] [--size S] [--multipart K]
 *              [--hexframe HEX]... [--timeout-ms T] [--source IP]
 *
 * Sends N messages of K frames. Without --hexframe, frame f of message n is
 * S bytes of deterministic JSON-looking text (never a pickle):
 *     {"n":<n>,"f":<f>,"p":"<filler>"}   filler[k] = 'a' + (n + f + k) % 26
 * (tests/e2e regenerates the same bytes to compare). With --hexframe (repeat
 * for several frames), every message is exactly those frames.
 *
 * REQ and DEALER wait for each reply and require it to equal the request
 * (the e2e workers echo). --source binds the outgoing connection to a local
 * address (libzmq's "tcp://SRC:0;DST" syntax).
 *
 * Exit: 0 done (and, for REQ/DEALER, every reply matched), 1 reply mismatch,
 * 2 timeout, 3 usage or libzmq error. One summary line on stdout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#define MAX_FRAMES 64

struct frame {
	unsigned char *p;
	size_t n;
};

__attribute__((noreturn)) static void usage(void)
{
	fprintf(stderr,
		"usage: zmq_client --connect EP --type PUSH|REQ|DEALER [--count N] [--size S]\n"
		"                  [--multipart K] [--hexframe HEX]... [--timeout-ms T] [--source IP]\n");
	exit(3);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int parse_hex(const char *s, struct frame *out)
{
	size_t len = strlen(s);
	if (len % 2)
		return -1;
	out->n = len / 2;
	out->p = malloc(out->n ? out->n : 1);
	if (!out->p)
		return -1;
	for (size_t i = 0; i < out->n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out->p[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* The generated frame (see header comment); returns -1 if size is too small. */
static int gen_frame(long n, int f, size_t size, struct frame *out)
{
	char head[64];
	int hl = snprintf(head, sizeof head, "{\"n\":%ld,\"f\":%d,\"p\":\"", n, f);
	if (hl < 0 || (size_t)hl + 2 > size)
		return -1;
	out->n = size;
	out->p = malloc(size);
	if (!out->p)
		return -1;
	memcpy(out->p, head, (size_t)hl);
	for (size_t k = 0; k < size - (size_t)hl - 2; k++)
		out->p[hl + k] = (unsigned char)('a' + (size_t)(n + f + (long)k) % 26);
	out->p[size - 2] = '"';
	out->p[size - 1] = '}';
	return 0;
}

static int fail_errno(const char *what)
{
	int e = zmq_errno();
	fprintf(stderr, "zmq_client: %s: %s\n", what, zmq_strerror(e));
	return e == EAGAIN ? 2 : 3;
}

int main(int argc, char **argv)
{
	const char *connect = NULL, *type = NULL, *source = NULL;
	long count = 1, timeout_ms = 10000;
	size_t size = 64;
	int multipart = 1;
	struct frame hexf[MAX_FRAMES];
	int n_hex = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(a, "--connect"))
			connect = v;
		else if (!strcmp(a, "--type"))
			type = v;
		else if (!strcmp(a, "--count"))
			count = strtol(v, NULL, 10);
		else if (!strcmp(a, "--size"))
			size = (size_t)strtoull(v, NULL, 10);
		else if (!strcmp(a, "--multipart"))
			multipart = atoi(v);
		else if (!strcmp(a, "--timeout-ms"))
			timeout_ms = strtol(v, NULL, 10);
		else if (!strcmp(a, "--source"))
			source = v;
		else if (!strcmp(a, "--hexframe")) {
			if (n_hex >= MAX_FRAMES || parse_hex(v, &hexf[n_hex]) != 0)
				usage();
			n_hex++;
		} else
			usage();
	}
	if (!connect || !type || count < 0 || multipart < 1 || multipart > MAX_FRAMES)
		usage();

	int zt, expect_reply = 0;
	if (!strcmp(type, "PUSH"))
		zt = ZMQ_PUSH;
	else if (!strcmp(type, "REQ"))
		zt = ZMQ_REQ, expect_reply = 1;
	else if (!strcmp(type, "DEALER"))
		zt = ZMQ_DEALER, expect_reply = 1;
	else
		usage();

	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, zt);
	if (!s)
		return fail_errno("zmq_socket");
	int to = (int)timeout_ms, linger = (int)timeout_ms;
	zmq_setsockopt(s, ZMQ_SNDTIMEO, &to, sizeof to);
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &to, sizeof to);
	/* PUSH: close waits (up to the timeout) until every message is on the wire. */
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);

	char ep[512];
	if (source && strncmp(connect, "tcp://", 6) == 0)
		snprintf(ep, sizeof ep, "tcp://%s:0;%s", source, connect + 6);
	else
		snprintf(ep, sizeof ep, "%s", connect);
	if (zmq_connect(s, ep) != 0)
		return fail_errno("zmq_connect");

	int nf = n_hex ? n_hex : multipart;
	int rc = 0;
	long sent = 0, replies = 0;
	for (long n = 0; n < count && rc == 0; n++) {
		struct frame fr[MAX_FRAMES];
		for (int f = 0; f < nf; f++) {
			if (n_hex)
				fr[f] = hexf[f];
			else if (gen_frame(n, f, size, &fr[f]) != 0) {
				fprintf(stderr, "zmq_client: --size too small\n");
				return 3;
			}
		}
		for (int f = 0; f < nf; f++) {
			if (zmq_send(s, fr[f].p, fr[f].n, f < nf - 1 ? ZMQ_SNDMORE : 0) < 0) {
				rc = fail_errno("zmq_send");
				break;
			}
		}
		if (rc == 0)
			sent++;
		if (rc == 0 && expect_reply) {
			for (int f = 0;; f++) {
				zmq_msg_t m;
				zmq_msg_init(&m);
				if (zmq_msg_recv(&m, s, 0) < 0) {
					rc = fail_errno("zmq_msg_recv");
					zmq_msg_close(&m);
					break;
				}
				int more = zmq_msg_more(&m);
				if (f >= nf || zmq_msg_size(&m) != fr[f].n ||
				    memcmp(zmq_msg_data(&m), fr[f].p, fr[f].n) != 0) {
					fprintf(stderr, "zmq_client: reply %ld frame %d differs from request\n", n, f);
					rc = 1;
				}
				zmq_msg_close(&m);
				if (!more) {
					if (rc == 0 && f != nf - 1) {
						fprintf(stderr, "zmq_client: reply %ld has %d frames, sent %d\n", n, f + 1, nf);
						rc = 1;
					}
					break;
				}
			}
			if (rc == 0)
				replies++;
		}
		if (!n_hex)
			for (int f = 0; f < nf; f++)
				free(fr[f].p);
	}
	printf("sent %ld replies %ld rc %d\n", sent, replies, rc);
	fflush(stdout);
	zmq_close(s);
	zmq_ctx_term(ctx);
	for (int i = 0; i < n_hex; i++)
		free(hexf[i].p);
	return rc;
}
