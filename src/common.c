#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fy_fail(fanyi_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int fy_mul_size(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int fy_grow(void *buf, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    size_t bytes;
    if (!fy_mul_size(n, elem, &bytes)) return 0;
    void *p = realloc(*(void **)buf, bytes);
    if (!p) return 0;
    *(void **)buf = p;
    *cap = n;
    return 1;
}

void *fy_calloc(size_t n, size_t size, fanyi_error *err, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) fy_fail(err, FANYI_ERR_MEMORY, "out of memory allocating %s (%zu x %zu bytes)", what, n, size);
    return p;
}

int fy_read_file(const char *path, char **data, size_t *size, fanyi_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return fy_fail(err, FANYI_ERR_MODEL, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return fy_fail(err, FANYI_ERR_MEMORY, "%s: out of memory reading the file", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return fy_fail(err, FANYI_ERR_MODEL, "%s: read error", path);
    }
    buf[len] = '\0';
    *data = buf;
    *size = len;
    return FANYI_OK;
}

char *fy_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a && dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}
