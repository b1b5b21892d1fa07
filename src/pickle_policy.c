/* pickle_policy: exact (module, qualname) allowlists, as PyTorch's
 * weights_only unpickler and SGLang's fixed SafeUnpickler draw the line,
 * applied to the imports the scanner resolves on the wire.
 *
 * The list is a sorted array of "module:qualname" strings: a lookup is a
 * binary search over a few hundred entries at most, and nothing is
 * allocated while judging. */
#include "zmtpfw/pickle_policy.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zmtpfw/pickle_profiles.h"

#define PPOLICY_ENTRY_MAX 256  /* "module:qualname" bytes, with the NUL */
#define PPOLICY_INCLUDE_DEPTH 4 /* @profile including @profile ... */

struct ppolicy {
	char **v;       /* sorted, distinct */
	size_t n, cap;
	bool sorted;    /* v is sorted and deduplicated */
	_Atomic unsigned refs; /* the config snapshot, and each connection
				  judging with it (on any event loop): a reload
				  frees the snapshot, not the list a message in
				  flight is judged by */
};

/* ---- what can never be allowed ------------------------------------------ */

/* Modules whose every global (and every submodule's) is a gadget: code
 * execution, attribute access, processes, files, network, nested
 * deserialisation (shared/ENGINES.md, "Gadgets"). */
static const char *const ppolicy_bad_modules[] = {
	"_ctypes", "_functools", "_imp", "_io", "_operator", "_pickle", "_posixsubprocess",
	"_socket", "_sqlite3", "_ssl", "_thread", "asyncio", "atexit", "bdb", "cProfile",
	"cloudpickle", "code", "codeop", "copyreg", "ctypes", "dill", "doctest", "ensurepip",
	"fcntl", "fileinput", "ftplib", "functools", "gc", "glob", "http", "idlelib",
	"importlib", "inspect", "io", "joblib", "logging", "marshal", "mmap", "multiprocessing",
	"nt", "numpy.ctypeslib", "numpy.f2py", "numpy.lib.npyio", "numpy.testing", "operator",
	"os", "pathlib", "pdb", "pickle", "pip", "pkgutil", "posix", "profile", "pty",
	"pydoc", "requests", "resource", "runpy", "setuptools", "shelve", "shutil", "signal",
	"site", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "subprocess", "sys",
	"sysconfig", "tarfile", "telnetlib", "tempfile", "threading", "timeit", "torch._C",
	"torch.hub", "torch.jit", "torch.multiprocessing", "torch.serialization", "trace",
	"types", "urllib", "venv", "webbrowser", "xmlrpc", "zipapp", "zipfile", "zipimport",
};

/* Single globals of otherwise allowable modules. */
static const char *const ppolicy_bad_globals[] = {
	"numpy:fromfile", "numpy:load", "numpy:loadtxt", "numpy:genfromtxt", "numpy:memmap",
	"numpy:save", "numpy:savetxt", "numpy:savez", "numpy:savez_compressed",
	"torch:load", "torch:save", "torch._tensor:_rebuild_from_type_v2",
};

/* The builtins that are plain data types; getattr is the Enum exception. */
static const char *const ppolicy_builtins_ok[] = {
	"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "getattr",
	"int", "list", "range", "set", "slice", "str", "tuple",
};

/* Modules fix_imports renames below protocol 3 (CPython's
 * Lib/_compat_pickle.py, IMPORT_MAPPING and NAME_MAPPING keys). A policy
 * never matches them there: the module loaded would be another. */
static const char *const ppolicy_py2_modules[] = {
	"BaseHTTPServer", "CGIHTTPServer", "ConfigParser", "Cookie", "Dialog",
	"DocXMLRPCServer", "FileDialog", "HTMLParser", "Queue", "ScrolledText",
	"SimpleDialog", "SimpleHTTPServer", "SimpleXMLRPCServer", "SocketServer", "StringIO",
	"Tix", "Tkconstants", "Tkdnd", "Tkinter", "UserDict", "UserList", "UserString",
	"__builtin__", "_abcoll", "_elementtree", "_multiprocessing", "_socket", "_winreg",
	"anydbm", "cPickle", "cStringIO", "commands", "cookielib", "copy_reg", "dbhash", "dbm",
	"dumbdbm", "dummy_thread", "exceptions", "gdbm", "htmlentitydefs", "httplib",
	"itertools", "markupbase", "multiprocessing", "multiprocessing.forking",
	"multiprocessing.process", "repr", "robotparser", "socket", "test.test_support",
	"thread", "tkColorChooser", "tkCommonDialog", "tkFileDialog", "tkFont",
	"tkMessageBox", "tkSimpleDialog", "ttk", "urllib", "urllib2", "urlparse", "whichdb",
	"xmlrpclib",
};

/* Renamed at every protocol by pickle.py's users: refused in a list. */
static const char *const ppolicy_py2_only[] = {
	"__builtin__", "copy_reg", "exceptions", "cPickle", "cStringIO", "commands", "thread",
	"urllib2", "UserDict", "UserList", "UserString", "Queue", "StringIO",
};

#define PP_N(a) (sizeof(a) / sizeof((a)[0]))

static bool ppolicy_in(const char *const *v, size_t n, const char *s, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(v[i]) == len && memcmp(v[i], s, len) == 0)
			return true;
	return false;
}

/* module equals m, or is a submodule of it */
static bool ppolicy_module_under(const char *mod, size_t ml, const char *m)
{
	size_t n = strlen(m);
	return ml >= n && memcmp(mod, m, n) == 0 && (ml == n || mod[n] == '.');
}

/* A dotted path of identifiers; no part starting "__" (dunders reach
 * __globals__, __builtins__, __class__ ...), "<locals>" has no place. */
static const char *ppolicy_path_problem(const char *s, size_t n)
{
	size_t part = 0;
	if (n == 0)
		return "empty name";
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (i == part)
				return "empty dotted part";
			if (i - part >= 2 && s[part] == '_' && s[part + 1] == '_')
				return "a part starting with __";
			part = i + 1;
			continue;
		}
		unsigned char c = (unsigned char)s[i];
		bool ident = c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
		if (!ident)
			return c == '*' ? "a wildcard" : c == '<' ? "<locals>" : "not an identifier";
		if (i == part && c >= '0' && c <= '9')
			return "not an identifier";
	}
	return NULL;
}

const char *ppolicy_refusal(const char *module, size_t ml, const char *name, size_t nl)
{
	const char *why;
	char key[PPOLICY_ENTRY_MAX];

	if ((why = ppolicy_path_problem(module, ml)) != NULL ||
	    (why = ppolicy_path_problem(name, nl)) != NULL)
		return why;
	if (ppolicy_in(ppolicy_py2_only, PP_N(ppolicy_py2_only), module, ml))
		return "a Python 2 alias module (fix_imports renames it)";
	for (size_t i = 0; i < PP_N(ppolicy_bad_modules); i++) {
		if (ppolicy_module_under(module, ml, ppolicy_bad_modules[i])) {
			if (ml == 9 && memcmp(module, "_operator", 9) == 0 && nl == 3 &&
			    memcmp(name, "or_", 3) == 0)
				return NULL; /* the Enum shape's or_ */
			return "a gadget module (code, attribute access, processes, files, network or "
			       "nested deserialisation)";
		}
	}
	if (ml == 8 && memcmp(module, "builtins", 8) == 0 &&
	    !ppolicy_in(ppolicy_builtins_ok, PP_N(ppolicy_builtins_ok), name, nl))
		return "a builtin that is not a plain data type";
	if (ml + 1 + nl < sizeof(key)) {
		memcpy(key, module, ml);
		key[ml] = ':';
		memcpy(key + ml + 1, name, nl);
		if (ppolicy_in(ppolicy_bad_globals, PP_N(ppolicy_bad_globals), key, ml + 1 + nl))
			return "a gadget (files, or a full torch.load)";
	} else {
		return "too long";
	}
	return NULL;
}

/* ---- building ------------------------------------------------------------ */

struct ppolicy *ppolicy_new(void)
{
	struct ppolicy *p = calloc(1, sizeof(struct ppolicy));
	if (p)
		p->refs = 1;
	return p;
}

const struct ppolicy *ppolicy_ref(const struct ppolicy *p)
{
	if (p)
		atomic_fetch_add_explicit(&((struct ppolicy *)p)->refs, 1, memory_order_relaxed);
	return p;
}

void ppolicy_free(const struct ppolicy *cp)
{
	struct ppolicy *p = (struct ppolicy *)cp;
	if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i]);
	free(p->v);
	free(p);
}

static int ppolicy_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void ppolicy_sort(struct ppolicy *p)
{
	size_t w = 0;
	if (p->sorted || p->n == 0)
		return; /* (qsort must not see the NULL of an empty list) */
	qsort(p->v, p->n, sizeof(*p->v), ppolicy_cmp);
	for (size_t i = 0; i < p->n; i++) {
		if (w > 0 && strcmp(p->v[w - 1], p->v[i]) == 0)
			free(p->v[i]);
		else
			p->v[w++] = p->v[i];
	}
	p->n = w;
	p->sorted = true;
}

static int ppolicy_add_depth(struct ppolicy *p, const char *e, int depth, char *err, size_t errlen)
{
	if (e[0] == '@') {
		const struct pprof *pf = pprof_find(e + 1);
		if (!pf) {
			snprintf(err, errlen, "unknown profile \"%s\" (zmtpfw profile lists them)", e);
			return -1;
		}
		if (depth >= PPOLICY_INCLUDE_DEPTH) {
			snprintf(err, errlen, "profile \"%s\" includes too deeply", e);
			return -1;
		}
		for (size_t i = 0; i < pf->n; i++)
			if (ppolicy_add_depth(p, pf->v[i].global, depth + 1, err, errlen) != 0)
				return -1;
		return 0;
	}
	const char *colon = strchr(e, ':');
	if (!colon || strchr(colon + 1, ':')) {
		snprintf(err, errlen, "\"%s\": expected \"module:qualname\" or \"@profile\"", e);
		return -1;
	}
	const char *why = ppolicy_refusal(e, (size_t)(colon - e), colon + 1, strlen(colon + 1));
	if (why) {
		snprintf(err, errlen, "\"%s\" refused: %s", e, why);
		return -1;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		char **v = realloc(p->v, cap * sizeof(*v));
		if (!v)
			goto oom;
		p->v = v;
		p->cap = cap;
	}
	if (!(p->v[p->n] = strdup(e)))
		goto oom;
	p->n++;
	p->sorted = false;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

int ppolicy_add(struct ppolicy *p, const char *entry, char *err, size_t errlen)
{
	int rc = ppolicy_add_depth(p, entry, 0, err, errlen);
	ppolicy_sort(p);
	return rc;
}

int ppolicy_add_list(struct ppolicy *p, const char *list, char *err, size_t errlen)
{
	char *copy = strdup(list), *save = NULL;
	int rc = 0;
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		size_t n = strlen(t);
		while (n > 0 && t[n - 1] == ' ')
			t[--n] = '\0';
		if (n > 0)
			rc = ppolicy_add(p, t, err, errlen);
	}
	free(copy);
	return rc;
}

size_t ppolicy_count(const struct ppolicy *p)
{
	return p ? p->n : 0;
}

const char *ppolicy_entry(const struct ppolicy *p, size_t i)
{
	return i < ppolicy_count(p) ? p->v[i] : NULL;
}

/* ---- matching ------------------------------------------------------------ */

bool ppolicy_allows(const struct ppolicy *p, const uint8_t *module, size_t ml,
		    const uint8_t *name, size_t nl, uint8_t proto)
{
	char key[PPOLICY_ENTRY_MAX];

	if (!p || !module || !name || ml + 1 + nl >= sizeof(key))
		return false;
	if (proto < 3 && ppolicy_in(ppolicy_py2_modules, PP_N(ppolicy_py2_modules),
				    (const char *)module, ml))
		return false;
	memcpy(key, module, ml);
	key[ml] = ':';
	memcpy(key + ml + 1, name, nl);
	key[ml + 1 + nl] = '\0';
	if (strlen(key) != ml + 1 + nl)
		return false; /* a NUL inside a name matches nothing */
	size_t lo = 0, hi = p->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, p->v[mid]);
		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

/* ---- judging ------------------------------------------------------------- */

void ppolicy_verdict_init(struct ppolicy_verdict *v)
{
	v->bad = false;
	v->shape = NULL;
	v->n = 0;
	v->used = 0;
	v->first = 0;
	v->more = false;
}

/* Record a refused import's text once; the first one is the log's
 * "global". Names are cut to keep the line bounded. */
static void ppolicy_note(struct ppolicy_verdict *v, const char *mod, size_t ml, const char *name,
			 size_t nl)
{
	char t[PPOLICY_ENTRY_MAX];
	int len;

	if (mod && name)
		len = snprintf(t, sizeof(t), "%.*s:%.*s", (int)(ml < 120 ? ml : 120), mod,
			       (int)(nl < 120 ? nl : 120), name);
	else
		len = snprintf(t, sizeof(t), "%s", mod ? mod : "unknown");
	if (len < 0)
		return;
	for (uint32_t i = 0, off = 0; i < v->n; i++) {
		if (strcmp(v->text + off, t) == 0)
			return;
		off += (uint32_t)strlen(v->text + off) + 1;
	}
	if (v->n == PPOLICY_GLOBALS_MAX || v->used + (uint32_t)len + 1 > PPOLICY_TEXT_MAX) {
		v->more = true;
		return;
	}
	memcpy(v->text + v->used, t, (size_t)len + 1);
	v->used += (uint32_t)len + 1;
	v->n++;
}

void ppolicy_judge(const struct ppolicy *p, struct ppolicy_verdict *v, struct pscan_import *imp)
{
	if (imp->shape) {
		if (!v->shape)
			v->shape = imp->shape;
		v->bad = true;
		return;
	}
	imp->allowed = !imp->truncated &&
		       ppolicy_allows(p, imp->module, imp->module_len, imp->name, imp->name_len,
				      imp->proto);
	if (imp->allowed)
		return;
	v->bad = true;
	if (imp->module && imp->name)
		ppolicy_note(v, (const char *)imp->module, imp->module_len, (const char *)imp->name,
			     imp->name_len);
	else
		ppolicy_note(v, NULL, 0, NULL, 0);
}

const char *ppolicy_verdict_global(const struct ppolicy_verdict *v, uint32_t i)
{
	uint32_t off = 0;
	if (i >= v->n)
		return NULL;
	while (i-- > 0)
		off += (uint32_t)strlen(v->text + off) + 1;
	return v->text + off;
}
