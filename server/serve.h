/* serve.h - the `saserve serve` sub-command (HTTP service); returns the exit status. */
#ifndef SA_SERVE_H
#define SA_SERVE_H

int serve_main(int argc, char **argv);

#endif
