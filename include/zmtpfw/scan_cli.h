/* scan_cli: `zmtpfw scan [--json] FILE... | -` — offline pickle scanning of
 * files (.pkl crash dumps, pickled caches) with the relay's scanner in
 * collect mode. Streams each file in fixed-size chunks: memory is bounded
 * whatever the file size. */
#ifndef ZMTPFW_SCAN_CLI_H
#define ZMTPFW_SCAN_CLI_H

/* argv[0] is "scan". Exit status: 0 when every file is free of imports, 1
 * when any could import, 2 when a file could not be read (or on usage
 * errors); 2 wins over 1, as grep does. */
int scan_cli_main(int argc, char **argv);

#endif
