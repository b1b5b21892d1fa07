/* main: command line, config, event loop. */
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "zmtpfw/config.h"
#include "zmtpfw/log.h"
#include "zmtpfw/mem.h"
#include "zmtpfw/metrics.h"
#include "zmtpfw/pickle_policy.h"
#include "zmtpfw/policy_cli.h"
#include "zmtpfw/scan_cli.h"
#include "zmtpfw/server.h"
#include "zmtpfw/splice.h"

static const char main_usage[] =
	"usage: zmtpfw -c FILE            run with a config file (foreground)\n"
	"       zmtpfw -t -c FILE         check a config file and exit\n"
	"       zmtpfw --listen ADDR --upstream ADDR --allow CIDR[,CIDR...]\n"
	"              [--allow-pickle-from CIDR[,CIDR...]] [--log-only]\n"
	"                                 run one route without a file\n"
	"       zmtpfw scan [--json] [--globals LIST] FILE... | -\n"
	"                                 report which pickle files could import\n"
	"       zmtpfw learn [LOGFILE...|-]\n"
	"                                 pickle_globals lists from a learn-mode log\n"
	"       zmtpfw profile [NAME]     list the shipped @profiles, or print one\n"
	"       zmtpfw --help | --version\n"
	"\n"
	"ADDR is HOST:PORT, [V6]:PORT, or (upstream only) unix:/path.\n"
	"Logs are JSON lines on stderr. See README.md and conf/zmtpfw.conf.\n"
	"Signals: SIGHUP reloads the file; SIGTERM or SIGINT drain connections and\n"
	"exit 0 (a second one exits at once).\n";

/* Buffers are evbuffer chains of up to 256 KiB, allocated while reading and
 * freed once written. glibc serves blocks above 128 KiB with mmap and gives
 * freed heap tops back to the kernel, so every chain cost an mmap, page
 * faults on fresh zeroed pages and a munmap: measured as over half of the
 * relay's CPU at 64 KiB messages. Keep chains on the heap and keep a bounded
 * amount of freed heap for reuse. */
static void main_tune_malloc(void)
{
#ifdef __GLIBC__
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
}

/* Signals arrive through the event loop (evsignal): no work in a handler. */
static void main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	if (sig == SIGHUP) {
		log_event(LOG_INFO, NULL, NULL, "reload", LOG_STR("result", "started"),
			  LOG_STR("signal", "SIGHUP"), LOG_END);
		(void)server_reload(srv); /* logs its own result */
		return;
	}
	log_event(LOG_INFO, NULL, NULL, "shutdown",
		  LOG_STR("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"), LOG_END);
	server_drain(srv);
}

int main(int argc, char **argv)
{
	enum { OPT_LISTEN = 256, OPT_UPSTREAM, OPT_ALLOW, OPT_ALLOW_PICKLE, OPT_LOG_ONLY };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "upstream", required_argument, NULL, OPT_UPSTREAM },
		{ "allow", required_argument, NULL, OPT_ALLOW },
		{ "allow-pickle-from", required_argument, NULL, OPT_ALLOW_PICKLE },
		{ "log-only", no_argument, NULL, OPT_LOG_ONLY },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = NULL, *listen = NULL, *upstream = NULL, *allow = NULL, *allow_pickle = NULL;
	bool test = false, log_only = false;
	char err[1024];
	int opt, rc = 1;

	mem_init(); /* before any other libevent call */
	if (argc > 1 && strcmp(argv[1], "scan") == 0)
		return scan_cli_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "learn") == 0)
		return policy_cli_learn(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "profile") == 0)
		return policy_cli_profile(argc - 1, argv + 1);

	while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': file = optarg; break;
		case 't': test = true; break;
		case 'h': fputs(main_usage, stdout); return 0;
		case 'V': printf("zmtpfw %s\n", ZMTPFW_VERSION); return 0;
		case OPT_LISTEN: listen = optarg; break;
		case OPT_UPSTREAM: upstream = optarg; break;
		case OPT_ALLOW: allow = optarg; break;
		case OPT_ALLOW_PICKLE: allow_pickle = optarg; break;
		case OPT_LOG_ONLY: log_only = true; break;
		default: fputs(main_usage, stderr); return 2;
		}
	}
	if (optind != argc || (file && (listen || upstream || allow || allow_pickle || log_only)) ||
	    (!file && !(listen && upstream && allow))) {
		fputs(file ? "zmtpfw: -c cannot be combined with route flags\n"
			   : "zmtpfw: need -c FILE, or --listen, --upstream and --allow\n",
		      stderr);
		fputs(main_usage, stderr);
		return 2;
	}

	struct config *cfg = file ? config_load_file(file, err, sizeof(err))
				  : config_from_flags(listen, upstream, allow, allow_pickle, log_only,
						      err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (test) {
		printf("%s: configuration ok (%zu route%s)\n", file ? file : "flags", cfg->n_routes,
		       cfg->n_routes == 1 ? "" : "s");
		/* What each pickle_globals expands to, profiles included. */
		for (size_t i = 0; i < cfg->n_routes; i++) {
			const struct ppolicy *p = cfg->routes[i].pickle_globals;
			if (!p)
				continue;
			printf("route %s: pickle_globals allows %zu global%s%s\n", cfg->routes[i].name,
			       ppolicy_count(p), ppolicy_count(p) == 1 ? "" : "s",
			       ppolicy_count(p) ? ":" : " (learn mode: every import is refused)");
			for (size_t k = 0; k < ppolicy_count(p); k++)
				printf("  %s\n", ppolicy_entry(p, k));
		}
		config_free(cfg);
		return 0;
	}
	log_setup(cfg->log_level, cfg->log_format);
	signal(SIGPIPE, SIG_IGN);
	main_tune_malloc();

	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	struct event *sigev[3] = { NULL, NULL, NULL };
	/* several loops: libevent's locks (event_active from the main thread
	 * on another loop); one loop keeps the lock-free base of before */
	unsigned n_loops = server_threads(cfg); /* once: "auto" must not change between uses */
	if (n_loops > 1 && evthread_use_pthreads() < 0) {
		fprintf(stderr, "zmtpfw: cannot enable libevent threads\n");
		config_free(cfg);
		return 1;
	}
	struct event_base *base = event_base_new();
	struct server *srv = NULL;
	if (!base) {
		config_free(cfg);
		return 1;
	}
	/* Held from before the first "listening" line until the handlers are
	 * in: a SIGHUP or SIGTERM sent as soon as zmtpfw says it listens is
	 * handled, not fatal. Loop threads inherit the mask, so signals reach
	 * the main thread, whose loop handles them. */
	sigset_t held;
	sigemptyset(&held);
	for (int i = 0; i < 3; i++)
		sigaddset(&held, sigs[i]);
	pthread_sigmask(SIG_BLOCK, &held, NULL);
	srv = server_start(base, cfg, n_loops); /* owns cfg from here */
	if (!srv)
		goto out;
	for (int i = 0; i < 3; i++) {
		sigev[i] = evsignal_new(base, sigs[i], main_on_signal, srv);
		if (!sigev[i] || evsignal_add(sigev[i], NULL) < 0)
			goto out;
	}
	pthread_sigmask(SIG_UNBLOCK, &held, NULL);
	event_base_dispatch(base);
	rc = 0;
out:
	server_free(srv);
	for (int i = 0; i < 3; i++)
		if (sigev[i])
			event_free(sigev[i]);
	metrics_free_all();
	splice_pool_free();
	event_base_free(base);
	return rc;
}
