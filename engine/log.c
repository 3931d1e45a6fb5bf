#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static enum sa_log_level g_level = SA_LOG_INFO;
static sa_log_sink_fn g_sink;
static void *g_sink_user;

void sa_log_set_level(enum sa_log_level level) { g_level = level; }
enum sa_log_level sa_log_get_level(void) { return g_level; }

void sa_log_set_sink(sa_log_sink_fn fn, void *user)
{
    g_sink = fn;
    g_sink_user = user;
}

void sa_log(enum sa_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < g_level || level >= SA_LOG_NONE) return;
    char line[1024];
    int n = snprintf(line, sizeof line, "saserve %s: ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (g_sink) {
        g_sink(level, line, g_sink_user);
        return;
    }
    fprintf(stderr, "%s\n", line);
}

void sa_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "saserve: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
