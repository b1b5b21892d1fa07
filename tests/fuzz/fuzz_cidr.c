/* fuzz_cidr: libFuzzer target for src/cidr.c.
 *
 * Input: the rule text up to the first NUL byte; the 16 bytes after it (zero
 * padded) are a peer address. For every input:
 *   - cidr_parse either fails with a message, or yields a rule with
 *     prefix <= 128, no host bits, that cidr_format prints back to text
 *     parsing to the identical rule;
 *   - the text is accepted only if it is what inet_pton(3) takes, with an
 *     optional canonical decimal prefix in range (independent model);
 *   - cidr_match agrees with a bit-by-bit reference on the peer address,
 *     given as AF_INET6, and for addresses inside ::ffff:0:0/96 also as the
 *     equivalent AF_INET (an IPv4 rule matches a dual-stack socket's
 *     v4-mapped peers and plain IPv4 peers alike);
 *   - the rule matches its own network address and its last address;
 *   - cidr_list_match over [junk rule..., rule] equals the single match, and
 *     an empty list or a non-IP family matches nothing.
 */
#include "zmtpfw/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static void die(const char *what, const char *in)
{
	fprintf(stderr, "fuzz_cidr: %s (input '%s')\n", what, in);
	abort();
}

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Reference: does the text parse, and to what? Written from the contract in
 * cidr.h, not from cidr.c. */
static int model_parse(const char *s, struct cidr *out)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max, prefix;
	uint8_t a[16] = {0};

	if (alen == 0 || alen >= sizeof(addr))
		return -1;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, a + 12) == 1) {
		memcpy(a, v4mapped, sizeof(v4mapped));
		max = 32;
	} else if (inet_pton(AF_INET6, addr, a) == 1) {
		max = 128;
	} else {
		return -1;
	}
	if (slash) {
		const char *p = slash + 1;
		size_t n = strlen(p);
		if (n == 0 || n > 3 || strspn(p, "0123456789") != n || (n > 1 && p[0] == '0'))
			return -1;
		prefix = (unsigned)atoi(p);
		if (prefix > max)
			return -1;
	} else {
		prefix = max;
	}
	if (max == 32)
		prefix += 96;
	for (unsigned b = prefix; b < 128; b++)
		if (a[b / 8] & (0x80 >> (b % 8)))
			return -1; /* host bits set */
	memcpy(out->addr, a, 16);
	out->prefix = (uint8_t)prefix;
	return 0;
}

static bool model_match(const struct cidr *c, const uint8_t a[16])
{
	for (unsigned b = 0; b < c->prefix; b++)
		if ((c->addr[b / 8] ^ a[b / 8]) & (0x80 >> (b % 8)))
			return false;
	return true;
}

static bool match_v6(const struct cidr *c, const uint8_t a[16])
{
	struct sockaddr_in6 sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_port = htons(5555);
	memcpy(&sa.sin6_addr, a, 16);
	return cidr_match(c, (const struct sockaddr *)&sa);
}

/* Every way of presenting address a must give the reference answer. */
static void check_match(const struct cidr *c, const uint8_t a[16], const char *in)
{
	bool want = model_match(c, a);

	if (match_v6(c, a) != want)
		die("AF_INET6 match differs from the reference", in);
	if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
		struct sockaddr_in s4;
		memset(&s4, 0, sizeof(s4));
		s4.sin_family = AF_INET;
		s4.sin_port = htons(5555);
		memcpy(&s4.sin_addr, a + 12, 4);
		if (cidr_match(c, (const struct sockaddr *)&s4) != want)
			die("AF_INET and v4-mapped AF_INET6 peers match differently", in);
	}

	/* In a list behind a rule that matches nothing useful (a host rule on
	 * an address that is not a). */
	struct cidr junk[2];
	const char *e;
	if (cidr_parse("2001:db8::dead/128", &junk[0], &e) != 0)
		abort();
	junk[1] = *c;
	struct cidr_list l = {.v = junk, .n = 2};
	struct sockaddr_in6 sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	memcpy(&sa.sin6_addr, a, 16);
	bool junk_hit = memcmp(a, junk[0].addr, 16) == 0;
	if (cidr_list_match(&l, (const struct sockaddr *)&sa) != (want || junk_hit))
		die("list match differs from the single match", in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[256], text[64];
	uint8_t peer[16] = {0};
	struct cidr c, c2, m;
	const char *err = NULL;

	/* The rule is the text up to the first NUL; the peer follows it. */
	const uint8_t *nul = memchr(data, 0, size);
	size_t tlen = nul ? (size_t)(nul - data) : size;
	if (nul) {
		size_t plen = size - tlen - 1;
		memcpy(peer, nul + 1, plen < 16 ? plen : 16);
	}
	/* Longer rules are junk to cidr_parse anyway; keep the copy bounded. */
	if (tlen >= sizeof(in))
		tlen = sizeof(in) - 1;
	memcpy(in, data, tlen);
	in[tlen] = '\0';

	int r = cidr_parse(in, &c, &err);
	int mr = model_parse(in, &m);
	if (r != 0) {
		if (err == NULL || err[0] == '\0')
			die("failure without a message", in);
		if (mr == 0)
			die("refused a rule the reference accepts", in);
		return 0;
	}
	if (mr != 0)
		die("accepted a rule the reference refuses", in);
	if (c.prefix != m.prefix || memcmp(c.addr, m.addr, 16) != 0)
		die("parsed to a different rule than the reference", in);
	if (c.prefix > 128)
		die("prefix > 128", in);

	cidr_format(&c, text, sizeof(text));
	err = NULL;
	if (cidr_parse(text, &c2, &err) != 0)
		die("formatted rule does not parse back", text);
	if (c.prefix != c2.prefix || memcmp(c.addr, c2.addr, sizeof(c.addr)) != 0)
		die("formatted rule parses to a different rule", text);
	/* Truncated formatting stays a string and never overruns. */
	char tiny[5];
	memset(tiny, 'x', sizeof(tiny));
	cidr_format(&c, tiny, sizeof(tiny));
	if (!memchr(tiny, 0, sizeof(tiny)))
		die("truncated format not terminated", in);

	/* First and last address of the network, and the fuzzed peer. */
	uint8_t last[16];
	memcpy(last, c.addr, 16);
	for (unsigned b = c.prefix; b < 128; b++)
		last[b / 8] |= (uint8_t)(0x80 >> (b % 8));
	if (!match_v6(&c, c.addr) || !match_v6(&c, last))
		die("rule does not match its own network", in);
	check_match(&c, c.addr, in);
	check_match(&c, last, in);
	check_match(&c, peer, in);
	/* The peer as an IPv4 address (v4-mapped), the shape most rules see. */
	uint8_t p4[16];
	memcpy(p4, v4mapped, 12);
	memcpy(p4 + 12, peer, 4);
	check_match(&c, p4, in);

	/* Nothing matches a non-IP family or an empty list. */
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	if (cidr_match(&c, (const struct sockaddr *)&un))
		die("AF_UNIX matched", in);
	struct cidr_list empty = {0};
	struct sockaddr_in6 sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	memcpy(&sa.sin6_addr, c.addr, 16);
	if (cidr_list_match(&empty, (const struct sockaddr *)&sa))
		die("empty list matched", in);
	return 0;
}
