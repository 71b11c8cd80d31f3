/*
 * lineio.h -- reading lines from a file descriptor, knowing when to wait.
 *
 * A line is everything up to '\n' (exclusive; a '\r' before it is dropped,
 * so CRLF input works); NUL bytes are kept, lines may be of any length. The
 * reader can tell whether another line is available without blocking, which
 * lets the CLI batch lines that are already there and flush a translation as
 * soon as the writer on the other side of a pipe or terminal pauses.
 */
#ifndef FANYI_LINEIO_H
#define FANYI_LINEIO_H

#include <stddef.h>

typedef struct fy_reader {
    int fd;
    char *buf;
    size_t start, end, cap;
    int eof, error;
} fy_reader;

int fy_reader_open(fy_reader *r, int fd);
void fy_reader_close(fy_reader *r);

/* Next line into *line (owned by the reader, valid until the next call).
 * Returns 1 for a line, 0 at the end, -1 on a read error (errno set). */
int fy_reader_line(fy_reader *r, const char **line, size_t *len);

/* 1 if a whole line (or the end of input) can be read without blocking. */
int fy_reader_ready(fy_reader *r);

#endif
