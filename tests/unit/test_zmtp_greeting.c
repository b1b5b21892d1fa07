/* test_zmtp_greeting: table-driven tests of the ZMTP greeting check
 * (zmtp_greeting_check in src/zmtp.c).
 *
 * Links only the module under test. Every greeting case is checked at every
 * prefix length 0..64 and in a longer buffer; prefixes are copied into
 * exactly sized heap buffers so a sanitizer build catches any read past the
 * bytes the check was shown. The frame decoder is in test_zmtp_decoder.c,
 * handshake and command bodies in test_zmtp_commands.c. Exit status is
 * nonzero on any failure; the last line is "N passed, M failed". */
#include "zmtpfw/zmtp.h"

#include "zmtp_test_util.h"

/* Table rows run, for the summary. */
static unsigned long n_greet;

/* ------------------------------------------------------------------ greeting */

static const char mechs_null[1][ZMTP_MECH_LEN] = {"NULL"};
static const char mechs_plain[1][ZMTP_MECH_LEN] = {"PLAIN"};
static const char mechs_null_plain[2][ZMTP_MECH_LEN] = {"NULL", "PLAIN"};

#define WHY_V1 "unversioned peer (ZMTP 1.0 signature)"
#define WHY_SIG9 "bad signature byte 9 (ZMTP 1.0 or garbage)"
#define WHY_REV_LOW "ZMTP revision below 3 refused"
#define WHY_REV_UNK "unknown ZMTP revision"
#define WHY_MINOR "unknown ZMTP minor version"
#define WHY_MECH "mechanism not allowed"
#define WHY_SERVER "bad as-server byte"
#define WHY_FILLER "non-zero greeting filler"

/* What libzmq 4.3 sends for a NULL socket without a routing id. */
static void greeting_real(uint8_t g[ZMTP_GREETING_LEN])
{
	memset(g, 0, ZMTP_GREETING_LEN);
	g[0] = 0xFF;
	g[8] = 0x01; /* big-endian routing-id length + 1 */
	g[9] = 0x7F;
	g[10] = 3;
	g[11] = 1;
	memcpy(g + 12, "NULL", 4);
	g[32] = 0;
}

/* Check g at every prefix 0..64 (and a longer buffer): OK up to and including
 * `bad_at` bytes, then ERR with `why` for every longer prefix. bad_at < 0
 * means the whole greeting is acceptable. */
static void greeting_expect(const char *label, const uint8_t g[ZMTP_GREETING_LEN],
			    const char (*mechs)[ZMTP_MECH_LEN], size_t n_mechs, int bad_at,
			    const char *why)
{
	uint8_t *copy;
	const char *got_why;
	enum zmtp_result whole_r;
	const char *whole_why = NULL;

	n_greet++;
	whole_r = zmtp_greeting_check(g, ZMTP_GREETING_LEN, mechs, n_mechs, &whole_why);
	for (size_t have = 0; have <= ZMTP_GREETING_LEN; have++) {
		/* An exact-size copy: reading g[have] would be a sanitizer hit. */
		copy = xmalloc(have);
		memcpy(copy, g, have);
		got_why = NULL;
		enum zmtp_result r = zmtp_greeting_check(copy, have, mechs, n_mechs, &got_why);
		free(copy);
		bool want_ok = bad_at < 0 || have <= (size_t)bad_at;
		if (want_ok)
			CHECK(r == ZMTP_OK, "greeting %s: prefix %zu: got %d (%s), want OK", label,
			      have, r, str_or(got_why));
		else
			CHECK(r == ZMTP_ERR && str_eq(got_why, why),
			      "greeting %s: prefix %zu: got %d (%s), want ERR (%s)", label, have, r,
			      str_or(got_why), why);
		/* Monotonic: a prefix that fails fails the whole, a prefix of an
		 * acceptable greeting is acceptable, with the same reason. */
		if (r == ZMTP_ERR)
			CHECK(whole_r == ZMTP_ERR && str_eq(whole_why, got_why),
			      "greeting %s: prefix %zu fails (%s) but whole gives %d (%s)", label,
			      have, str_or(got_why), whole_r, str_or(whole_why));
		if (whole_r == ZMTP_OK)
			CHECK(r == ZMTP_OK, "greeting %s: whole OK but prefix %zu fails", label, have);
	}
	/* Bytes after the greeting are not the greeting's business. */
	uint8_t longer[ZMTP_GREETING_LEN + 16];
	memcpy(longer, g, ZMTP_GREETING_LEN);
	memset(longer + ZMTP_GREETING_LEN, 0xEE, 16);
	got_why = NULL;
	enum zmtp_result r = zmtp_greeting_check(longer, sizeof(longer), mechs, n_mechs, &got_why);
	CHECK(r == whole_r && (r == ZMTP_OK || str_eq(got_why, whole_why)),
	      "greeting %s: 80-byte buffer gives %d (%s), 64 bytes gave %d", label, r,
	      str_or(got_why), whole_r);
}

static void greeting_byte(const char *label, size_t off, uint8_t val, int bad_at, const char *why)
{
	uint8_t g[ZMTP_GREETING_LEN];
	char name[96];

	greeting_real(g);
	g[off] = val;
	snprintf(name, sizeof(name), "%s (byte %zu = 0x%02x)", label, off, val);
	greeting_expect(name, g, mechs_null, 1, bad_at, why);
}

static void greeting_mech(const char *label, const void *mech, size_t mech_len,
			  const char (*mechs)[ZMTP_MECH_LEN], size_t n_mechs, int bad_at,
			  const char *why)
{
	uint8_t g[ZMTP_GREETING_LEN];

	greeting_real(g);
	memset(g + 12, 0, ZMTP_MECH_LEN);
	memcpy(g + 12, mech, mech_len);
	greeting_expect(label, g, mechs, n_mechs, bad_at, why);
}

static void test_greeting(void)
{
	uint8_t g[ZMTP_GREETING_LEN];

	greeting_real(g);
	greeting_expect("libzmq 4.3 NULL", g, mechs_null, 1, -1, NULL);
	greeting_expect("libzmq 4.3 NULL, NULL+PLAIN allowed", g, mechs_null_plain, 2, -1, NULL);
	greeting_expect("NULL greeting, only PLAIN allowed", g, mechs_plain, 1, 12, WHY_MECH);
	greeting_expect("NULL greeting, nothing allowed", g, NULL, 0, 12, WHY_MECH);

	/* Padding is ignored by libzmq whatever it holds. */
	for (size_t off = 1; off <= 8; off++) {
		greeting_byte("padding", off, 0xFF, -1, NULL);
		greeting_byte("padding", off, 0x00, -1, NULL);
		greeting_byte("padding", off, 0x7F, -1, NULL);
	}

	/* Signature. ZMTP 1.0: [len=1][flags=0] for an anonymous peer. */
	greeting_byte("ZMTP 1.0", 0, 0x01, 0, WHY_V1);
	greeting_byte("byte0", 0, 0x00, 0, WHY_V1);
	greeting_byte("byte0", 0, 0xFE, 0, WHY_V1);
	greeting_byte("byte0", 0, 0x7F, 0, WHY_V1);
	greeting_byte("byte9", 9, 0x7E, 9, WHY_SIG9);
	greeting_byte("byte9", 9, 0x00, 9, WHY_SIG9);
	greeting_byte("byte9", 9, 0xFF, 9, WHY_SIG9);
	greeting_byte("byte9", 9, 0x01, 9, WHY_SIG9);

	/* Revision: only 3. */
	greeting_byte("revision", 10, 0, 10, WHY_REV_LOW);
	greeting_byte("revision (ZMTP 2.0)", 10, 1, 10, WHY_REV_LOW);
	greeting_byte("revision", 10, 2, 10, WHY_REV_LOW);
	greeting_byte("revision", 10, 4, 10, WHY_REV_UNK);
	greeting_byte("revision", 10, 0xFF, 10, WHY_REV_UNK);

	/* Minor: 0 (3.0) and 1 (3.1). */
	greeting_byte("minor", 11, 0, -1, NULL);
	greeting_byte("minor", 11, 1, -1, NULL);
	greeting_byte("minor", 11, 2, 11, WHY_MINOR);
	greeting_byte("minor", 11, 0xFF, 11, WHY_MINOR);

	/* Mechanism: 20 bytes compared exactly. */
	greeting_mech("PLAIN, only NULL allowed", "PLAIN", 5, mechs_null, 1, 12, WHY_MECH);
	greeting_mech("CURVE, only NULL allowed", "CURVE", 5, mechs_null, 1, 12, WHY_MECH);
	greeting_mech("\"NULL \", only NULL allowed", "NULL ", 5, mechs_null, 1, 16, WHY_MECH);
	greeting_mech("\"NUL\", only NULL allowed", "NUL", 3, mechs_null, 1, 15, WHY_MECH);
	greeting_mech("\"null\", only NULL allowed", "null", 4, mechs_null, 1, 12, WHY_MECH);
	greeting_mech("NULL+garbage at byte 31", "NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0X", 20,
		      mechs_null, 1, 31, WHY_MECH);
	greeting_mech("20 x 'A'", "AAAAAAAAAAAAAAAAAAAA", 20, mechs_null, 1, 12, WHY_MECH);
	greeting_mech("PLAIN, NULL+PLAIN allowed", "PLAIN", 5, mechs_null_plain, 2, -1, NULL);
	greeting_mech("PLAIN, PLAIN allowed", "PLAIN", 5, mechs_plain, 1, -1, NULL);
	greeting_mech("PLAINX, NULL+PLAIN allowed", "PLAINX", 6, mechs_null_plain, 2, 17, WHY_MECH);
	greeting_mech("PLAI, NULL+PLAIN allowed", "PLAI", 4, mechs_null_plain, 2, 16, WHY_MECH);
	greeting_mech("CURVE, NULL+PLAIN allowed", "CURVE", 5, mechs_null_plain, 2, 12, WHY_MECH);
	/* "NU" matches NULL so far, then a byte matching neither entry. */
	greeting_mech("NUX, NULL+PLAIN allowed", "NUX", 3, mechs_null_plain, 2, 14, WHY_MECH);

	/* as-server */
	greeting_byte("as-server", 32, 1, -1, NULL);
	greeting_byte("as-server", 32, 2, 32, WHY_SERVER);
	greeting_byte("as-server", 32, 0xFF, 32, WHY_SERVER);

	/* Filler: every offset. */
	for (size_t off = 33; off < ZMTP_GREETING_LEN; off++) {
		greeting_byte("filler", off, 0x01, (int)off, WHY_FILLER);
		greeting_byte("filler", off, 0xFF, (int)off, WHY_FILLER);
	}

	/* The first bad byte decides the reason, whatever follows. */
	greeting_real(g);
	g[10] = 2;
	g[11] = 9;
	g[12] = 'X';
	g[40] = 1;
	greeting_expect("rev 2 + minor 9 + bad mech + filler", g, mechs_null, 1, 10, WHY_REV_LOW);
	greeting_real(g);
	g[9] = 0;
	g[10] = 0;
	greeting_expect("ZMTP 1.0 long-form", g, mechs_null, 1, 9, WHY_SIG9);
}

int main(void)
{
	test_greeting();
	printf("cases: %lu greetings (each at every prefix 0..64)\n", n_greet);
	printf("%lu passed, %lu failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
