/* zreplay: a libzmq PUSH peer that replays a corpus of real-shaped frames,
 * for tests/bench/policy.sh (pickle_globals benchmark).
 *
 *   zreplay --connect EP --file FRAMES --count N
 *
 * FRAMES: each frame as a 4-byte little-endian length, then its bytes (the
 * format of tests/tools/inspect_driver). Sends N one-frame messages, the
 * corpus round-robin, then prints {"sent":N,"bytes":B,"secs":S}. The
 * receiving side is `zbench pull --verify 0 --count N`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *ep = NULL, *file = NULL;
	long count = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--connect")) ep = argv[i + 1];
		else if (!strcmp(argv[i], "--file")) file = argv[i + 1];
		else if (!strcmp(argv[i], "--count")) count = atol(argv[i + 1]);
	}
	FILE *f = file ? fopen(file, "rb") : NULL;
	if (!ep || !f || count <= 0) {
		fprintf(stderr, "usage: zreplay --connect EP --file FRAMES --count N\n");
		return 3;
	}
	size_t n = 0, cap = 0;
	unsigned char **p = NULL;
	uint32_t *len = NULL;
	unsigned char h[4];
	while (fread(h, 1, 4, f) == 4) {
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			p = realloc(p, cap * sizeof(*p));
			len = realloc(len, cap * sizeof(*len));
		}
		len[n] = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
		p[n] = malloc(len[n] ? len[n] : 1);
		if (fread(p[n], 1, len[n], f) != len[n])
			return 3;
		n++;
	}
	fclose(f);
	if (n == 0)
		return 3;
	void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_PUSH);
	int hwm = 10000;
	zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	if (zmq_connect(s, ep) != 0)
		return 3;
	double t0 = now();
	uint64_t bytes = 0;
	for (long i = 0; i < count; i++) {
		size_t k = (size_t)i % n;
		if (zmq_send(s, p[k], len[k], 0) < 0)
			return 2;
		bytes += len[k];
	}
	zmq_close(s); /* lingers until everything is written */
	zmq_ctx_term(ctx);
	printf("{\"sent\":%ld,\"bytes\":%llu,\"secs\":%.6f}\n", count, (unsigned long long)bytes, now() - t0);
	return 0;
}
