/*
 * err.h — how spillway reports failure.
 *
 * Every fallible function returns 0 on success or a negative SW_E* code, and
 * fills the caller's sw_err with one human sentence saying what went wrong
 * and where ("tensor 'blk.3.attn_q.weight': data [a, b) lies outside the
 * file (size n)"). There are no error globals: the caller owns the buffer,
 * passes NULL if it does not care, and decides what to do. Only main() exits.
 */
#ifndef SW_ERR_H
#define SW_ERR_H

#include <stddef.h>

enum {
    SW_OK = 0,
    SW_EINVAL = -1,       /* bad argument or request */
    SW_EIO = -2,          /* read/write/open failed (errno text included) */
    SW_ENOMEM = -3,       /* allocation failed */
    SW_EFORMAT = -4,      /* input file or data is malformed */
    SW_ENOTFOUND = -5,    /* key, tensor, file or name does not exist */
    SW_ETYPE = -6,        /* value exists but has another type */
    SW_EUNSUPPORTED = -7, /* well-formed, but not something we implement */
    SW_ERANGE = -8,       /* value does not fit the requested type */
    SW_EBUSY = -9,        /* not now: loading, queue full, shutting down */
};

typedef struct sw_err {
    int code;
    char msg[512];
} sw_err;

/* Formats the message into e (if non-NULL) and returns code. */
int sw_errf(sw_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes an existing message: "ctx: old message". Returns e->code. */
int sw_err_prefix(sw_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Short name of a code, e.g. "format error". */
const char *sw_strerror(int code);

#endif
