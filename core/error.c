/* error.c: the thread-local error message behind dp_last_error(). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "internal.h"

static _Thread_local char last_error[1024];

const char *dp_last_error(void) { return last_error; }

void dp_clear_error(void) { last_error[0] = '\0'; }

const char *dp_version(void) { return DP_VERSION; }

static void set_message(const char *fmt, va_list ap) {
    vsnprintf(last_error, sizeof last_error, fmt, ap);
}

int dp_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);
    return code;
}

void *dp_fail_null(int code, const char *fmt, ...) {
    (void)code;
    va_list ap;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);
    return NULL;
}

void dp_error_prefix(const char *ctx) {
    char previous[sizeof last_error];
    memcpy(previous, last_error, sizeof previous);
    snprintf(last_error, sizeof last_error, "%.200s: %.800s", ctx, previous);
}
