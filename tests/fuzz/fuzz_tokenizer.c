/* libFuzzer target: the SentencePiece model parser, then encoding and decoding
 * arbitrary bytes with the committed fixture model. Any crash, leak or
 * undefined behaviour is a bug. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static fy_tokenizer *fixture;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fanyi_error err;
    if (!fixture) {
        const char *path = getenv("FANYI_FUZZ_SPM");
        if (fy_spm_load_file(&fixture, path ? path : "tests/fixtures/bpe-bytes.model", &err)) {
            fprintf(stderr, "%s\n", err.message);
            abort();
        }
    }
    /* 1. The bytes as a model file. */
    fy_tokenizer *t = NULL;
    if (fy_spm_load_memory(&t, data, size, "fuzz.model", &err) == FANYI_OK) {
        fy_ids ids = {0};
        int warnings = 0;
        fy_tokenizer_encode(t, "hello world", 11, &ids, &warnings, &err);
        free(ids.ids);
        fy_tokenizer_free(t);
    }
    /* 2. The bytes as text to encode, and as ids to decode. */
    fy_ids ids = {0};
    fy_text text = {0};
    int warnings = 0;
    if (fy_tokenizer_encode(fixture, (const char *)data, size, &ids, &warnings, &err) == FANYI_OK)
        fy_tokenizer_decode(fixture, ids.ids, ids.n, &text, &err);
    int raw[64];
    size_t n = size / 2 < 64 ? size / 2 : 64;
    for (size_t i = 0; i < n; i++) raw[i] = (data[2 * i] | data[2 * i + 1] << 8) % (fy_tokenizer_size(fixture) + 2);
    text.n = 0;
    fy_tokenizer_decode(fixture, raw, n, &text, &err);
    free(ids.ids);
    free(text.s);
    return 0;
}
