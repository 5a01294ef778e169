#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sw_errf(sw_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int sw_err_prefix(sw_err *e, const char *fmt, ...)
{
    if (!e)
        return SW_EINVAL;
    char pre[128], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    int n = snprintf(e->msg, sizeof e->msg, "%s: ", pre);
    if (n > 0 && (size_t)n < sizeof e->msg) {
        size_t room = sizeof e->msg - (size_t)n - 1, len = strnlen(old, room);
        memcpy(e->msg + n, old, len);
        e->msg[(size_t)n + len] = 0;
    }
    return e->code;
}

const char *sw_strerror(int code)
{
    switch (code) {
    case SW_OK: return "ok";
    case SW_EINVAL: return "invalid argument";
    case SW_EIO: return "I/O error";
    case SW_ENOMEM: return "out of memory";
    case SW_EFORMAT: return "format error";
    case SW_ENOTFOUND: return "not found";
    case SW_ETYPE: return "wrong type";
    case SW_EUNSUPPORTED: return "unsupported";
    case SW_ERANGE: return "out of range";
    case SW_EBUSY: return "busy";
    }
    return "unknown error";
}
