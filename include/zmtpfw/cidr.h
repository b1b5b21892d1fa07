/* cidr: parse and match IPv4/IPv6 CIDR allowlists. Pure: no libevent, no I/O. */
#ifndef ZMTPFW_CIDR_H
#define ZMTPFW_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One rule. IPv4 rules are stored as IPv4-mapped IPv6 (::ffff:a.b.c.d/96+len)
 * so a single 128-bit compare serves both families and mapped peers match
 * IPv4 rules without a special case. */
struct cidr {
	uint8_t addr[16]; /* network address, host bits cleared */
	uint8_t prefix;   /* 0..128, in the 128-bit space */
};

/* A bounded list of rules; owned by the config snapshot. */
struct cidr_list {
	struct cidr *v; /* rules (malloc'd at config load) */
	size_t n;       /* number of rules; 0 admits nobody */
};

/* Parse "a.b.c.d", "a.b.c.d/n", "v6", "v6/n". A bare address is a host rule.
 * Host bits set under the prefix ("10.0.0.1/8") are an error: it is almost
 * always a typo, and silently widening an allowlist is not acceptable.
 * Returns 0, or -1 with a static message in *err. */
int cidr_parse(const char *s, struct cidr *out, const char **err)
	__attribute__((warn_unused_result));

/* Does the socket address (AF_INET, AF_INET6 incl. ::ffff:0:0/96) match? */
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);

/* Format a rule back to text ("10.0.0.0/8", "::1/128") for logs. */
void cidr_format(const struct cidr *c, char *buf, size_t len);

#endif
