/*
 * cli.h - the engine's command-line front ends (no HTTP): text generation and
 * model checking. They parse options and print; the work is done by engine.h's
 * one-shot model tools (engine/oneshot.c) and, for phiDNN files, phidnn.h.
 * Each returns a process exit status.
 */
#ifndef SA_CLI_H
#define SA_CLI_H

/* saserve generate -m MODEL -p PROMPT [-n N] [--temp T] ... ; exit 0 / 1 (usage) / 2 (model) */
int cli_generate(int argc, char **argv);
/* saserve check-model FILE: exit 0 if it loads, 2 with one line on stderr naming the field. */
int cli_check_model(int argc, char **argv);

/* saserve similarity -m MODEL [-f TEXT] [--json F] [--png F]: layer attention similarity + auto spans. */
int cli_similarity(int argc, char **argv);
/* saserve perplexity -m MODEL -f TEXT [--share SPANS] [--rebalance]: quality with and without sharing. */
int cli_perplexity(int argc, char **argv);

/* saserve quantize IN OUT TYPE (engine.h: engine_quantize_file): exit 0, 1 (usage / unknown type) or 2 (input or write failed). */
int cli_quantize(int argc, char **argv);
/* check-model for a phiDNN file (cli_vision.c): -1 if path is not a readable GGUF with
 * general.architecture = "phidnn" (the language-model check then runs), else 0 (ok) / 2. */
int cli_check_vision_model(const char *path);
/* saserve recreate -m PHIDNN.gguf --png OUT [--images LIST] [--seed N]: PNG grid of recreations. */
int cli_recreate(int argc, char **argv);

#endif
