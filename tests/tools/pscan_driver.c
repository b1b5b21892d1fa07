/* pscan_driver: run the pickle scanner over bytes, for tests and triage.
 *
 *   pscan_driver [--split K] [FILE]      scan FILE (or stdin) as one frame
 *   pscan_driver [--split K] --hexlines  one hex-encoded frame per stdin line
 *
 * Prints one line per frame: "PICKLE <reason> <offset>" or "CLEAN <reason>".
 * --split K feeds the scanner K bytes at a time (default: all at once). */
#include "zmtpfw/pickle_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void scan(const uint8_t *p, size_t n, size_t split)
{
	struct pscan_state st;
	size_t off = 0;

	pscan_init(&st);
	if (split == 0)
		split = n ? n : 1;
	while (off < n) {
		size_t k = n - off < split ? n - off : split;
		if (pscan_feed(&st, p + off, k) != PSCAN_NEED_MORE)
			break;
		off += k;
	}
	if (pscan_finish(&st) == PSCAN_PICKLE)
		printf("PICKLE %s %llu\n", pscan_reason(&st),
		       (unsigned long long)pscan_offset(&st));
	else
		printf("CLEAN %s\n", pscan_reason(&st));
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

static int run_hexlines(size_t split)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	while ((len = getline(&line, &cap, stdin)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		uint8_t *buf = malloc((size_t)len / 2 + 1);
		size_t n = 0;
		int ok = buf != NULL && len % 2 == 0;
		for (ssize_t i = 0; ok && i < len; i += 2) {
			int hi = hexval(line[i]), lo = hexval(line[i + 1]);
			if (hi < 0 || lo < 0)
				ok = 0;
			else
				buf[n++] = (uint8_t)(hi << 4 | lo);
		}
		if (ok)
			scan(buf, n, split);
		else
			printf("ERROR bad-hex\n");
		free(buf);
	}
	free(line);
	fflush(stdout);
	return 0;
}

static int run_file(const char *path, size_t split)
{
	FILE *f = path ? fopen(path, "rb") : stdin;
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;

	if (f == NULL) {
		perror(path);
		return 0;
	}
	for (;;) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 65536;
			uint8_t *nb = realloc(buf, ncap);
			if (nb == NULL) {
				fprintf(stderr, "out of memory\n");
				free(buf);
				return 0;
			}
			buf = nb;
			cap = ncap;
		}
		size_t k = fread(buf + n, 1, cap - n, f);
		if (k == 0)
			break;
		n += k;
	}
	if (path)
		fclose(f);
	scan(buf, n, split);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	size_t split = 0;
	int hexlines = 0;
	const char *path = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--split") == 0 && i + 1 < argc)
			split = (size_t)strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--hexlines") == 0)
			hexlines = 1;
		else
			path = argv[i];
	}
	return hexlines ? run_hexlines(split) : run_file(path, split);
}
