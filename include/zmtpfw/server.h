/* server: the running set of routes (listeners), the metrics endpoint and
 * the config snapshot in force. Owns reload (SIGHUP) and drain (SIGTERM):
 * a reload builds and validates a whole new snapshot, binds what is new,
 * and swaps only when everything succeeded. */
#ifndef ZMTPFW_SERVER_H
#define ZMTPFW_SERVER_H

#include "zmtpfw/config.h"

struct event_base;
struct server;

/* Event loops the config asks for ("auto": online cores), 1..64. Main
 * asks once, calls evthread_use_pthreads before creating its base when
 * above 1, and hands the same number to server_start. */
unsigned server_threads(const struct config *cfg);

/* Run n_loops event loops (server_threads), bind every route and the
 * metrics endpoint, then drop privileges (user =). Takes ownership of cfg.
 * NULL on failure (logged; cfg freed). */
struct server *server_start(struct event_base *base, struct config *cfg, unsigned n_loops)
	__attribute__((warn_unused_result));

/* Reload from the file the running config came from. Never disturbs the
 * running config on failure. Returns 0 when the new config is in force. */
int server_reload(struct server *s);

/* Stop accepting, let messages in flight finish, then leave the event loop
 * (at the latest after drain_timeout_ms). */
void server_drain(struct server *s);

/* Close everything and free. */
void server_free(struct server *s);

#endif
