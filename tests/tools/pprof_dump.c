/* pprof_dump: print the shipped pickle_globals profiles, for tests.
 *
 *   pprof_dump            every profile, one entry per line:
 *                         profile<TAB>global<TAB>source
 *   pprof_dump NAME...    only those profiles (exit 1 if one is unknown)
 *   pprof_dump --summary  profile<TAB>count<TAB>summary
 *
 * Entries are printed as declared: "@other" includes are not expanded. */
#include "zmtpfw/pickle_profiles.h"

#include <stdio.h>
#include <string.h>

static void dump(const struct pprof *p)
{
	for (size_t i = 0; i < p->n; i++)
		printf("%s\t%s\t%s\n", p->name, p->v[i].global, p->v[i].source);
}

int main(int argc, char **argv)
{
	size_t n;
	const struct pprof *all = pprof_all(&n);
	if (argc == 2 && strcmp(argv[1], "--summary") == 0) {
		for (size_t i = 0; i < n; i++)
			printf("%s\t%zu\t%s\n", all[i].name, all[i].n, all[i].summary);
		return 0;
	}
	if (argc == 1) {
		for (size_t i = 0; i < n; i++)
			dump(&all[i]);
		return 0;
	}
	int rc = 0;
	for (int a = 1; a < argc; a++) {
		const char *name = argv[a][0] == '@' ? argv[a] + 1 : argv[a];
		const struct pprof *p = pprof_find(name);
		if (!p) {
			fprintf(stderr, "pprof_dump: no profile %s\n", argv[a]);
			rc = 1;
			continue;
		}
		dump(p);
	}
	return rc;
}
