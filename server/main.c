/*
 * main.c - the saserve binary: dispatch to a sub-command.
 *
 *   saserve serve ...         the HTTP service (serve.c); also the default with only options
 *   saserve generate ...      text generation on the command line (cli.c)
 *   saserve check-model FILE  validate a GGUF model or a Hugging Face checkpoint directory (exit 2 naming the bad field)
 *   saserve similarity ...    layer-to-layer attention similarity, auto spans, heatmap
 *   saserve perplexity ...    perplexity with and without Shared Attention / re-balancing
 *   saserve recreate ...      phiDNN: PNG grid of originals, corruptions and recreations
 *   saserve quantize IN OUT TYPE  quantised copy of an F32/F16/BF16 GGUF (Q4_K_M, Q6_K, ...)
 */
#include "cli.h"
#include "serve.h"

#include <stdio.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr,
            "usage: saserve COMMAND [options]\n"
            "  serve [--config FILE] [-m MODEL] [--port N] ...   the HTTP service (saserve serve --help)\n"
            "  generate -m MODEL -p PROMPT   generate text (see saserve generate --help)\n"
            "  check-model FILE|DIR          validate a GGUF file or a Hugging Face checkpoint directory\n"
            "  similarity -m MODEL [-f TEXT] attention similarity between layers (which layers to share)\n"
            "  perplexity -m MODEL -f TEXT   perplexity, with --share SPANS / --rebalance\n"
            "  quantize IN OUT TYPE          quantised copy of a GGUF (Q8_0 Q4_0 Q2_K..Q6_K IQ4_NL IQ4_XS Q4_K_M Q5_K_M)\n"
            "  recreate -m PHIDNN --png OUT  phiDNN: originals, corruptions and recreations as a PNG grid\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) return serve_main(argc - 2, argv + 2);
    if (cmd[0] == '-' && strcmp(cmd, "-h") != 0 && strcmp(cmd, "--help") != 0) return serve_main(argc - 1, argv + 1);
    if (strcmp(cmd, "generate") == 0) return cli_generate(argc - 1, argv + 1);
    if (strcmp(cmd, "check-model") == 0 || strcmp(cmd, "--check-model") == 0) return cli_check_model(argc - 1, argv + 1);
    if (strcmp(cmd, "similarity") == 0) return cli_similarity(argc - 1, argv + 1);
    if (strcmp(cmd, "perplexity") == 0) return cli_perplexity(argc - 1, argv + 1);
    if (strcmp(cmd, "recreate") == 0) return cli_recreate(argc - 1, argv + 1);
    if (strcmp(cmd, "quantize") == 0) return cli_quantize(argc - 1, argv + 1);
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage();
        return 0;
    }
    fprintf(stderr, "saserve: unknown command '%s'\n", cmd);
    usage();
    return 1;
}
