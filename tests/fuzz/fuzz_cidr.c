/* libFuzzer target for cidr_parse: any input either fails cleanly or yields a
 * rule whose cidr_format text parses back to the identical rule, with no host
 * bits set, and which matches its own network address. */
#include "zmtpfw/cidr.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[256], text[64];
	struct cidr c, c2;
	struct sockaddr_in6 sa;
	const char *err = NULL;

	/* Longer inputs are junk to cidr_parse anyway; keep the copy bounded. */
	if (size >= sizeof(in))
		size = sizeof(in) - 1;
	memcpy(in, data, size);
	in[size] = '\0';

	if (cidr_parse(in, &c, &err) != 0) {
		if (err == NULL)
			abort(); /* every failure carries a message */
		return 0;
	}
	if (c.prefix > 128)
		abort();
	cidr_format(&c, text, sizeof(text));
	if (cidr_parse(text, &c2, &err) != 0)
		abort();
	if (c.prefix != c2.prefix || memcmp(c.addr, c2.addr, sizeof(c.addr)) != 0)
		abort();

	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	memcpy(&sa.sin6_addr, c.addr, sizeof(c.addr));
	if (!cidr_match(&c, (const struct sockaddr *)&sa))
		abort();
	return 0;
}
