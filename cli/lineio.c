#include "lineio.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fy_reader_open(fy_reader *r, int fd) {
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->cap = 1 << 16;
    r->buf = malloc(r->cap);
    return r->buf != NULL;
}

void fy_reader_close(fy_reader *r) {
    free(r->buf);
    r->buf = NULL;
}

/* Reads more bytes, keeping [start, end). Returns bytes read, 0 at EOF, -1 on error. */
static long fill(fy_reader *r) {
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) {
        char *nb = realloc(r->buf, r->cap * 2);
        if (!nb) {
            errno = ENOMEM;
            return -1;
        }
        r->buf = nb;
        r->cap *= 2;
    }
    ssize_t got;
    do got = read(r->fd, r->buf + r->end, r->cap - r->end);
    while (got < 0 && errno == EINTR);
    if (got > 0) r->end += (size_t)got;
    return (long)got;
}

/* Hands out [start, start+n) as a line, dropping a final '\r'. */
static int take(fy_reader *r, size_t n, size_t skip, const char **line, size_t *len) {
    *line = r->buf + r->start;
    r->start += n + skip;
    if (n > 0 && (*line)[n - 1] == '\r') n--;
    *len = n;
    return 1;
}

int fy_reader_line(fy_reader *r, const char **line, size_t *len) {
    size_t scanned = 0; /* bytes after start already known to hold no newline */
    for (;;) {
        char *from = r->buf + r->start + scanned;
        char *nl = memchr(from, '\n', r->end - r->start - scanned);
        if (nl) return take(r, (size_t)(nl - (r->buf + r->start)), 1, line, len);
        scanned = r->end - r->start;
        if (r->eof) return scanned ? take(r, scanned, 0, line, len) : 0;
        long got = fill(r);
        if (got < 0) {
            r->error = 1;
            return -1;
        }
        if (got == 0) r->eof = 1;
    }
}

int fy_reader_ready(fy_reader *r) {
    if (r->eof || memchr(r->buf + r->start, '\n', r->end - r->start)) return 1;
    struct pollfd p = {r->fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}
