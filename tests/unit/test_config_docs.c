/* Every key of the config keyword table (src/config_kw.c) is documented:
 * in conf/zmtpfw.conf as "key =" (commented out or not) and in the
 * README's configuration reference as `key` (`log.level` for a group's
 * keys). Fails naming each missing key. Run from the repository root. */
#include "zmtpfw/config_kw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;
	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t)n + 1)) == NULL ||
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		printf("FAIL cannot read %s\n", path);
		exit(1);
	}
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* "key =" with no identifier character just before it ("listen =" must
 * not be satisfied by "max_listen ="). */
static bool has_assignment(const char *text, const char *key)
{
	char want[96];
	snprintf(want, sizeof(want), "%s =", key);
	for (const char *p = strstr(text, want); p; p = strstr(p + 1, want)) {
		char b = p == text ? ' ' : p[-1];
		if (!(b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
		      (b >= '0' && b <= '9')))
			return true;
	}
	return false;
}

int main(void)
{
	char *conf = slurp("conf/zmtpfw.conf");
	char *readme = slurp("README.md");
	char *ref = strstr(readme, "\n## Configuration reference");
	char *end;
	struct config_kw_info kw;
	int missing = 0;
	size_t n = 0;

	if (ref == NULL) {
		printf("FAIL README.md has no '## Configuration reference' section\n");
		return 1;
	}
	if ((end = strstr(ref + 1, "\n## ")) != NULL)
		*end = '\0';
	for (size_t i = 0; config_kw_at(i, &kw); i++, n++) {
		char key[96];
		snprintf(key, sizeof(key), "`%s%s%s`", kw.group ? kw.group : "", kw.group ? "." : "",
			 kw.name);
		if (!has_assignment(conf, kw.name)) {
			printf("FAIL key %s is not in conf/zmtpfw.conf (want '%s =', commented "
			       "or not)\n", key, kw.name);
			missing++;
		}
		if (strstr(ref, key) == NULL) {
			printf("FAIL key %s is not in README.md's configuration reference\n", key);
			missing++;
		}
	}
	printf("%zu keys, %d missing\n", n, missing);
	free(conf);
	free(readme);
	return missing || n == 0 ? 1 : 0;
}
