/*
 * sentences.h -- where a paragraph may be cut into sentences.
 *
 * fy_sentence_ends() finds the byte offsets just after each sentence in a
 * UTF-8 line: after . ! ? (and … ; :) when whitespace follows and the next
 * word does not start in lower case, and directly after CJK full stops
 * 。！？ (which need no space). Every byte stays in exactly one piece, so
 * cutting at the offsets and joining the pieces gives back the line.
 */
#ifndef FANYI_SENTENCES_H
#define FANYI_SENTENCES_H

#include <stddef.h>

/* Writes up to cap cut offsets (each in (0, len)) into cuts; returns how many. */
size_t fy_sentence_ends(const char *text, size_t len, size_t *cuts, size_t cap);

#endif
