/* main: command line, config, event loop. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "zmtpfw/config.h"
#include "zmtpfw/listener.h"
#include "zmtpfw/log.h"

static const char main_usage[] =
	"usage: zmtpfw -c FILE            run with a config file (foreground)\n"
	"       zmtpfw -t -c FILE         check a config file and exit\n"
	"       zmtpfw --listen ADDR --upstream ADDR --allow CIDR[,CIDR...]\n"
	"              [--allow-pickle-from CIDR[,CIDR...]] [--log-only]\n"
	"                                 run one route without a file\n"
	"       zmtpfw --help | --version\n"
	"\n"
	"ADDR is HOST:PORT, [V6]:PORT, or (upstream only) unix:/path.\n"
	"Logs are JSON lines on stderr. See README.md and conf/zmtpfw.conf.\n";

static void main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;
	log_event(LOG_INFO, NULL, NULL, "shutdown", LOG_STR("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"),
		  LOG_END);
	event_base_loopexit(base, NULL);
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
		config_free(cfg);
		return 0;
	}
	log_setup(cfg->log_level, cfg->log_format);
	signal(SIGPIPE, SIG_IGN);

	struct event_base *base = event_base_new();
	struct listener *lst = calloc(cfg->n_routes, sizeof(*lst));
	struct event *sigint = NULL, *sigterm = NULL;
	size_t opened = 0;
	if (!base || !lst)
		goto out;
	sigint = evsignal_new(base, SIGINT, main_on_signal, base);
	sigterm = evsignal_new(base, SIGTERM, main_on_signal, base);
	if (!sigint || !sigterm || evsignal_add(sigint, NULL) < 0 || evsignal_add(sigterm, NULL) < 0)
		goto out;
	for (; opened < cfg->n_routes; opened++)
		if (listener_open(&lst[opened], &cfg->routes[opened], base) < 0)
			goto out;
	event_base_dispatch(base);
	rc = 0;
out:
	for (size_t i = 0; i < opened + (opened < cfg->n_routes ? 1 : 0) && lst; i++)
		listener_close(&lst[i]);
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	free(lst);
	if (base)
		event_base_free(base);
	config_free(cfg);
	return rc;
}
