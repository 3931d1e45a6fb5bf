/*
 * replay.c - runs files through a fuzz target's LLVMFuzzerTestOneInput
 * without libFuzzer, so `make test` replays every committed corpus file under
 * the normal (and sanitizer) builds. Usage: replay FILE_OR_DIR...
 * Directories are walked, sub-directories included (the crafted split sets
 * of build/bad-gguf are directories of shards), up to 4 levels deep.
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static void run_path(const char *path, int depth, int *files, int *errors)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        (*errors)++;
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = depth < 4 ? opendir(path) : NULL;
        struct dirent *e;
        if (!d) (*errors)++;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            run_path(p, depth + 1, files, errors);
        }
        if (d) closedir(d);
    } else if (run_file(path) == 0) {
        (*files)++;
    } else {
        (*errors)++;
    }
}

int main(int argc, char **argv)
{
    int files = 0, errors = 0;
    for (int i = 1; i < argc; i++) run_path(argv[i], 0, &files, &errors);
    printf("replayed %d files, %d unreadable\n", files, errors);
    return errors ? 1 : 0;
}
