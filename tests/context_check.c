/*
 * context_check MODEL_DIR -- execution contexts through the public API:
 * a warm context translates with no allocation beyond its results, and gives
 * the same translations one line per call as in one call.
 * Linked with --wrap for the allocator, so every allocation the library
 * makes is counted. Prints "name value" lines for tests/test_api.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanyi.h"

static long allocations;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n) { allocations++; return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { allocations++; return __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { allocations++; return __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t align, size_t n) { allocations++; return __real_aligned_alloc(align, n); }

enum { N = 40 };

int main(int argc, char **argv) {
    if (argc != 2) return 1;
    fanyi_error err;
    fanyi_model *model = fanyi_load(argv[1], &err);
    fanyi_context *ctx = model ? fanyi_context_new(2, &err) : NULL;
    if (!ctx) {
        fprintf(stderr, "%s\n", err.message);
        return 2;
    }
    fanyi_options opts;
    fanyi_options_default(&opts);
    opts.beam_size = 3;
    opts.nbest = 2;
    int ids[N][6], lens[N];
    const int *src[N];
    for (int i = 0; i < N; i++) {
        lens[i] = 1 + i % 6;
        for (int j = 0; j < lens[i]; j++) ids[i][j] = 3 + (i * 7 + j * 3) % 20;
        src[i] = ids[i];
    }
    fanyi_result *all, *one;
    if (fanyi_context_translate_ids(ctx, model, src, lens, N, &opts, &all, &err)) return 3;
    /* One sentence per call on the warm context: the same translations, and only the results allocated. */
    long most = 0, same = 0;
    for (int i = 0; i < N; i++) {
        long before = allocations;
        if (fanyi_context_translate_ids(ctx, model, src + i, lens + i, 1, &opts, &one, &err)) return 4;
        long made = allocations - before, results = 1 + one[0].n_hyps + (one[0].n_hyps ? 1 : 0);
        /* results: the array, the hypothesis array, each hypothesis's ids */
        if (made - results + 1 > most) most = made - results + 1;
        int equal = one[0].n_hyps == all[i].n_hyps;
        for (int j = 0; equal && j < one[0].n_hyps; j++)
            equal = one[0].hyps[j].n_ids == all[i].hyps[j].n_ids && one[0].hyps[j].score == all[i].hyps[j].score &&
                    !memcmp(one[0].hyps[j].ids, all[i].hyps[j].ids, sizeof(int) * (size_t)one[0].hyps[j].n_ids);
        same += equal;
        fanyi_results_free(one, 1);
    }
    printf("same_as_one_call %ld/%d\n", same, N);
    printf("extra_allocations_per_warm_call %ld\n", most - 1);
    /* A context refuses a thread count that is not its own; any model may use it. */
    opts.threads = 5;
    printf("threads_mismatch %d\n", fanyi_context_translate_ids(ctx, model, src, lens, 1, &opts, &one, &err));
    printf("context_threads %d\n", fanyi_context_threads(ctx));
    fanyi_results_free(all, N);
    fanyi_context_free(ctx);
    fanyi_free(model);
    return 0;
}
