/* pickle_profiles: the "@name" lists of globals shipped with zmtpfw, for
 * the route key pickle_globals. Pure data, no I/O.
 *
 * Each entry is "module:qualname" exactly as find_class() receives it
 * (protocol >= 3 spelling, never a Python 2 alias), or "@other" to include
 * another profile. Every entry carries where it comes from (the engine
 * source file and class, or the CPython/numpy/torch reduce function that
 * emits it), so a reviewer can check the list line by line. */
#ifndef ZMTPFW_PICKLE_PROFILES_H
#define ZMTPFW_PICKLE_PROFILES_H

#include <stddef.h>

struct pprof_entry {
	const char *global; /* "module:qualname" or "@profile" */
	const char *source; /* why it is there: file, class, reduce function */
};

struct pprof {
	const char *name;    /* without '@': "sglang", "torch", ... */
	const char *summary; /* one line: what traffic it covers */
	const struct pprof_entry *v;
	size_t n;
};

/* The profile called name (without '@'), or NULL. */
const struct pprof *pprof_find(const char *name);

/* Every shipped profile, in a stable order. */
const struct pprof *pprof_all(size_t *n);

#endif
