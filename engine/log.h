/*
 * log.h - levelled logging with printf-format checking.
 *
 * Lines go to stderr unless a sink is installed with sa_log_set_sink (the
 * server installs none: request lines carry their request id in the text).
 * Thread-safe: one line is written with one call. Public: the server logs
 * through it too.
 */
#ifndef SA_LOG_H
#define SA_LOG_H

enum sa_log_level { SA_LOG_DEBUG = 0, SA_LOG_INFO, SA_LOG_WARN, SA_LOG_ERROR, SA_LOG_NONE };

typedef void (*sa_log_sink_fn)(enum sa_log_level level, const char *line, void *user);

void sa_log_set_level(enum sa_log_level level);
enum sa_log_level sa_log_get_level(void);
void sa_log_set_sink(sa_log_sink_fn fn, void *user);
void sa_log(enum sa_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SA_LOGD(...) sa_log(SA_LOG_DEBUG, __VA_ARGS__)
#define SA_LOGI(...) sa_log(SA_LOG_INFO, __VA_ARGS__)
#define SA_LOGW(...) sa_log(SA_LOG_WARN, __VA_ARGS__)
#define SA_LOGE(...) sa_log(SA_LOG_ERROR, __VA_ARGS__)

/* Always-on invariant check for our own state (never for file or client bytes). */
#define SA_ASSERT(cond)                                                          \
    do {                                                                         \
        if (!(cond)) sa_assert_fail(#cond, __FILE__, __LINE__);                  \
    } while (0)
_Noreturn void sa_assert_fail(const char *expr, const char *file, int line);

#endif
