/* pickle_policy: a route's allowlist of globals (the pickle_globals key)
 * and the verdict it gives the imports of a frame. Pure: no I/O.
 *
 * An entry is "module:qualname" exactly as find_class() receives it, or
 * "@profile" (pickle_profiles.h). Entries are matched exactly: no
 * wildcards, no prefixes, and a dotted qualname only matches when listed
 * as such. What can never be allowed is refused when the list is built
 * (ppolicy_add), so `zmtpfw -t` reports it with FILE:LINE:
 *  - the gadgets of shared/ENGINES.md, by module with any dotted part
 *    (os.path:join falls under os);
 *  - builtins other than plain data types (getattr is the exception: the
 *    scanner accepts it only in the shape CPython 3.11.0-3.11.6 pickles
 *    Enum members with, and _operator:or_ only over such members);
 *  - names with a part starting "__", "<locals>", anything not an
 *    identifier path, Python 2 alias modules (fix_imports renames them). */
#ifndef ZMTPFW_PICKLE_POLICY_H
#define ZMTPFW_PICKLE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zmtpfw/pickle_scan.h"

struct ppolicy; /* sorted, deduplicated entries; immutable once built */

struct ppolicy *ppolicy_new(void) __attribute__((warn_unused_result));
/* Reference counted (one thread): ppolicy_ref for each holder beyond the
 * config snapshot, ppolicy_free drops one and frees at the last. */
const struct ppolicy *ppolicy_ref(const struct ppolicy *p);
void ppolicy_free(const struct ppolicy *p);

/* Add one entry ("@name" adds a profile, recursively). Returns 0, or -1
 * with a message in err ("refused: ..."). */
int ppolicy_add(struct ppolicy *p, const char *entry, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Comma-separated entries, as `zmtpfw scan --globals` takes them (blanks
 * around entries ignored). Returns 0, or -1 with a message in err. */
int ppolicy_add_list(struct ppolicy *p, const char *list, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Why "module:qualname" can never be allowed, or NULL. The reason is a
 * static string. For `zmtpfw learn`, which leaves such imports out. */
const char *ppolicy_refusal(const char *module, size_t ml, const char *name, size_t nl);

size_t ppolicy_count(const struct ppolicy *p);
const char *ppolicy_entry(const struct ppolicy *p, size_t i); /* sorted */

/* Is this import allowed? proto is the protocol in force: below 3 a
 * Python 2 alias module would be renamed by fix_imports, so never. */
bool ppolicy_allows(const struct ppolicy *p, const uint8_t *module, size_t ml,
		    const uint8_t *name, size_t nl, uint8_t proto);

/* ---- judging one frame --------------------------------------------------- */

#define PPOLICY_GLOBALS_MAX 32   /* imports listed in a drop line */
#define PPOLICY_TEXT_MAX 2048    /* bytes for their names */

/* What a frame's imports amount to under a policy. */
struct ppolicy_verdict {
	bool bad;             /* an import not allowed, unknown, or a shape */
	const char *shape;    /* first shape event, or NULL */
	uint32_t n;           /* entries in text: distinct refused imports */
	uint32_t used;        /* bytes of text used */
	uint32_t first;       /* offset in text of the first refused import */
	bool more;            /* more than fit were refused */
	char text[PPOLICY_TEXT_MAX]; /* NUL-separated "module:qualname" or
					"unknown" */
};

void ppolicy_verdict_init(struct ppolicy_verdict *v);

/* The pscan_import_fn body: judge one import or shape event, set
 * imp->allowed, record what was refused. p may be NULL (every import is
 * refused: learn mode with `pickle_globals = [ ];` has an empty p). */
void ppolicy_judge(const struct ppolicy *p, struct ppolicy_verdict *v, struct pscan_import *imp);

/* The i-th refused import's text (i < v->n). */
const char *ppolicy_verdict_global(const struct ppolicy_verdict *v, uint32_t i);

#endif
