/*
 * alloc_failure MODEL_DIR -- allocation failure as a tested path, in the
 * manner of SQLite's fault-injection tests. The allocator is wrapped at link
 * time (--wrap), so that the Nth allocation the library makes fails; for
 * every N up to the number a whole run makes, a model load, a context and a
 * translation (text and ids) must either succeed with the same output as the
 * run without failures, or fail with FANYI_ERR_MEMORY and a message. Run
 * under AddressSanitizer, nothing may leak or crash. Prints a summary line
 * per outcome for tests/test_api.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanyi.h"

static long calls, fail_at; /* the test's hook: the library itself keeps no such state */

static int fail_now(void) { return ++calls == fail_at; }

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t align, size_t n) { return fail_now() ? NULL : __real_aligned_alloc(align, n); }
char *__wrap_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = __wrap_malloc(n);
    return p ? memcpy(p, s, n) : NULL;
}

/* One whole run into out (at most cap bytes); returns 0 or the first error's code, with its message. */
static int one_run(const char *dir, char *out, size_t cap, fanyi_error *err) {
    out[0] = '\0';
    fanyi_model *model = fanyi_load(dir, err);
    if (!model) return err->code;
    fanyi_context *ctx = fanyi_context_new(2, err);
    int rc = ctx ? 0 : err->code;
    const char *lines[] = {"a man rides a horse", "", "two dogs play in the snow . a woman walks"};
    size_t lens[] = {19, 0, 41};
    fanyi_options opts;
    fanyi_options_default(&opts);
    opts.beam_size = 2;
    opts.nbest = 2;
    opts.split_sentences = 1;
    fanyi_result *res = NULL;
    for (int pass = 0; !rc && pass < 2; pass++) { /* the second pass runs on the warm context */
        rc = fanyi_context_translate_text(ctx, model, lines, lens, 3, &opts, &res, err);
        for (int i = 0; !rc && i < 3; i++)
            for (int j = 0; j < res[i].n_hyps; j++) {
                size_t used = strlen(out);
                snprintf(out + used, cap - used, "%s|%.5f;", res[i].hyps[j].text, res[i].hyps[j].score);
            }
        if (!rc) fanyi_results_free(res, 3);
    }
    const int ids[] = {5, 6, 7}, *src[] = {ids}, len[] = {3};
    if (!rc) rc = fanyi_translate_ids(model, src, len, 1, &opts, &res, err);
    if (!rc) {
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "ids %d", res[0].n_hyps ? res[0].hyps[0].n_ids : -1);
        fanyi_results_free(res, 1);
    }
    fanyi_context_free(ctx);
    fanyi_free(model);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) return 1;
    static char want[1 << 16], got[1 << 16];
    fanyi_error err;
    fail_at = 0;
    calls = 0;
    if (one_run(argv[1], want, sizeof want, &err)) {
        fprintf(stderr, "the run without failures failed: %s\n", err.message);
        return 2;
    }
    long total = calls, as_memory = 0, survived = 0, wrong = 0;
    for (long n = 1; n <= total; n++) {
        fail_at = n;
        calls = 0;
        memset(&err, 0, sizeof err);
        int rc = one_run(argv[1], got, sizeof got, &err);
        if (rc == FANYI_ERR_MEMORY && err.message[0]) as_memory++;
        else if (rc == 0 && !strcmp(got, want)) survived++;
        else {
            wrong++;
            printf("allocation %ld: code %d, message '%s'%s\n", n, rc, err.message, rc ? "" : " (different output)");
        }
    }
    printf("allocations %ld\nreported_as_memory %ld\nsurvived_same_output %ld\nwrong %ld\n", total, as_memory, survived,
           wrong);
    return 0;
}
