/* cidr: parse, match and format IPv4/IPv6 allowlist rules.
 *
 * Every rule lives in the 128-bit IPv6 space; an IPv4 rule a.b.c.d/n is
 * stored as ::ffff:a.b.c.d/(96+n). Consequences, all deliberate:
 *   - an IPv4 peer and an IPv4-mapped IPv6 peer (::ffff:a.b.c.d, what a
 *     dual-stack socket reports) match the same IPv4 rules;
 *   - "0.0.0.0/0" is ::ffff:0:0/96: all IPv4 and mapped IPv4, no native v6;
 *   - a v6 rule whose prefix covers ::ffff:0:0/96 (e.g. "::/0") matches
 *     IPv4 peers too: "::/0" really means everyone.
 * Pure: no allocation, no I/O. */
#include "zmtpfw/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Longest text we accept for the address part: a full IPv6 address with an
 * embedded IPv4 tail is 45 characters. Anything longer is junk. */
#define CIDR_ADDR_MAX 46

static const uint8_t cidr_v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* True if any bit at position >= prefix is set in addr. */
static bool cidr_host_bits_set(const uint8_t addr[16], unsigned prefix)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned lo = i * 8; /* first bit index of this byte */
		uint8_t mask;
		if (lo + 8 <= prefix)
			continue;
		mask = lo >= prefix ? 0xff : (uint8_t)(0xff >> (prefix - lo));
		if (addr[i] & mask)
			return true;
	}
	return false;
}

/* Parse the decimal prefix length: 1-3 digits, no sign, no leading zero
 * (except "0"), so "/08" and "/+8" are rejected rather than guessed at. */
static int cidr_parse_prefix(const char *s, unsigned *out)
{
	unsigned v = 0;
	size_t n = strlen(s);
	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int cidr_parse(const char *s, struct cidr *out, const char **err)
{
	char addr[CIDR_ADDR_MAX];
	const char *slash;
	size_t alen;
	unsigned prefix, max;
	bool v4;
	struct cidr c;

	memset(&c, 0, sizeof(c));
	if (s == NULL || s[0] == '\0') {
		*err = "empty";
		return -1;
	}
	/* Whitespace is never part of an address; rejecting it (rather than
	 * trimming) keeps "10.0.0.0/8 " from meaning something surprising. */
	for (const char *p = s; *p; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f') {
			*err = "contains whitespace";
			return -1;
		}
	}
	slash = strchr(s, '/');
	alen = slash ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof(addr)) {
		*err = "bad address";
		return -1;
	}
	memcpy(addr, s, alen);
	addr[alen] = '\0';

	/* inet_pton is strict (dotted quad only, no "10.1", no octal), which is
	 * what an allowlist wants; getaddrinfo would accept inet_aton forms. */
	if (inet_pton(AF_INET, addr, &c.addr[12]) == 1) {
		v4 = true;
		memcpy(c.addr, cidr_v4mapped, sizeof(cidr_v4mapped));
		max = 32;
	} else if (inet_pton(AF_INET6, addr, c.addr) == 1) {
		v4 = false;
		max = 128;
	} else {
		*err = "bad address";
		return -1;
	}

	if (slash) {
		if (cidr_parse_prefix(slash + 1, &prefix) != 0) {
			*err = "bad prefix length";
			return -1;
		}
		if (prefix > max) {
			*err = "prefix length out of range";
			return -1;
		}
	} else {
		prefix = max; /* bare address: host rule */
	}
	if (v4)
		prefix += 96;
	if (cidr_host_bits_set(c.addr, prefix)) {
		*err = "host bits set";
		return -1;
	}
	c.prefix = (uint8_t)prefix;
	*out = c;
	return 0;
}

/* Bring a socket address into the 128-bit space; false for other families. */
static bool cidr_sa_to_v6(const struct sockaddr *sa, uint8_t out[16])
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(out, cidr_v4mapped, sizeof(cidr_v4mapped));
		memcpy(out + 12, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(out, &in6->sin6_addr, 16);
		return true;
	}
	return false;
}

static bool cidr_match_v6(const struct cidr *c, const uint8_t a[16])
{
	unsigned full = c->prefix / 8, rem = c->prefix % 8;
	if (c->prefix > 128) /* corrupt rule: fail closed */
		return false;
	if (memcmp(c->addr, a, full) != 0)
		return false;
	if (rem) {
		uint8_t mask = (uint8_t)(0xff << (8 - rem));
		if ((c->addr[full] ^ a[full]) & mask)
			return false;
	}
	return true;
}

bool cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	uint8_t a[16];
	if (c == NULL || !cidr_sa_to_v6(sa, a))
		return false;
	return cidr_match_v6(c, a);
}

bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	uint8_t a[16];
	if (l == NULL || !cidr_sa_to_v6(sa, a))
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (cidr_match_v6(&l->v[i], a))
			return true;
	return false;
}

void cidr_format(const struct cidr *c, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	if (buf == NULL || len == 0)
		return;
	if (c == NULL || c->prefix > 128) {
		snprintf(buf, len, "?");
		return;
	}
	/* A rule inside ::ffff:0:0/96 is an IPv4 rule, whichever way it was
	 * written: print it the way operators write it. */
	if (c->prefix >= 96 && memcmp(c->addr, cidr_v4mapped, sizeof(cidr_v4mapped)) == 0) {
		snprintf(buf, len, "%u.%u.%u.%u/%u", c->addr[12], c->addr[13], c->addr[14],
			 c->addr[15], c->prefix - 96u);
		return;
	}
	if (inet_ntop(AF_INET6, c->addr, a, sizeof(a)) == NULL) {
		snprintf(buf, len, "?");
		return;
	}
	snprintf(buf, len, "%s/%u", a, c->prefix);
}
