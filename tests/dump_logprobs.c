/*
 * dump_logprobs MODEL_DIR PAIRS OUT
 *
 * Test helper: for each line "src ids<TAB>tgt ids" of PAIRS, decodes the
 * target with teacher forcing through the incremental decoder (one sentence
 * per call, and all of them in one batch) and writes the log-probabilities of
 * every step (the target tokens, then EOS) to OUT as raw little-endian f32:
 * per pair int32 rows, int32 vocab, rows*vocab floats. The Python tests
 * compare them with the PyTorch reference.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MAX_TOK 512

static int parse(const char *s, int *out) {
    int n = 0;
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s || n == MAX_TOK) return n;
        out[n++] = (int)v;
        s = end;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: dump_logprobs MODEL_DIR PAIRS OUT\n");
        return 1;
    }
    fy_model m;
    fy_arena arena = {0};
    fanyi_error err = {0};
    fy_config cfg;
    char *config_path = fy_path_join(argv[1], "config.json");
    if (!config_path || fy_config_load(&cfg, config_path, &err) || fy_model_load(&m, argv[1], &cfg, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 2;
    }
    free(config_path);
    FILE *in = fopen(argv[2], "r"), *out = fopen(argv[3], "wb");
    if (!in || !out) return 1;
    char line[16384];
    int V = m.cfg.tgt_vocab_size;
    while (fgets(line, sizeof line, in)) {
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = '\0';
        int src[MAX_TOK + 1], tgt[MAX_TOK], ns = parse(line, src), nt = parse(tab + 1, tgt);
        if (m.cfg.source_eos) src[ns++] = m.cfg.eos_id;
        int offset = 0;
        float *memory;
        fy_decoder dec;
        if (fy_encode(&m, src, &offset, &ns, 1, &memory, NULL, &arena, &err) ||
            fy_decoder_start(&dec, &m, memory, &offset, &ns, 1, 1, nt + 1, NULL, &arena, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return 2;
        }
        float *lp = malloc(sizeof(float) * (size_t)V * (size_t)(nt + 1));
        int row_sent = 0, tok = m.cfg.decoder_start_id;
        for (int t = 0; t <= nt; t++) {
            float lse, *row = lp + (size_t)t * V;
            fy_decoder_step(&dec, &tok, &row_sent, 1, row, &lse);
            for (int v = 0; v < V; v++) row[v] -= lse;
            if (t < nt) tok = tgt[t];
        }
        int rows = nt + 1;
        fwrite(&rows, 4, 1, out);
        fwrite(&V, 4, 1, out);
        fwrite(lp, sizeof(float), (size_t)rows * V, out);
        free(lp);
        fy_arena_reset(&arena);
    }
    fy_arena_free(&arena);
    fclose(in);
    fclose(out);
    fy_model_free(&m);
    return 0;
}
