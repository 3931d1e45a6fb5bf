/*
 * fuzz_config.c - libFuzzer target for the configuration loader. The input is
 * split at the first 0xFF byte: before it, a JSON configuration file; after
 * it, NUL-separated command-line arguments, those starting with "SASERVE_"
 * going to the environment instead. Any crash, sanitizer report or leak is a
 * bug; so is a failure without a message naming "config:".
 */
#include "config/config.c"

#include <stdint.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    const uint8_t *sep = memchr(data, 0xFF, size);
    size_t file_len = sep ? (size_t)(sep - data) : size;
    char path[] = "/tmp/saserve-fuzz-config-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    if (write(fd, data, file_len) != (ssize_t)file_len) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    char *args = malloc(size + 2);
    char *argv[66], *envp[34];
    int argc = 0, envc = 0;
    argv[argc++] = "--config";
    argv[argc++] = path;
    if (sep && args) {
        size_t n = size - file_len - 1;
        memcpy(args, sep + 1, n);
        args[n] = 0;
        for (char *p = args; p < args + n && argc < 64 && envc < 32; p += strlen(p) + 1) {
            if (!strncmp(p, "SASERVE_", 8)) envp[envc++] = p;
            else argv[argc++] = p;
        }
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    struct config c;
    char msg[256] = "";
    bool help;
    int rc = config_load(&c, argc, argv, envp, &help, msg, sizeof msg);
    if (rc != 0 && strncmp(msg, "config: ", 8) != 0) abort();
    free(args);
    unlink(path);
    return 0;
}
