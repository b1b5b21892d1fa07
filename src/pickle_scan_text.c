/* pickle_scan_text: parsing the text arguments of protocol 0 opcodes (INT,
 * LONG, FLOAT, GET, PUT; STRING and UNICODE values) and UTF-8 validation
 * the way CPython does (glibc strtol, PyLong_FromString,
 * PyOS_string_to_double, PyUnicode_DecodeUTF8). Apart from the opcode state
 * machine (pickle_scan.c), which decides what a parsed line means, because
 * this mirrors C library parsing, not the unpickler. Collecting the line is
 * inline in pickle_scan_int.h: pscan_feed runs it for every line. */
#include "pickle_scan_int.h"

#include <stddef.h>
#include <string.h>

/* ---- text argument parsing --------------------------------------------- */

static unsigned ps_digit(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	return 99;
}

/* Leading whitespace and sign: strtol() and PyLong_FromString() both skip
 * them. Returns the index after them. */
static size_t ps_lead(const uint8_t *b, size_t n, bool *neg)
{
	size_t i = 0;
	while (i < n && ps_space(b[i]))
		i++;
	*neg = i < n && b[i] == '-';
	return i < n && (b[i] == '+' || b[i] == '-') ? i + 1 : i;
}

/* glibc strtol(s, &end, 0) followed by load_int's test "*end is '\n' or
 * '\0'". b[0..n) is the line up to its terminator. */
bool pscan_text_strtol_ok(const uint8_t *b, size_t n)
{
	bool neg;
	size_t i = ps_lead(b, n, &neg);
	if (n == 0)
		return true; /* no digits, end == s == "\0": taken as 0 */
	if (i < n && b[i] >= 0x80)
		return true; /* isspace() of a high byte depends on the locale */
	unsigned base = 10;
	if (i < n && b[i] == '0') {
		if (i + 2 < n && (b[i + 1] | 0x20) == 'x' && ps_digit(b[i + 2]) < 16) {
			base = 16;
			i += 2;
		} else {
			base = 8;
		}
	}
	size_t start = i;
	uint64_t mag = 0;
	bool ovf = false;
	for (; i < n; i++) {
		unsigned d = ps_digit(b[i]);
		if (d >= base)
			break;
		if (mag > (UINT64_MAX - d) / base)
			ovf = true;
		else
			mag = mag * base + d;
	}
	if (i == start || i != n)
		return false;
	/* ERANGE makes CPython fall back to PyLong_FromString. */
	return !ovf && mag <= (neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1);
}

/* PyLong_FromString(s, NULL, base) for base 0 or 10. On success stores
 * the magnitude (saturated at UINT64_MAX) and sign. */
bool pscan_text_pylong(const uint8_t *b, size_t n, unsigned base,
		      uint64_t *val, bool *neg)
{
	bool old_octal = false, ng, nonzero = false;
	size_t i = ps_lead(b, n, &ng);
	uint8_t c0 = i < n ? b[i] : 0;
	uint8_t c1 = i + 1 < n ? (uint8_t)(b[i + 1] | 0x20) : 0;
	if (base == 0) {
		if (c0 != '0')
			base = 10;
		else if (c1 == 'x')
			base = 16;
		else if (c1 == 'o')
			base = 8;
		else if (c1 == 'b')
			base = 2;
		else {
			base = 10; /* "0..." only valid if the value is zero */
			old_octal = true;
		}
	}
	if (c0 == '0' && ((base == 16 && c1 == 'x') || (base == 8 && c1 == 'o') ||
			  (base == 2 && c1 == 'b'))) {
		i += 2;
		if (i < n && b[i] == '_')
			i++; /* one underscore allowed after the prefix */
	}
	if (i < n && b[i] == '_')
		return false;
	size_t digits = 0;
	uint8_t prev = 0;
	uint64_t v = 0;
	for (; i < n; i++) {
		uint8_t c = b[i];
		if (c == '_') {
			if (prev == '_')
				return false;
		} else {
			unsigned d = ps_digit(c);
			if (d >= base)
				break;
			digits++;
			nonzero |= d != 0;
			v = v > (UINT64_MAX - d) / base ? UINT64_MAX : v * base + d;
		}
		prev = c;
	}
	if (prev == '_' || digits == 0 || (old_octal && nonzero))
		return false;
	while (i < n && ps_space(b[i]))
		i++;
	if (i != n)
		return false;
	if (val)
		*val = v;
	if (neg)
		*neg = ng && nonzero;
	return true;
}

/* PyOS_string_to_double() must consume the whole line. A superset: leading
 * spaces and overflowing exponents are accepted here although CPython
 * rejects them. */
bool pscan_text_float_ok(const uint8_t *b, size_t n)
{
	bool neg;
	size_t i = ps_lead(b, n, &neg), d = 0;
	if (n - i >= 3 && n - i <= 8) { /* inf, infinity, nan in any case */
		char w[9] = { 0 };
		for (size_t j = i; j < n; j++)
			w[j - i] = (char)(b[j] | 0x20);
		if (!strcmp(w, "inf") || !strcmp(w, "infinity") || !strcmp(w, "nan"))
			return true;
	}
	for (; i < n && b[i] >= '0' && b[i] <= '9'; i++)
		d++;
	if (i < n && b[i] == '.')
		for (i++; i < n && b[i] >= '0' && b[i] <= '9'; i++)
			d++;
	if (d == 0)
		return false;
	if (i < n && (b[i] | 0x20) == 'e') {
		size_t e = 0;
		i++;
		if (i < n && (b[i] == '+' || b[i] == '-'))
			i++;
		for (; i < n && b[i] >= '0' && b[i] <= '9'; i++)
			e++;
		if (e == 0)
			return false;
	}
	return i == n;
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* Strict UTF-8 as CPython decodes it: no overlongs, no surrogates, nothing
 * above U+10FFFF. Once bad, the caller stops feeding. */
static void ps_utf8(struct pscan *s, uint8_t c)
{
	if (s->u8_need) {
		bool ok = c >= s->u8_lo && c <= s->u8_hi;
		s->bad |= !ok;
		s->u8_need = ok ? (uint8_t)(s->u8_need - 1) : 0;
		s->u8_lo = 0x80;
		s->u8_hi = 0xBF;
		return;
	}
	if (c < 0x80)
		return;
	s->bad |= c < 0xC2 || c > 0xF4;
	s->u8_need = c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
	s->u8_lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
	s->u8_hi = c == 0xED && !s->u8_surr ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
}

/* Validate UTF-8 bytes, ASCII words at a time. */
void pscan_text_utf8_bytes(struct pscan *s, const uint8_t *b, size_t k)
{
	size_t i = 0;
	while (i < k && !s->bad) {
		if (s->u8_need == 0) {
			while (i + 8 <= k) {
				uint64_t w;
				memcpy(&w, b + i, 8);
				if (w & 0x8080808080808080u)
					break;
				i += 8;
			}
			if (i == k)
				break;
		}
		ps_utf8(s, b[i++]);
	}
}

/* ---- string values (collect mode) -------------------------------------- */

/* A str value whose bytes are b[0..n): known when it is plain ASCII without
 * a backslash (UNICODE's raw-unicode-escape and STRING's escape decoding
 * then change nothing). */
struct ps_ref pscan_text_plain_str(struct pscan *s, const uint8_t *b, uint64_t n)
{
	if (n > PSCAN_NAME_MAX)
		return ps_noref;
	for (uint64_t i = 0; i < n; i++)
		if (b[i] >= 0x80 || b[i] == '\\')
			return ps_noref;
	return ps_store(s->nm, b, n);
}
