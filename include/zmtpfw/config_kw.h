/* config_kw: the one table of configuration keywords (src/config_kw.c),
 * as HAProxy's cfg_kw_list. Each row gives a key's name, scope, parser
 * with bounds, default, and whether a reload applies it. The loader
 * (config.c) dispatches every key through it; this header is what the
 * rest of zmtpfw sees of it: the names (the docs check) and the reload
 * flag (server.c). */
#ifndef ZMTPFW_CONFIG_KW_H
#define ZMTPFW_CONFIG_KW_H

#include <stdbool.h>
#include <stddef.h>

#include "zmtpfw/config.h"

/* Where a key may be written. */
enum config_scope {
	CONFIG_SCOPE_TOP = 0, /* the file's top level */
	CONFIG_SCOPE_ROUTE,   /* inside routes = ( { ... } ) */
	CONFIG_SCOPE_LOG,     /* inside log = { ... } */
	CONFIG_SCOPE_METRICS, /* inside metrics = { ... } */
};

/* A row as the rest of zmtpfw may see it. */
struct config_kw_info {
	const char *name;        /* as written in the file: "level" */
	const char *group;       /* "log", "metrics" for group keys; NULL otherwise */
	enum config_scope scope;
	bool reload;             /* a SIGHUP applies a new value (else: restart) */
};

/* Row i of the table into *out; false past the last row. */
bool config_kw_at(size_t i, struct config_kw_info *out);

/* The table is consistent: names unique in their scope, defaults within
 * bounds, restart-only rows plain values a reload can keep. 0, or -1
 * with the broken row named in err. */
int config_kw_check(char *err, size_t errlen) __attribute__((warn_unused_result));

/* Called once per restart-only key whose value a reload would change;
 * route is the route's name for route keys, NULL otherwise. */
typedef void (*config_kw_restart_fn)(void *arg, const char *key, const char *route);

/* Reload: for every key the table marks restart-only that differs between
 * the running snapshot and the new one nc (route keys: routes matched by
 * listen address, as the server matches them), calls fn and puts the
 * running value back into nc, so nc says what is in force. Returns the
 * number of keys kept. */
size_t config_kw_keep_restart_only(struct config *nc, const struct config *running,
				   config_kw_restart_fn fn, void *arg);

#endif
