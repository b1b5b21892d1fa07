/* zmtp_test_util.h: what the unit tests of the pure ZMTP parser (src/zmtp.c)
 * share: the pass/fail counters and CHECK, string helpers, xmalloc.
 * Included by test_zmtp_greeting.c, test_zmtp_decoder.c and
 * test_zmtp_commands.c, each its own executable with its own counters. */
#ifndef ZMTPFW_TESTS_ZMTP_TEST_UTIL_H
#define ZMTPFW_TESTS_ZMTP_TEST_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long n_pass, n_fail;

static inline void fail_msg(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline void fail_msg(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	n_fail++;
	if (n_fail > 200)
		return; /* one broken invariant can fail thousands of feeds */
	fprintf(stderr, "FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

#define CHECK(cond, ...)                                        \
	do {                                                    \
		if (cond)                                       \
			n_pass++;                               \
		else                                            \
			fail_msg(__FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

static inline const char *str_or(const char *s)
{
	return s ? s : "(null)";
}

static inline bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static inline void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		perror("malloc");
		exit(2);
	}
	return p;
}

#endif
