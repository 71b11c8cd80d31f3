/*
 * bench_calls MODEL_DIR [LINES_FILE] -- the cost of a call, for programs that
 * embed fanyi: a one-word greedy translation repeated on a warm execution
 * context and without one (a context made per call), and N one-line calls on
 * one context against one N-line call. Prints a Markdown table.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fanyi.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void check(int rc, const fanyi_error *err) {
    if (rc) {
        fprintf(stderr, "bench_calls: %s\n", err->message);
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_calls MODEL_DIR [LINES_FILE]\n");
        return 1;
    }
    fanyi_error err;
    fanyi_model *model = fanyi_load(argv[1], &err);
    if (!model) check(1, &err);
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    fanyi_context *ctx = fanyi_context_new(threads, &err);
    if (!ctx) check(1, &err);
    fanyi_options greedy;
    fanyi_options_default(&greedy);
    greedy.beam_size = 1;
    const char *word[] = {"dog"};
    size_t word_len[] = {3};
    fanyi_result *r;
    enum { REPS = 2000 };
    check(fanyi_context_translate_text(ctx, model, word, word_len, 1, &greedy, &r, &err), &err);
    fanyi_results_free(r, 1);
    double t0 = now();
    for (int i = 0; i < REPS; i++) {
        check(fanyi_context_translate_text(ctx, model, word, word_len, 1, &greedy, &r, &err), &err);
        fanyi_results_free(r, 1);
    }
    double warm = (now() - t0) / REPS;
    greedy.threads = threads;
    fanyi_options fresh = greedy;
    t0 = now();
    for (int i = 0; i < REPS / 4; i++) {
        check(fanyi_translate_text(model, word, word_len, 1, &fresh, &r, &err), &err);
        fanyi_results_free(r, 1);
    }
    double cold = (now() - t0) / (REPS / 4);
    const char *empty[] = {""};
    size_t empty_len[] = {0};
    t0 = now();
    for (int i = 0; i < REPS; i++) {
        check(fanyi_context_translate_text(ctx, model, empty, empty_len, 1, &greedy, &r, &err), &err);
        fanyi_results_free(r, 1);
    }
    double bare = (now() - t0) / REPS;
    printf("| call | ms per call |\n|---|---|\n");
    printf("| the call itself: an empty line, warm context | %.4f |\n", bare * 1e3);
    printf("| one-word greedy, warm context (%d threads) | %.3f |\n", threads, warm * 1e3);
    printf("| one-word greedy, context per call (%d threads) | %.3f |\n", threads, cold * 1e3);

    if (argc > 2) {
        FILE *f = fopen(argv[2], "r");
        if (!f) return 1;
        char *lines[1000], *line = NULL;
        size_t lens[1000], cap = 0;
        int n = 0;
        ssize_t got;
        while (n < 1000 && (got = getline(&line, &cap, f)) > 0) {
            if (line[got - 1] == '\n') line[--got] = '\0';
            lines[n] = strdup(line);
            lens[n++] = (size_t)got;
        }
        free(line);
        fclose(f);
        fanyi_options beam;
        fanyi_options_default(&beam);
        t0 = now();
        for (int i = 0; i < n; i++) {
            check(fanyi_context_translate_text(ctx, model, (const char *const *)lines + i, lens + i, 1, &beam, &r, &err),
                  &err);
            fanyi_results_free(r, 1);
        }
        double single = now() - t0;
        t0 = now();
        check(fanyi_context_translate_text(ctx, model, (const char *const *)lines, lens, n, &beam, &r, &err), &err);
        double batched = now() - t0;
        fanyi_results_free(r, n);
        printf("| %d one-line calls, model's beam, one context | %.1f s total (%.1f lines/s) |\n", n, single,
               n / single);
        printf("| one %d-line call, model's beam | %.1f s (%.1f lines/s, %.1fx) |\n", n, batched, n / batched,
               single / batched);
        for (int i = 0; i < n; i++) free(lines[i]);
    }
    fanyi_context_free(ctx);
    fanyi_free(model);
    return 0;
}
