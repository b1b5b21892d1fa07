/* Unit tests for pickle_policy (entries, refusals, matching) and for the
 * inspector that judges frames with it (inspect.c): every case is fed
 * whole, split in two at every point, and byte by byte, in deny mode and
 * under a policy; all runs must agree.
 *
 * The Enum vectors are CPython 3.11.2's own pickles of tests' enums
 * (module "tmod"): getattr(Color, "RED"), and or_ over a Flag. */
#include "zmtpfw/inspect.h"
#include "zmtpfw/pickle_policy.h"
#include "zmtpfw/pickle_profiles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit_check.h"

/* ---- entries --------------------------------------------------------------- */

struct entry_case {
	const char *entry;
	const char *refusal; /* substring of the error; NULL: accepted */
};

static const struct entry_case entries[] = {
	{ "collections:OrderedDict", NULL },
	{ "builtins:set", NULL },
	{ "builtins:getattr", NULL },
	{ "_operator:or_", NULL },
	{ "torch.storage:_load_from_bytes", NULL },
	{ "sglang.srt.managers.io_struct:TokenizedGenerateReqInput", NULL },
	{ "a.b:C.D", NULL },
	{ "os:system", "gadget module" },
	{ "os.path:join", "gadget module" },
	{ "posix:system", "gadget module" },
	{ "subprocess:Popen", "gadget module" },
	{ "builtins:eval", "not a plain data type" },
	{ "builtins:__import__", "__" },
	{ "builtins:object", "not a plain data type" },
	{ "builtins:setattr", "not a plain data type" },
	{ "__builtin__:set", "__" },
	{ "copy_reg:_reconstructor", "Python 2 alias" },
	{ "copyreg:_reconstructor", "gadget module" },
	{ "operator:attrgetter", "gadget module" },
	{ "_operator:attrgetter", "gadget module" },
	{ "functools:partial", "gadget module" },
	{ "importlib:import_module", "gadget module" },
	{ "pkgutil:resolve_name", "gadget module" },
	{ "pickle:loads", "gadget module" },
	{ "torch.serialization:load", "gadget module" },
	{ "torch:load", "gadget" },
	{ "torch._C:_foo", "gadget module" },
	{ "torch._tensor:_rebuild_from_type_v2", "gadget" },
	{ "numpy.testing:assert_equal", "gadget module" },
	{ "types:FunctionType", "gadget module" },
	{ "marshal:loads", "gadget module" },
	{ "tmod:Cls.__init__", "__" },
	{ "tmod:f.<locals>.g", "<locals>" },
	{ "tmod:*", "wildcard" },
	{ "tmod:", "empty name" },
	{ "torch", "expected \"module:qualname\"" },
	{ "a:b:c", "expected \"module:qualname\"" },
	{ "a..b:c", "empty dotted part" },
	{ "a:1b", "not an identifier" },
	{ "@no-such-profile", "unknown profile" },
};

static void test_entries(void)
{
	char err[256];
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
		struct ppolicy *p = ppolicy_new();
		err[0] = '\0';
		int rc = ppolicy_add(p, entries[i].entry, err, sizeof(err));
		if (entries[i].refusal == NULL)
			CHECK(rc == 0 && ppolicy_count(p) == 1, "%s: refused: %s", entries[i].entry, err);
		else
			CHECK(rc != 0 && strstr(err, entries[i].refusal), "%s: want \"%s\", got \"%s\"",
			      entries[i].entry, entries[i].refusal, rc ? err : "(accepted)");
		ppolicy_free(p);
	}
}

/* Every shipped profile expands, and every entry passes the rules. */
static void test_profiles(void)
{
	size_t n;
	char err[256];
	const struct pprof *all = pprof_all(&n);
	CHECK(n > 0, "no profiles");
	for (size_t i = 0; i < n; i++) {
		struct ppolicy *p = ppolicy_new();
		char at[80];
		snprintf(at, sizeof(at), "@%s", all[i].name);
		CHECK(ppolicy_add(p, at, err, sizeof(err)) == 0, "%s: %s", at, err);
		CHECK(ppolicy_count(p) > 0, "%s expands to nothing", at);
		CHECK(pprof_find(all[i].name) == &all[i], "pprof_find(%s)", all[i].name);
		for (size_t k = 0; k < all[i].n; k++)
			CHECK(all[i].v[k].source && all[i].v[k].source[0], "%s: %s without a source", at,
			      all[i].v[k].global);
		ppolicy_free(p);
	}
}

static void test_matching(void)
{
	char err[256];
	struct ppolicy *p = ppolicy_new();
	const char *add[] = { "b:x", "a:y", "a:Y.z", "b:x", "itertools:chain" };
	for (size_t i = 0; i < sizeof(add) / sizeof(add[0]); i++)
		CHECK(ppolicy_add(p, add[i], err, sizeof(err)) == 0, "%s", err);
	CHECK(ppolicy_count(p) == 4, "dedup: %zu", ppolicy_count(p));
	CHECK(strcmp(ppolicy_entry(p, 0), "a:Y.z") == 0, "sorted");
#define ALLOWS(m, n, proto) ppolicy_allows(p, (const uint8_t *)(m), strlen(m), (const uint8_t *)(n), strlen(n), proto)
	CHECK(ALLOWS("b", "x", 4), "exact");
	CHECK(!ALLOWS("b", "x.y", 4), "a dotted name only when listed");
	CHECK(ALLOWS("a", "Y.z", 4), "listed dotted");
	CHECK(!ALLOWS("a", "Y", 4), "no prefix of a dotted entry");
	CHECK(!ALLOWS("b.c", "x", 4), "no submodule");
	CHECK(!ALLOWS("", "", 4), "empty");
	CHECK(ALLOWS("itertools", "chain", 3), "protocol 3: no fix_imports");
	CHECK(!ALLOWS("itertools", "chain", 2), "protocol 2: fix_imports may rename itertools");
	CHECK(!ppolicy_allows(p, (const uint8_t *)"b\0", 2, (const uint8_t *)"x", 1, 4), "NUL");
	CHECK(!ppolicy_allows(NULL, (const uint8_t *)"b", 1, (const uint8_t *)"x", 1, 4), "no list");
	ppolicy_free(p);
}

/* ---- frames through the inspector ------------------------------------------ */

enum mode { DENY, POLICY };

struct fcase {
	const char *name;
	const uint8_t *data;
	size_t len;
	enum inspect_verdict deny, policy; /* under each mode */
	const char *global;                /* policy mode: inspect_global() of a drop */
};

#define F(name, lit, d, p, g) { name, (const uint8_t *)(lit), sizeof(lit) - 1, d, p, g }
#define PASS INSPECT_PASS
#define DROP INSPECT_DROP

/* "cos\nsystem\n(S'id'\ntR." is 21 bytes (0x15) */
#define OS_SYSTEM "cos\nsystem\n(S'id'\ntR."
#define SG(m, n) "\x8c" m "\x8c" n "\x93"
/* torch.save's legacy stream starts with this pickle of its magic number */
#define TORCH_MAGIC "\x80\x02\x8a\x0al\xfc\x9c" "F\xf9 j\xa8P\x19."

static const struct fcase frames[] = {
	F("not a pickle", "{\"json\": 1}", PASS, PASS, NULL),
	F("os.system", OS_SYSTEM, DROP, DROP, "os:system"),
	F("enum member (CPython 3.11.2)",
	  "\x80\x04\x95\x33\x00\x00\x00\x00\x00\x00\x00\x8c\x08" "builtins\x94\x8c\x07" "getattr"
	  "\x94\x93\x94\x8c\x04tmod\x94\x8c\x05" "Color\x94\x93\x94\x8c\x03RED\x94\x86\x94R\x94.",
	  DROP, PASS, NULL),
	F("flag members with or_ (CPython 3.11.2)",
	  "\x80\x04\x95\x54\x00\x00\x00\x00\x00\x00\x00\x8c\x09_operator\x94\x8c\x03or_\x94\x93\x94"
	  "\x8c\x08" "builtins\x94\x8c\x07" "getattr\x94\x93\x94\x8c\x04tmod\x94\x8c\x04Perm\x94\x93"
	  "\x94\x8c\x01W\x94\x86\x94R\x94h\x05h\x08\x8c\x01R\x94\x86\x94R\x94\x86\x94R\x94.",
	  DROP, PASS, NULL),
	F("instance: NEWOBJ then BUILD (CPython 3.11.2)",
	  "\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x04tmod\x94\x8c\x03" "Cls\x94\x93\x94)"
	  "\x81\x94}\x94\x8c\x01" "a\x94K\x03sb.",
	  DROP, PASS, NULL),
	F("getattr reaching a dunder", "\x80\x04" SG("\x08" "builtins", "\x07" "getattr")
	  "\x94" SG("\x04tmod", "\x03" "Cls") "\x8c\x08__init__\x86R.",
	  DROP, DROP, "getattr-shape"),
	F("getattr chain: a result called", "\x80\x04" SG("\x08" "builtins", "\x07" "getattr")
	  SG("\x04tmod", "\x03" "Cls") "\x8c\x01" "a\x86R)R.",
	  DROP, DROP, "unknown-callable"),
	F("getattr on a class not listed", "\x80\x04" SG("\x08" "builtins", "\x07" "getattr")
	  SG("\x04tmod", "\x05Other") "\x8c\x03RED\x86R.",
	  DROP, DROP, "tmod:Other"),
	F("getattr passed as data", "\x80\x04" SG("\x08" "builtins", "\x07" "getattr") "\x85.",
	  DROP, DROP, "restricted-use"),
	F("dotted qualname through a listed module", "\x80\x04"
	  SG("\x0b" "collections", "\x14OrderedDict.fromkeys") ")R.",
	  DROP, DROP, "collections:OrderedDict.fromkeys"),
	F("memo-overwritten operand", "\x80\x04\x8c\x0b" "collections\x94\x8c\x02osq\x00h\x00"
	  "\x8c\x06system\x93)R.", DROP, DROP, "os:system"),
	F("operand not a constant: a call's result", "\x80\x04"
	  SG("\x0b" "collections", "\x0bOrderedDict") ")R\x8c\x06system\x93.", DROP, DROP, "unknown"),
	F("BUILD on a class", "\x80\x04" SG("\x04tmod", "\x03" "Cls") "}b.", DROP, DROP,
	  "build-on-global"),
	F("second PROTO", "\x80\x04" SG("\x0b" "collections", "\x0bOrderedDict") "\x80\x04)R.",
	  DROP, DROP, "second-proto"),
	F("second PROTO before the first import", "\x80\x04\x80\x04"
	  SG("\x0b" "collections", "\x0bOrderedDict") ")R.", DROP, DROP, "second-proto"),
	F("bytes value with two PROTOs and no import (array data)", "\x80\x05"
	  SG("\x0b" "collections", "\x0bOrderedDict") ")RC\x06\x80\x02\x80\x03N.0.", DROP, PASS, NULL),
	F("listed, plain", "\x80\x05" SG("\x0b" "collections", "\x0bOrderedDict") ")R.", DROP,
	  PASS, NULL),
	F("nested pickle in a bytes value", "\x80\x05}\x8c\x01" "bC\x15" OS_SYSTEM "s.", DROP,
	  DROP, "os:system"),
	F("two pickles in a bytes value: loads() reads the first only",
	  "\x80\x05}\x8c\x01" "bC\x1bK\x01.K\x02." OS_SYSTEM "s.", PASS, PASS, NULL),
	F("torch legacy stream: the fifth pickle imports", "\x80\x05}\x8c\x01" "bC\x2d" TORCH_MAGIC
	  "K\x01.K\x02.K\x03." OS_SYSTEM "s.", DROP, DROP, "os:system"),
	F("torch legacy stream: raw storage bytes after five pickles", "\x80\x05}\x8c\x01" "bC\x26"
	  TORCH_MAGIC "K\x01.K\x02.K\x03.K\x04." "cx\nsystem\n.", PASS, PASS, NULL),
	F("bytes value that is no pickle", "\x80\x05}\x8c\x01" "bC\x08\x00\x01\x02\x03\x04\x05\x06"
	  "\x07s.", PASS, PASS, NULL),
	F("zip archive in bytes (torch.load would open it)",
	  "\x80\x05" SG("\x0b" "collections", "\x0bOrderedDict") ")RC\x06PK\x03\x04\x00\x00\x30.",
	  DROP, DROP, "zip-in-bytes"),
	F("msgpack map of 3", "\x83\x01\x01\x02\x02\x03\x03", PASS, PASS, NULL),
	F("msgpack ext8 type 1 pickle", "\x81\xa1k\xc7\x15\x01" OS_SYSTEM, DROP, DROP,
	  "os:system"),
	F("msgpack ext8 type 2 pickle", "\x91\xc7\x15\x02" OS_SYSTEM, DROP, DROP, "os:system"),
	F("msgpack ext8 type 3 (raw bytes) not judged", "\x91\xc7\x15\x03" OS_SYSTEM, PASS, PASS,
	  NULL),
	F("msgpack PickleWrapper bin8", "\x92\xadPickleWrapper\xc4\x15" OS_SYSTEM, DROP, DROP,
	  "os:system"),
	F("msgpack with trailing bytes is not decoded", "\x91\xc4\x15" OS_SYSTEM "\x00", PASS, PASS,
	  NULL),
	F("msgpack bin of tensor bytes", "\x92\x01\xc4\x04\x82\x83\x84\x00", PASS, PASS, NULL),
};

static struct ppolicy *policy;

static enum inspect_verdict run(struct inspect *in, const struct fcase *c, enum mode m,
				const size_t *cuts, size_t ncuts)
{
	struct inspect_cfg cfg = { .pscan_opts = PSCAN_EXT_UNREGISTERED | PSCAN_NO_PERSID,
				   .policy = m == POLICY ? policy : NULL, .msgpack = true };
	enum inspect_verdict v = INSPECT_NEED_MORE;
	size_t at = 0;
	inspect_begin(in, &cfg, c->len);
	for (size_t i = 0; i <= ncuts && v == INSPECT_NEED_MORE; i++) {
		size_t end = i < ncuts ? cuts[i] : c->len;
		v = inspect_feed(in, c->data + at, end - at);
		at = end;
	}
	if (v == INSPECT_NEED_MORE)
		v = inspect_end(in);
	return v;
}

static void test_frames(struct inspect *in)
{
	for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
		const struct fcase *c = &frames[i];
		for (int m = DENY; m <= POLICY; m++) {
			enum inspect_verdict want = m == DENY ? c->deny : c->policy;
			enum inspect_verdict whole = run(in, c, (enum mode)m, NULL, 0);
			CHECK(whole == want, "%s (%s): verdict %d, want %d", c->name,
			      m ? "policy" : "deny", whole, want);
			if (m == POLICY && want == DROP && c->global)
				CHECK(strcmp(inspect_global(in), c->global) == 0, "%s: global %s, want %s",
				      c->name, inspect_global(in), c->global);
			bool same = true;
			for (size_t k = 1; k < c->len; k++) /* every split in two */
				same &= run(in, c, (enum mode)m, &k, 1) == whole;
			size_t *cuts = malloc(c->len * sizeof(*cuts));
			for (size_t k = 0; k + 1 < c->len; k++)
				cuts[k] = k + 1;
			same &= run(in, c, (enum mode)m, cuts, c->len ? c->len - 1 : 0) == whole;
			free(cuts);
			CHECK(same, "%s (%s): differs across splits", c->name, m ? "policy" : "deny");
		}
	}
}

/* An empty list (learn mode) refuses every import and names them all. */
static void test_learn_mode(struct inspect *in)
{
	struct ppolicy *keep = policy;
	policy = ppolicy_new();
	const struct fcase c = F("two imports", "\x80\x04" SG("\x01" "a", "\x01" "b") ")R"
				 SG("\x01" "c", "\x01" "d") ")R\x86.", DROP, DROP, NULL);
	CHECK(run(in, &c, POLICY, NULL, 0) == DROP, "learn mode drops");
	CHECK(in->pv && in->pv->n == 2 && strcmp(ppolicy_verdict_global(in->pv, 0), "a:b") == 0 &&
		      strcmp(ppolicy_verdict_global(in->pv, 1), "c:d") == 0,
	      "learn mode lists every import");
	ppolicy_free(policy);
	policy = keep;
}

/* A callable under more arguments than the stack window holds (msgspec's
 * rebuild(cls, {...}) with a large state dict) is still known. */
static void test_deep_callable(struct inspect *in)
{
	static uint8_t buf[4096];
	size_t n = 0;
	const char *head = "\x80\x04\x8c\x0b" "collections\x8c\x0bOrderedDict\x93}(";
	memcpy(buf, head, strlen(head));
	n = strlen(head);
	for (int i = 0; i < 200; i++) {
		memcpy(buf + n, "K\x01K\x02", 4);
		n += 4;
	}
	memcpy(buf + n, "u\x85R.", 4);
	n += 4;
	struct fcase c = { "callable under 400 items", buf, n, DROP, PASS, NULL };
	CHECK(run(in, &c, POLICY, NULL, 0) == PASS, "deep callable: policy");
	CHECK(run(in, &c, DENY, NULL, 0) == DROP, "deep callable: deny");
	buf[n - 2] = '0'; /* POP instead of REDUCE: still fine */
	CHECK(run(in, &c, POLICY, NULL, 0) == PASS, "deep callable popped");
}

int main(void)
{
	char err[256];
	const char *list[] = { "collections:OrderedDict", "tmod:Color", "tmod:Perm", "tmod:Cls",
			       "builtins:getattr", "_operator:or_" };
	struct inspect *in = calloc(1, sizeof(*in));

	test_entries();
	test_profiles();
	test_matching();
	policy = ppolicy_new();
	for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)
		if (ppolicy_add(policy, list[i], err, sizeof(err)) != 0)
			return 1;
	if (!in || inspect_enable_policy(in) != 0)
		return 1;
	test_frames(in);
	test_learn_mode(in);
	test_deep_callable(in);
	inspect_free(in);
	free(in);
	ppolicy_free(policy);
	printf("test_pickle_policy: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
