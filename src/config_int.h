/* config_int.h: what the three files of the config module share, beneath
 * the public config.h and config_kw.h. Each file calls only the ones
 * below it:
 *
 *   config.c        the file as a whole: libconfig 1.5 guards, the routes
 *                   list, cross-route checks, command-line flags, free
 *   config_kw.c     the keyword table: which keys exist where, and for
 *                   each its reader, bounds, default and reload flag
 *   config_value.c  readers of one libconfig setting (integer in bounds,
 *                   boolean, enum name, address, CIDR list, name set) and
 *                   the FILE:LINE error reporting they all use
 *
 * Nothing outside src/config*.c includes this header or libconfig. */
#ifndef ZMTPFW_CONFIG_INT_H
#define ZMTPFW_CONFIG_INT_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zmtpfw/config.h"
#include "zmtpfw/config_kw.h"

/* ---- config_value.c ---- */

/* Where error messages go and how they are prefixed. */
struct cfg_ctx {
	const char *path; /* file being loaded; NULL for flags (no prefix) */
	char *err;        /* caller's buffer, may be NULL */
	size_t errlen;
};

/* "PATH:LINE: message" (flags: just "message") into the caller's buffer.
 * Both return -1, so callers can "return cfg_fail(...)". cfg_fail takes
 * the line of a setting; file-level errors (no setting, or the root) are
 * reported on line 1. */
int cfg_fail_at(struct cfg_ctx *x, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int cfg_fail(struct cfg_ctx *x, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Same listening socket (address, port, v6 scope)? */
bool cfg_addr_same(const struct config_addr *a, const struct config_addr *b);
/* Could not both listen: same port and address, or a wildcard covering
 * the other (0.0.0.0 all of IPv4, [::] everything). */
bool cfg_addr_overlap(const struct config_addr *a, const struct config_addr *b);

/* "an integer", "a group { }", ... for "expected X, got Y". */
const char *cfg_type_name(const config_setting_t *s);

/* The readers: 0 (or the enum index), or -1 with the message written.
 * Each names the setting and its line. */
int cfg_string(struct cfg_ctx *x, const config_setting_t *s, const char **out);
int cfg_bool(struct cfg_ctx *x, const config_setting_t *s, bool *out);
/* Integer in [min, max]; why (may be NULL) is appended to the range
 * error, for bounds that need a reason. */
int cfg_uint(struct cfg_ctx *x, const config_setting_t *s, uint64_t min, uint64_t max,
	     const char *why, uint64_t *out);
/* A string from a NULL-terminated set: its index, or -1. */
int cfg_enum(struct cfg_ctx *x, const config_setting_t *s, const char *const *names);
/* Array [ ] or list ( ) whose elements are all strings. */
int cfg_strarray(struct cfg_ctx *x, const config_setting_t *s);
int cfg_cidrs(struct cfg_ctx *x, const config_setting_t *s, struct cidr_list *out);
int cfg_addr(struct cfg_ctx *x, const config_setting_t *s, bool allow_unix,
	     struct config_addr *out);
/* A non-empty set of distinct names from valid into the fixed-width,
 * NUL-padded slots dst[max][width]; unknown words the refusal. */
int cfg_names(struct cfg_ctx *x, const config_setting_t *s, const char *const *valid,
	      const char *unknown, char *dst, size_t width, size_t max, size_t *count);

/* ---- config_kw.c ---- */

/* What a walk over one group saw. */
struct cfg_walk {
	uint64_t seen;                  /* bit i: table row i was set */
	const config_setting_t *routes; /* top level: the routes list, left to config.c */
};

/* Every table default of a scope into base (struct config for the top,
 * log and metrics scopes, struct config_route for routes); the rest of
 * base is left as it is (zero from calloc or memset). */
void cfg_kw_defaults(enum config_scope scope, void *base);

/* Each setting of group g: its row in scope, parsed into base. Unknown
 * keys fail listing the scope's keys; groups (log, metrics) are walked
 * in turn and checked for their required keys. */
int cfg_kw_walk(struct cfg_ctx *x, const config_setting_t *g, enum config_scope scope,
		void *base, struct cfg_walk *w) __attribute__((warn_unused_result));

/* The first required key of scope the walk did not see, or NULL; *hint
 * says how to write it when absence has a tempting meaning. */
const char *cfg_kw_missing(enum config_scope scope, const struct cfg_walk *w, const char **hint);

#endif
