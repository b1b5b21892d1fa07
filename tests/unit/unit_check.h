/* The unit tests' one check: counts passes and failures, prints each
 * failure with its place to stdout (test_log captures stderr). main ends
 * with a line of the counts and exits 1 on any failure. */
#ifndef ZMTPFW_UNIT_CHECK_H
#define ZMTPFW_UNIT_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                            \
	do {                                                        \
		if (cond) {                                         \
			passed++;                                   \
		} else {                                            \
			failed++;                                   \
			printf("FAIL %s:%d: ", __FILE__, __LINE__); \
			printf(__VA_ARGS__);                        \
			putchar('\n');                              \
		}                                                   \
	} while (0)

#endif
