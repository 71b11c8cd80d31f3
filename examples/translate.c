/*
 * translate MODEL_DIR < in.txt > out.txt -- the smallest program that embeds
 * fanyi: one model loaded once, standard input translated in batches of 32
 * lines, one translation per line. Build it against an installed fanyi with
 *
 *     cc translate.c $(pkg-config --cflags --libs fanyi) -o translate
 */
#define _POSIX_C_SOURCE 200809L /* getline, strdup */
#include <fanyi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 32 };

/* Translates n lines and prints the best translation of each; returns 0 or a FANYI_ERR_* code. */
static int flush(const fanyi_model *model, char **lines, int n) {
    size_t lens[BATCH];
    for (int i = 0; i < n; i++) lens[i] = strlen(lines[i]);
    fanyi_result *results;
    fanyi_error err;
    int rc = fanyi_translate_text(model, (const char *const *)lines, lens, n, NULL, &results, &err);
    if (rc) {
        fprintf(stderr, "translate: %s\n", err.message);
        return rc;
    }
    for (int i = 0; i < n; i++) puts(results[i].n_hyps ? results[i].hyps[0].text : "");
    fanyi_results_free(results, n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: translate MODEL_DIR < input\n");
        return 1;
    }
    fanyi_error err;
    fanyi_model *model = fanyi_load(argv[1], &err);
    if (!model) {
        fprintf(stderr, "translate: %s\n", err.message);
        return 2;
    }
    char *lines[BATCH];
    int n = 0, rc = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while (!rc && (got = getline(&line, &cap, stdin)) >= 0) {
        if (got > 0 && line[got - 1] == '\n') line[got - 1] = '\0';
        lines[n++] = strdup(line);
        if (n == BATCH) {
            rc = flush(model, lines, n);
            while (n) free(lines[--n]);
        }
    }
    if (!rc && n) rc = flush(model, lines, n);
    while (n) free(lines[--n]);
    free(line);
    fanyi_free(model);
    return rc ? 3 : 0;
}
