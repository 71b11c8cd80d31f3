/*
 * common.h -- error reporting and small helpers shared by every module.
 *
 * Every fallible function returns a FANYI_* status and fills a fanyi_error
 * whose message names the file, key or tensor at fault. fy_fail() formats
 * the message and returns the code, so call sites read `return fy_fail(...)`.
 */
#ifndef FANYI_COMMON_H
#define FANYI_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "fanyi.h"

#if defined(__GNUC__)
#define FY_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FY_PRINTF(a, b)
#endif

int fy_fail(fanyi_error *err, int code, const char *fmt, ...) FY_PRINTF(3, 4);

/* Multiplies counts with overflow checking; returns 0 on overflow. */
int fy_mul_size(size_t a, size_t b, size_t *out);

/* Allocation that reports failure through err (NULL returned). */
void *fy_calloc(size_t n, size_t size, fanyi_error *err, const char *what);

/* Makes room for `need` elements of `elem` bytes in a growable array *buf of
 * capacity *cap (doubling); returns 0 if memory runs out (*buf unchanged). */
int fy_grow(void *buf, size_t *cap, size_t need, size_t elem);

/* Reads a whole (small) file; caller frees *data. */
int fy_read_file(const char *path, char **data, size_t *size, fanyi_error *err);

/* Joins dir and name into a newly allocated path. */
char *fy_path_join(const char *dir, const char *name);

#endif
