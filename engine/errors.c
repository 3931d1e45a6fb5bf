#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

int sa_errf(int code, char *msg, size_t msg_len, const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *sa_err_str(int code)
{
    switch (code) {
#define SA_ERR_STR(name, val, msg) case val: return msg;
        SA_ERR_MAP(SA_ERR_STR)
#undef SA_ERR_STR
    }
    return "unknown error";
}

const char *sa_err_name(int code)
{
    switch (code) {
#define SA_ERR_NAME(name, val, msg) case val: return "SA_ERR_" #name;
        SA_ERR_MAP(SA_ERR_NAME)
#undef SA_ERR_NAME
    }
    return "SA_ERR_UNKNOWN";
}
