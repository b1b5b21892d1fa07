/* mpscan_driver: run the msgpack walker over frames, for tests and triage.
 *
 *   mpscan_driver [FILE]        walk FILE (or stdin) as one frame
 *   mpscan_driver --hexlines    one hex-encoded frame per stdin line
 *
 * Prints one line per frame:
 *   MSGPACK <payloads>          payloads: "-" or a comma-separated list of
 *   NOT_MSGPACK <why>@<offset>  TYPE:HEX, TYPE being B (bin), 1 or 2 (ext)
 *   TOO_DEEP
 * Every frame is also fed byte by byte (with empty calls in between) and in
 * three random sets of chunks; if any feed gives a different line (payload
 * bytes, verdict, reason, offset) the line is "MISMATCH <whole> | <other>"
 * instead. Used by tests/scanner/msgpack_difftest.py. */
#include "zmtpfw/msgpack_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

struct out {
	char *s;
	size_t n, cap;
};

static void out_add(struct out *o, const char *s, size_t k)
{
	if (o->n + k + 1 > o->cap) {
		o->cap = (o->n + k + 1) * 2;
		o->s = realloc(o->s, o->cap);
		if (!o->s) {
			perror("realloc");
			exit(2);
		}
	}
	memcpy(o->s + o->n, s, k);
	o->n += k;
	o->s[o->n] = '\0';
}

static void out_str(struct out *o, const char *s)
{
	out_add(o, s, strlen(s));
}

/* Walk f[0..len) in chunks of the sizes the chunker picks: mode 0 whole,
 * 1 byte by byte with empty calls, 2 random chunks. */
static void walk(const uint8_t *f, size_t len, int mode, struct out *o)
{
	static const char hex[] = "0123456789abcdef";
	struct mpscan m;
	struct mpscan_ev ev;
	struct out pay = {0};
	size_t off = 0;
	bool empty = false;
	char tmp[160];

	o->n = 0;
	mpscan_init(&m, len);
	for (;;) {
		size_t n = len - off;
		if (mode == 1)
			n = empty ? 0 : (n ? 1 : 0);
		else if (mode == 2 && n > 0)
			n = rnd() % 3 == 0 ? 0 : 1 + rnd() % n;
		empty = !empty;
		size_t used = mpscan_step(&m, f + off, n, &ev);
		off += used;
		switch (ev.kind) {
		case MPSCAN_EV_NEED_MORE:
			if (off == len && mode == 0) {
				out_str(o, "STUCK");
				free(pay.s);
				return;
			}
			continue;
		case MPSCAN_EV_PAYLOAD:
			if (pay.n)
				out_str(&pay, ",");
			if (ev.ext_type == MPSCAN_BIN)
				out_str(&pay, "B:");
			else {
				snprintf(tmp, sizeof(tmp), "%d:", ev.ext_type);
				out_str(&pay, tmp);
			}
			continue;
		case MPSCAN_EV_BYTES:
			for (size_t i = 0; i < ev.n; i++) {
				char h[2] = {hex[ev.p[i] >> 4], hex[ev.p[i] & 15]};
				out_add(&pay, h, 2);
			}
			continue;
		case MPSCAN_EV_PAYLOAD_END:
			continue;
		case MPSCAN_EV_MSGPACK:
			out_str(o, "MSGPACK ");
			out_str(o, pay.n ? pay.s : "-");
			break;
		case MPSCAN_EV_NOT_MSGPACK:
			snprintf(tmp, sizeof(tmp), "NOT_MSGPACK %s@%zu", ev.why, off);
			out_str(o, tmp);
			break;
		case MPSCAN_EV_TOO_DEEP:
			out_str(o, "TOO_DEEP");
			break;
		}
		break;
	}
	free(pay.s);
}

static void run(const uint8_t *f, size_t len)
{
	static struct out whole, other;

	walk(f, len, 0, &whole);
	for (int k = 0; k < 4; k++) {
		walk(f, len, k == 0 ? 1 : 2, &other);
		if (strcmp(whole.s, other.s) != 0) {
			printf("MISMATCH %s | %s\n", whole.s, other.s);
			return;
		}
	}
	printf("%s\n", whole.s);
}

static int unhex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int main(int argc, char **argv)
{
	size_t cap = 1 << 16, n = 0;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return 2;

	if (argc == 2 && strcmp(argv[1], "--hexlines") == 0) {
		char *line = NULL;
		size_t lcap = 0;
		ssize_t k;
		while ((k = getline(&line, &lcap, stdin)) >= 0) {
			while (k > 0 && (line[k - 1] == '\n' || line[k - 1] == '\r'))
				k--;
			if ((size_t)k / 2 > cap) {
				cap = (size_t)k / 2;
				buf = realloc(buf, cap);
				if (!buf)
					return 2;
			}
			n = 0;
			for (ssize_t i = 0; i + 1 < k; i += 2) {
				int hi = unhex(line[i]), lo = unhex(line[i + 1]);
				if (hi < 0 || lo < 0) {
					fprintf(stderr, "mpscan_driver: bad hex\n");
					return 2;
				}
				buf[n++] = (uint8_t)(hi << 4 | lo);
			}
			run(buf, n);
		}
		free(line);
		fflush(stdout);
		free(buf);
		return 0;
	}
	FILE *in = stdin;
	if (argc == 2 && !(in = fopen(argv[1], "rb"))) {
		perror(argv[1]);
		return 2;
	}
	for (;;) {
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				return 2;
		}
		size_t k = fread(buf + n, 1, cap - n, in);
		if (k == 0)
			break;
		n += k;
	}
	run(buf, n);
	free(buf);
	return 0;
}
