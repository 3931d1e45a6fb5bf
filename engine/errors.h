/*
 * errors.h - the one list of saserve error codes.
 *
 * Every engine, config and server function that can fail returns 0 on success
 * or one of these negative codes. The list is an X-macro so the enum, the
 * human message (sa_err_str) and the symbolic name (sa_err_name) can never
 * drift apart. The HTTP layer maps codes to statuses in exactly one table
 * (server/response.c); nothing else decides a status. Public (engine.h).
 */
#ifndef SA_ERRORS_H
#define SA_ERRORS_H

#include <stddef.h>

#define SA_ERR_MAP(X)                                                        \
    X(OK, 0, "success")                                                      \
    X(NOMEM, -1, "out of memory")                                            \
    X(IO, -2, "input/output error")                                          \
    X(BAD_MODEL, -3, "invalid model file")                                   \
    X(UNSUPPORTED, -4, "unsupported model feature")                          \
    X(NOT_FOUND, -5, "not found")                                            \
    X(TYPE, -6, "value has the wrong type")                                  \
    X(INVALID_ARG, -7, "invalid argument")                                   \
    X(RANGE, -8, "value out of range")                                       \
    X(CONTEXT_FULL, -9, "context length exceeded")                           \
    X(BUSY, -10, "server busy, try again later")                             \
    X(CANCELLED, -11, "request cancelled")                                   \
    X(TOKENIZER, -12, "tokenizer error")                                     \
    X(TOO_LARGE, -13, "payload too large")                                   \
    X(INTERNAL, -14, "internal error")                                       \
    X(NUMERIC, -15, "the model produced non-finite values")

enum sa_err {
#define SA_ERR_ENUM(name, val, msg) SA_ERR_##name = (val),
    SA_ERR_MAP(SA_ERR_ENUM)
#undef SA_ERR_ENUM
};

/* Format a one-line message into msg (if msg and msg_len) and return code:
 * `return sa_errf(SA_ERR_BAD_MODEL, msg, len, "tensor '%s': ...", name);` */
int sa_errf(int code, char *msg, size_t msg_len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Static strings; never NULL (unknown codes give "unknown error"). Any thread. */
const char *sa_err_str(int code);
const char *sa_err_name(int code);

#endif
