/* Unit tests for cidr: parse (good and bad), format round trip, match. */
#include "zmtpfw/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "unit_check.h"

/* Good inputs and their canonical text (what cidr_format prints). */
static const struct {
	const char *in;
	const char *fmt;
	unsigned prefix; /* in the 128-bit space */
} good[] = {
	{ "10.0.0.0/8", "10.0.0.0/8", 104 },
	{ "10.1.2.3", "10.1.2.3/32", 128 },
	{ "10.1.2.3/32", "10.1.2.3/32", 128 },
	{ "0.0.0.0/0", "0.0.0.0/0", 96 },
	{ "192.168.1.0/24", "192.168.1.0/24", 120 },
	{ "172.16.0.0/12", "172.16.0.0/12", 108 },
	{ "255.255.255.255", "255.255.255.255/32", 128 },
	{ "128.0.0.0/1", "128.0.0.0/1", 97 },
	{ "127.0.0.0/8", "127.0.0.0/8", 104 },
	{ "::1", "::1/128", 128 },
	{ "::1/128", "::1/128", 128 },
	{ "::/0", "::/0", 0 },
	{ "fe80::/10", "fe80::/10", 10 },
	{ "2001:db8::/32", "2001:db8::/32", 32 },
	{ "2001:DB8:0:0:0:0:0:0/32", "2001:db8::/32", 32 },
	{ "2001:db8::1", "2001:db8::1/128", 128 },
	{ "8000::/1", "8000::/1", 1 },
	{ "fd00:1:2:3:4:5:6:7", "fd00:1:2:3:4:5:6:7/128", 128 },
	/* Written as mapped v6: the same rule as the IPv4 form. */
	{ "::ffff:10.0.0.0/104", "10.0.0.0/8", 104 },
	{ "::ffff:0:0/96", "0.0.0.0/0", 96 },
	{ "::ffff:1.2.3.4", "1.2.3.4/32", 128 },
	{ "::fffe:0:0/95", "::fffe:0:0/95", 95 },
};

static const struct {
	const char *in;
	const char *err;
} bad[] = {
	{ "", "empty" },
	{ " ", "whitespace" },
	{ "10.0.0.0/8 ", "whitespace" },
	{ " 10.0.0.0/8", "whitespace" },
	{ "10.0.0.0 /8", "whitespace" },
	{ "10.0.0.0/\t8", "whitespace" },
	{ "10.0.0.0\n", "whitespace" },
	{ "10.0.0.1/8", "host bits set" },
	{ "11.0.0.0/7", "host bits set" },
	{ "10.0.0.128/24", "host bits set" },
	{ "0.0.0.1/0", "host bits set" },
	{ "::1/127", "host bits set" },
	{ "::1/0", "host bits set" },
	{ "fe80::1/64", "host bits set" },
	{ "::ffff:0:0/95", "host bits set" }, /* bit 95 is the last bit of ffff */
	{ "10.0.0.0/33", "out of range" },
	{ "10.0.0.0/999", "out of range" },
	{ "::/129", "out of range" },
	{ "10.0.0.0/1000", "bad prefix" },
	{ "10.0.0.0/", "bad prefix" },
	{ "10.0.0.0/-1", "bad prefix" },
	{ "10.0.0.0/+8", "bad prefix" },
	{ "10.0.0.0/08", "bad prefix" },
	{ "10.0.0.0/8/8", "bad prefix" },
	{ "10.0.0.0/0x8", "bad prefix" },
	{ "10.0.0.0/8a", "bad prefix" },
	{ "/8", "bad address" },
	{ "/", "bad address" },
	{ "10.0.0", "bad address" },
	{ "10.1", "bad address" },
	{ "10.0.0.256", "bad address" },
	{ "010.0.0.0/8", "bad address" },
	{ "0x0a.0.0.0/8", "bad address" },
	{ "10.0.0.0.0", "bad address" },
	{ "localhost", "bad address" },
	{ "*", "bad address" },
	{ "junk", "bad address" },
	{ "fe80::1%eth0", "bad address" },
	{ "[::1]", "bad address" },
	{ "1:2:3:4:5:6:7:8:9", "bad address" },
	{ ":::", "bad address" },
	{ "0000:0000:0000:0000:0000:0000:0000:0000:0000/0", "bad address" },
	{ "10.0.0.0,10.0.0.1", "bad address" },
};

/* rule, peer address (v4 or v6 text, v6 may be mapped), expected match */
static const struct {
	const char *rule;
	const char *peer;
	bool v6sock; /* present a v4 peer as ::ffff:a.b.c.d on an AF_INET6 socket */
	bool match;
} matches[] = {
	{ "10.0.0.0/8", "10.1.2.3", false, true },
	{ "10.0.0.0/8", "10.1.2.3", true, true },
	{ "10.0.0.0/8", "11.0.0.0", false, false },
	{ "10.0.0.0/8", "11.0.0.0", true, false },
	{ "10.0.0.0/8", "9.255.255.255", false, false },
	{ "10.0.0.0/8", "10.255.255.255", false, true },
	{ "10.1.2.3", "10.1.2.3", false, true },
	{ "10.1.2.3", "10.1.2.4", false, false },
	{ "10.1.2.3/32", "10.1.2.3", true, true },
	{ "0.0.0.0/0", "1.2.3.4", false, true },
	{ "0.0.0.0/0", "255.255.255.255", true, true },
	{ "0.0.0.0/0", "::1", false, false },
	{ "0.0.0.0/0", "2001:db8::1", false, false },
	{ "128.0.0.0/1", "127.255.255.255", false, false },
	{ "128.0.0.0/1", "128.0.0.0", false, true },
	{ "172.16.0.0/12", "172.31.255.255", false, true },
	{ "172.16.0.0/12", "172.32.0.0", false, false },
	{ "::/0", "2001:db8::1", false, true },
	{ "::/0", "::1", false, true },
	{ "::/0", "10.0.0.1", false, true }, /* documented: ::/0 is everyone */
	{ "::/0", "10.0.0.1", true, true },
	{ "::1", "::1", false, true },
	{ "::1/128", "::2", false, false },
	{ "::1", "127.0.0.1", false, false },
	{ "127.0.0.0/8", "::1", false, false },
	{ "fe80::/10", "fe80::1", false, true },
	{ "fe80::/10", "febf:ffff::1", false, true },
	{ "fe80::/10", "fec0::1", false, false },
	{ "2001:db8::/32", "2001:db8:ffff::1", false, true },
	{ "2001:db8::/32", "2001:db9::1", false, false },
	{ "8000::/1", "7fff::1", false, false },
	{ "8000::/1", "8000::", false, true },
	/* ::ffff:0:0/96 in v6 form is the IPv4 space */
	{ "::ffff:0:0/96", "8.8.8.8", false, true },
	{ "::ffff:0:0/96", "2001:db8::1", false, false },
	/* IPv4-compatible (deprecated ::a.b.c.d) is not IPv4 */
	{ "10.0.0.0/8", "::10.0.0.1", false, false },
};

/* Build a sockaddr for text; v6sock presents IPv4 as mapped IPv6. */
static const struct sockaddr *mk_sa(const char *text, bool v6sock, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	struct in_addr a4;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &a4) == 1) {
		if (v6sock) {
			in6->sin6_family = AF_INET6;
			in6->sin6_addr.s6_addr[10] = 0xff;
			in6->sin6_addr.s6_addr[11] = 0xff;
			memcpy(&in6->sin6_addr.s6_addr[12], &a4, 4);
		} else {
			in->sin_family = AF_INET;
			in->sin_addr = a4;
			in->sin_port = htons(1234);
		}
		return (const struct sockaddr *)ss;
	}
	if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(1234);
		return (const struct sockaddr *)ss;
	}
	return NULL;
}

static void test_good(void)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct cidr c, c2;
		const char *err = NULL;
		char buf[64];
		int rc = cidr_parse(good[i].in, &c, &err);
		CHECK(rc == 0, "parse '%s': %s", good[i].in, err ? err : "?");
		if (rc != 0)
			continue;
		CHECK(c.prefix == good[i].prefix, "'%s': prefix %u want %u", good[i].in, c.prefix,
		      good[i].prefix);
		cidr_format(&c, buf, sizeof(buf));
		CHECK(strcmp(buf, good[i].fmt) == 0, "'%s': format '%s' want '%s'", good[i].in, buf,
		      good[i].fmt);
		rc = cidr_parse(buf, &c2, &err);
		CHECK(rc == 0 && memcmp(&c, &c2, sizeof(c)) == 0, "'%s': round trip via '%s'",
		      good[i].in, buf);
	}
}

static void test_bad(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cidr c = { .prefix = 77 };
		const char *err = NULL;
		int rc = cidr_parse(bad[i].in, &c, &err);
		CHECK(rc == -1, "'%s' parsed, want error", bad[i].in);
		CHECK(err != NULL && strstr(err, bad[i].err) != NULL, "'%s': error '%s' want '%s'",
		      bad[i].in, err ? err : "(null)", bad[i].err);
		CHECK(c.prefix == 77, "'%s': output written on error", bad[i].in);
	}
	{
		struct cidr c;
		const char *err = NULL;
		CHECK(cidr_parse(NULL, &c, &err) == -1 && err && strcmp(err, "empty") == 0,
		      "NULL input");
	}
}

static void test_match(void)
{
	for (size_t i = 0; i < sizeof(matches) / sizeof(matches[0]); i++) {
		struct cidr c;
		struct sockaddr_storage ss;
		const char *err;
		const struct sockaddr *sa = mk_sa(matches[i].peer, matches[i].v6sock, &ss);
		if (cidr_parse(matches[i].rule, &c, &err) != 0 || sa == NULL) {
			CHECK(0, "bad test row %zu", i);
			continue;
		}
		CHECK(cidr_match(&c, sa) == matches[i].match, "%s vs %s%s: want %s", matches[i].rule,
		      matches[i].peer, matches[i].v6sock ? " (mapped)" : "",
		      matches[i].match ? "match" : "no match");
	}
}

static void test_list_and_edges(void)
{
	struct cidr rules[2];
	struct cidr_list l = { rules, 2 }, empty = { NULL, 0 };
	struct sockaddr_storage ss;
	const char *err;
	struct sockaddr sa_unix = { .sa_family = AF_UNIX };
	char buf[64];

	CHECK(cidr_parse("10.0.0.0/8", &rules[0], &err) == 0, "parse");
	CHECK(cidr_parse("::1", &rules[1], &err) == 0, "parse");
	CHECK(cidr_list_match(&l, mk_sa("10.9.9.9", false, &ss)), "list v4");
	CHECK(cidr_list_match(&l, mk_sa("10.9.9.9", true, &ss)), "list mapped");
	CHECK(cidr_list_match(&l, mk_sa("::1", false, &ss)), "list v6");
	CHECK(!cidr_list_match(&l, mk_sa("127.0.0.1", false, &ss)), "list miss");
	CHECK(!cidr_list_match(&empty, mk_sa("10.9.9.9", false, &ss)), "empty list admits nobody");
	CHECK(!cidr_list_match(NULL, mk_sa("10.9.9.9", false, &ss)), "NULL list");
	CHECK(!cidr_list_match(&l, NULL), "NULL sockaddr");
	CHECK(!cidr_match(&rules[0], NULL), "NULL sockaddr");
	CHECK(cidr_parse("::/0", &rules[0], &err) == 0, "parse");
	CHECK(!cidr_match(&rules[0], &sa_unix), "AF_UNIX never matches, even ::/0");

	/* Formatting into small buffers truncates but stays terminated. */
	CHECK(cidr_parse("192.168.100.0/24", &rules[0], &err) == 0, "parse");
	memset(buf, 'x', sizeof(buf));
	cidr_format(&rules[0], buf, 5);
	CHECK(strcmp(buf, "192.") == 0 && buf[5] == 'x', "truncated format '%s'", buf);
	cidr_format(&rules[0], buf, 0); /* must not write */
	CHECK(buf[5] == 'x', "len 0 wrote");
	/* The longest possible text fits 64 bytes. */
	CHECK(cidr_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &rules[0], &err) == 0, "parse");
	cidr_format(&rules[0], buf, sizeof(buf));
	CHECK(strcmp(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128") == 0, "long '%s'", buf);
	/* A corrupt rule fails closed. */
	rules[0].prefix = 200;
	CHECK(!cidr_match(&rules[0], mk_sa("::1", false, &ss)), "corrupt prefix matched");
	cidr_format(&rules[0], buf, sizeof(buf));
	CHECK(strcmp(buf, "?") == 0, "corrupt format '%s'", buf);
}

/* Every prefix length of both families: parse, round trip, and the first
 * address outside the network must not match. */
static void test_all_prefixes(void)
{
	int bad_rows = 0;
	for (unsigned fam = 0; fam < 2; fam++) {
		unsigned max = fam ? 128 : 32;
		for (unsigned p = 0; p <= max; p++) {
			char in[64], out[64];
			struct cidr c, c2;
			const char *err;
			snprintf(in, sizeof(in), fam ? "::/%u" : "0.0.0.0/%u", p);
			if (cidr_parse(in, &c, &err) != 0) {
				bad_rows++;
				continue;
			}
			cidr_format(&c, out, sizeof(out));
			if (strcmp(in, out) != 0 || cidr_parse(out, &c2, &err) != 0 ||
			    memcmp(&c, &c2, sizeof(c)) != 0)
				bad_rows++;
		}
	}
	CHECK(bad_rows == 0, "%d prefix rows failed", bad_rows);
}

int main(void)
{
	test_good();
	test_bad();
	test_match();
	test_list_and_edges();
	test_all_prefixes();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
