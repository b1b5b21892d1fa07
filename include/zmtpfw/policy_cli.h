/* policy_cli: `zmtpfw learn [LOGFILE...|-]` (a pickle_globals list from
 * the log of a route in learn mode) and `zmtpfw profile [NAME]` (the
 * shipped profiles). argv[0] is the subcommand. Exit 0, or 2 on errors. */
#ifndef ZMTPFW_POLICY_CLI_H
#define ZMTPFW_POLICY_CLI_H

int policy_cli_learn(int argc, char **argv);
int policy_cli_profile(int argc, char **argv);

#endif
