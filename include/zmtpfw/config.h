/* config: libconfig file (or command-line flags) -> immutable, validated
 * snapshot. Nothing else in zmtpfw reads libconfig. */
#ifndef ZMTPFW_CONFIG_H
#define ZMTPFW_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "zmtpfw/cidr.h"
#include "zmtpfw/log.h"
#include "zmtpfw/pickle_policy.h"

#define CONFIG_MAX_ROUTES 256
#define CONFIG_MAX_MECHS 4
#define CONFIG_MAX_SOCKET_TYPES 24
#define CONFIG_MAX_THREADS 64 /* event loops: metrics shards and memory slots are sized by it */

enum config_mode { CONFIG_MODE_ENFORCE = 0, CONFIG_MODE_LOG_ONLY };
enum config_pickle { CONFIG_PICKLE_DROP = 0, CONFIG_PICKLE_ALLOW };
enum config_violation { CONFIG_ON_VIOLATION_DROP_MESSAGE = 0, CONFIG_ON_VIOLATION_CLOSE };
/* What the scanner may assume about the worker's unpickling. */
enum config_loader {
	CONFIG_LOADER_ANY = 0, /* custom Unpickler, copyreg extensions, persistent_load */
	CONFIG_LOADER_PLAIN,   /* only pickle.loads(frame), empty extension registry */
	CONFIG_LOADER_STOCK,   /* the default: stock CPython, empty extension
				  registry, no persistent_load; buffers= may
				  be passed (NEXT_BUFFER) */
};

/* A resolved socket address with its original text (for logs). */
struct config_addr {
	struct sockaddr_storage sa; /* AF_INET, AF_INET6 or AF_UNIX */
	socklen_t len;              /* valid length of sa */
	char text[128];             /* as written: "0.0.0.0:5555", "[::1]:5555", "unix:/p" */
};

/* Defaults for the size and time limits. */
#define CONFIG_DEF_MAX_FRAME (256ull << 20)
#define CONFIG_DEF_MAX_MESSAGE (256ull << 20)
#define CONFIG_DEF_HANDSHAKE_MS 10000u
#define CONFIG_DEF_MAX_CONNS 1024u
/* One source address may hold 64 of the 1,024: more than the engines'
 * own fan-in from one host (a connection per socket per process: DP ranks,
 * tokenizer and detokenizer processes, a few dozen at most), and at least
 * 16 sources are needed to fill a route. */
#define CONFIG_DEF_MAX_CONNS_PER_PEER 64u
#define CONFIG_DEF_CONNECT_MS 5000u
#define CONFIG_DEF_DRAIN_MS 10000u
/* Process-wide bytes held in connection buffers (frames awaiting a
 * verdict, held messages, output queues): four connections at the
 * largest message the default limits accept. */
#define CONFIG_DEF_MAX_MEMORY (1ull << 30)
/* A frame still undecided after this many bytes is judged a pickle. */
#define CONFIG_DEF_MAX_SCAN_BYTES (256ull << 20)
#define CONFIG_MAX_SCAN_LIMIT (1ull << 30) /* libevent moves at most INT_MAX bytes per call */

struct config_route {
	char name[64];                   /* unique; "route0".. when not given */
	struct config_addr listen;       /* TCP only */
	struct config_addr upstream;     /* TCP or unix */
	struct cidr_list allow;          /* required; empty admits nobody */
	struct cidr_list allow_pickle_from; /* peers trusted to send pickle */
	enum config_pickle pickle;       /* allow = scanning off for everyone */
	enum config_violation on_violation;
	enum config_loader pickle_loader; /* what the worker's unpickling can do */
	struct ppolicy *pickle_globals;  /* trusted peers' allowlist; NULL: key
					    absent, trusted peers send anything */
	bool pickle_msgpack;             /* judge pickles inside msgpack frames */
	enum config_mode mode;           /* inherits the global mode */
	char mechanisms[CONFIG_MAX_MECHS][20]; /* 20-byte NUL-padded, as on the wire */
	size_t n_mechanisms;
	char socket_types[CONFIG_MAX_SOCKET_TYPES][16]; /* allowed peer Socket-Type */
	size_t n_socket_types;           /* 0: no check */
	uint64_t max_frame_size;         /* bytes, per frame, both directions */
	uint64_t max_message_size;       /* bytes, per message, client->worker */
	uint64_t max_scan_bytes;         /* a frame undecided past this is a pickle */
	uint32_t handshake_timeout_ms;   /* accept -> both READYs relayed */
	uint32_t max_connections;        /* concurrent, per route */
	uint32_t max_connections_per_peer; /* concurrent, per source address; 0: no limit */
	uint32_t idle_timeout_ms;        /* no byte either way for this long: close; 0: never */
	uint32_t connect_timeout_ms;     /* dialling the worker */
	bool splice;                     /* move long judged frame bodies with splice(2) */
	int line;                        /* line of the route in the file, 0 for flags */
};

struct config {
	enum config_mode mode;           /* global default */
	enum log_level log_level;
	enum log_format log_format;
	bool metrics_enabled;            /* metrics = { listen = ...; } present */
	struct config_addr metrics_listen; /* HTTP: /metrics /healthz /readyz (TCP) */
	bool metrics_probe_upstream;     /* /readyz also dials every upstream */
	char user[64];                   /* setuid to this user after binding; "" keeps */
	uint32_t drain_timeout_ms;       /* SIGTERM: wait this long for messages in flight */
	uint64_t max_memory;             /* process-wide buffered bytes; over it the
					    biggest connection closes (reason memory) */
	uint32_t threads;                /* event loops; 0: "auto", one per online core */
	bool reload_closes_disallowed;   /* SIGHUP: close live peers the new allow refuses */
	struct config_route *routes;     /* n_routes entries */
	size_t n_routes;
	char path[512];                  /* file it came from, "" for flags */
	_Atomic unsigned refs;           /* holders besides the loader (config_ref); 0 when
					    new: the creator calls config_ref if it shares it */
};

/* Load and validate a file. On error returns NULL and writes
 * "FILE:LINE: message" into err. */
struct config *config_load_file(const char *path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Single route from command-line flags (allow and allow_pickle_from are
 * comma-separated CIDR lists; allow_pickle_from may be NULL). */
struct config *config_from_flags(const char *listen, const char *upstream,
				 const char *allow, const char *allow_pickle_from,
				 bool log_only, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/* Same as config_load_file on text already in memory; name is used as
 * FILE in messages. n excludes any NUL terminator; text need not have one. */
struct config *config_load_buffer(const char *text, size_t n, const char *name, char *err,
				  size_t errlen) __attribute__((warn_unused_result));

void config_free(struct config *c);

/* Shared snapshots (every event loop's listeners point into the one in
 * force): config_ref takes a hold, config_unref drops one and frees the
 * snapshot with the last. Thread-safe. */
void config_ref(struct config *c);
void config_unref(struct config *c);

/* Parse "HOST:PORT", "[V6]:PORT", "*:PORT" (TCP) or, when allow_unix,
 * "unix:/path". Returns 0 or -1 with a static message in *err. */
int config_parse_addr(const char *s, bool allow_unix, struct config_addr *out,
		      const char **err) __attribute__((warn_unused_result));

#endif
