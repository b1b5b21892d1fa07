/* evfail: an LD_PRELOAD shim for the end-to-end tests (never linked into
 * zmtpfw). With ZMTPFW_EVFAIL=write-add in the environment, event_add fails
 * (ENOMEM) for every EV_WRITE|EV_PERSIST event, which in zmtpfw without a
 * metrics endpoint are exactly the sockets' write events; every other call
 * goes to libevent. It shows that a failed event_add closes the connection
 * instead of leaving its queued bytes stuck. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

int event_add(struct event *ev, const struct timeval *tv)
{
	static int (*real)(struct event *, const struct timeval *);
	const char *mode = getenv("ZMTPFW_EVFAIL");
	const short w = EV_WRITE | EV_PERSIST;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "event_add");
	if (mode && strcmp(mode, "write-add") == 0 && (event_get_events(ev) & w) == w) {
		errno = ENOMEM;
		return -1;
	}
	return real(ev, tv);
}
