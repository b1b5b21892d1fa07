/* Unit tests for pickle_profiles: lookup, shape of every entry, includes
 * that resolve without cycles, no duplicates, the Enum-shape exception only
 * where it belongs. (The data itself is checked against real pickles by
 * tests/e2e/test_profiles_data.py.) */
#include "zmtpfw/pickle_profiles.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "unit_check.h"

/* An identifier: [A-Za-z_][A-Za-z0-9_]*, n bytes. */
static bool ident(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* "module.sub:name": dotted identifiers, one colon, an undotted name, no
 * "__" anywhere. */
static bool well_formed(const char *g)
{
	const char *colon = strchr(g, ':');
	if (!colon || strchr(colon + 1, ':') || strstr(g, "__"))
		return false;
	if (!ident(colon + 1, strlen(colon + 1)))
		return false;
	const char *p = g;
	while (p < colon) {
		const char *dot = memchr(p, '.', (size_t)(colon - p));
		const char *end = dot ? dot : colon;
		if (!ident(p, (size_t)(end - p)))
			return false;
		p = end + 1;
	}
	return p == colon + 1;
}

/* Depth-first over includes; false on a cycle. */
static bool no_cycle(const struct pprof *p, int depth)
{
	if (depth > 8)
		return false;
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].global[0] != '@')
			continue;
		const struct pprof *q = pprof_find(p->v[i].global + 1);
		if (!q || !no_cycle(q, depth + 1))
			return false;
	}
	return true;
}

int main(void)
{
	size_t n = 0;
	const struct pprof *all = pprof_all(&n);
	CHECK(all != NULL && n == 5, "five profiles, got %zu", n);
	CHECK(pprof_all(NULL) == all, "pprof_all(NULL)");
	static const char *const names[] = { "sglang", "sarathi-serve", "vllm", "numpy", "torch" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct pprof *p = pprof_find(names[i]);
		CHECK(p != NULL && strcmp(p->name, names[i]) == 0, "pprof_find(%s)", names[i]);
	}
	CHECK(pprof_find("@sglang") == NULL, "names are given without '@'");
	CHECK(pprof_find("SGLANG") == NULL, "names are case-sensitive");
	CHECK(pprof_find("") == NULL && pprof_find(NULL) == NULL, "empty and NULL names");
	CHECK(pprof_find("sglang-") == NULL && pprof_find("sglan") == NULL, "exact names only");

	for (size_t i = 0; i < n; i++) {
		const struct pprof *p = &all[i];
		CHECK(p->summary && p->summary[0], "@%s has a summary", p->name);
		CHECK(p->n > 0 && p->v, "@%s is not empty", p->name);
		CHECK(no_cycle(p, 0), "@%s: includes resolve without a cycle", p->name);
		bool enum_ok = strcmp(p->name, "sglang") == 0 || strcmp(p->name, "sarathi-serve") == 0 ||
			       strcmp(p->name, "vllm") == 0;
		for (size_t j = 0; j < p->n; j++) {
			const char *g = p->v[j].global;
			CHECK(g && p->v[j].source && strlen(p->v[j].source) > 20, "@%s entry %zu has a source", p->name, j);
			if (g[0] == '@') {
				CHECK(pprof_find(g + 1) != NULL && strcmp(g + 1, p->name) != 0, "@%s includes %s", p->name, g);
				continue;
			}
			CHECK(well_formed(g), "@%s: %s is module:qualname", p->name, g);
			if (strncmp(g, "builtins:", 9) == 0 || strncmp(g, "_operator:", 10) == 0)
				CHECK(enum_ok && (strcmp(g, "builtins:getattr") == 0 || strcmp(g, "_operator:or_") == 0),
				      "@%s: %s (only the Enum shape, only in the engine profiles)", p->name, g);
			for (size_t k = j + 1; k < p->n; k++)
				CHECK(strcmp(g, p->v[k].global) != 0, "@%s lists %s twice", p->name, g);
		}
	}

	/* A few entries the scanner's nested rule depends on. */
	const struct pprof *t = pprof_find("torch");
	bool lfb = false, half = false;
	for (size_t j = 0; t && j < t->n; j++) {
		lfb |= strcmp(t->v[j].global, "torch.storage:_load_from_bytes") == 0;
		half |= strcmp(t->v[j].global, "torch:HalfStorage") == 0;
	}
	CHECK(lfb && half, "@torch has _load_from_bytes and the storage classes of its inner stream");

	printf("test_pickle_profiles: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
