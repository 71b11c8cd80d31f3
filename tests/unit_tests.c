/*
 * unit_tests.c -- C-level tests of the parsers, kernels and I/O helpers.
 * Prints "ok NAME" / "FAIL NAME: why" per test and exits non-zero on failure;
 * tests/test_unit.py runs it as part of `make test`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "gemm.h"
#include "lineio.h"
#include "ops.h"
#include "sentences.h"
#include "tokenizer.h"
#include "weights.h"

static int failures;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            printf("FAIL %s:%d: ", __func__, __LINE__);                                                                \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
            failures++;                                                                                                \
            return;                                                                                                    \
        }                                                                                                              \
    } while (0)

static const char *MINIMAL =
    "{\"format\":\"fanyi\",\"format_version\":1,\"src_vocab_size\":10,\"tgt_vocab_size\":12,\"d_model\":8,"
    "\"n_heads\":2,\"d_ff\":16,\"encoder_layers\":1,\"decoder_layers\":1,\"max_positions\":16,\"pad_id\":0,"
    "\"eos_id\":2%s}";

static int parse_with(const char *extra, fy_config *c, fanyi_error *err) {
    char json[1024];
    snprintf(json, sizeof json, MINIMAL, extra);
    return fy_config_parse(c, json, strlen(json), "config.json", err);
}

static void test_config_defaults(void) {
    fy_config c;
    fanyi_error err = {0};
    CHECK(parse_with("", &c, &err) == FANYI_OK, "%s", err.message);
    CHECK(c.activation == FY_ACT_RELU && !c.pre_norm && c.scale_embeddings && c.tied_output, "defaults");
    CHECK(c.beam_size == 5 && c.source_eos && c.decoder_start_id == 0 && !strcmp(c.weights, "model.safetensors"),
          "defaults");
    fy_config_free(&c);
    printf("ok %s\n", __func__);
}

static void test_config_errors(void) {
    struct { const char *extra, *needle; } cases[] = {
        {",\"activation\":\"tanh\"", "'activation'"},   {",\"d_model\":7", "'d_model' appears twice"},
        {",\"layernorm_eps\":\"x\"", "'layernorm_eps'"}, {",\"forbidden_ids\":[99]", "forbidden_ids"},
        {",\"source_spm\":\"/etc/passwd\"", "inside the model"}, {",\"scale_embeddings\":1", "true or false"},
        {",\"positions\":\"rotary\"", "'positions'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fy_config c;
        fanyi_error err = {0};
        CHECK(parse_with(cases[i].extra, &c, &err) == FANYI_ERR_MODEL, "accepted %s", cases[i].extra);
        CHECK(strstr(err.message, cases[i].needle) && strstr(err.message, "config.json"), "message '%s' for %s",
              err.message, cases[i].extra);
    }
    fy_config c;
    fanyi_error err = {0};
    CHECK(fy_config_parse(&c, "[1,2]", 5, "x.json", &err) == FANYI_ERR_MODEL, "array accepted");
    CHECK(fy_config_parse(&c, "{\"format\":\"fanyi\"", 17, "x.json", &err) == FANYI_ERR_MODEL, "truncated accepted");
    printf("ok %s\n", __func__);
}

/* Builds a safetensors image in memory. */
static size_t st_image(unsigned char *buf, const char *header, const void *data, size_t data_len) {
    size_t n = strlen(header);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    memcpy(buf + 8 + n, data, data_len);
    return 8 + n + data_len;
}

static void test_weights_parse_and_convert(void) {
    unsigned char buf[4096];
    /* f16: 1.0, -2.0, 0.5, 65504 ; f32 2x1 ; i8 2x2 with scales */
    unsigned char data[64] = {0};
    uint16_t h[4] = {0x3C00, 0xC000, 0x3800, 0x7BFF};
    memcpy(data, h, 8);
    float f[2] = {3.5f, -1.25f};
    memcpy(data + 8, f, 8);
    int8_t q[4] = {127, -127, 1, 0};
    memcpy(data + 16, q, 4);
    float s[2] = {0.5f, 2.0f};
    memcpy(data + 20, s, 8);
    const char *header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                         "\"f\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[8,16]},"
                         "\"q\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[16,20]},"
                         "\"q.scale\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[20,28]},"
                         "\"__metadata__\":{\"format\":\"fanyi\"}}";
    size_t n = st_image(buf, header, data, 28);
    fy_weights *w;
    fanyi_error err = {0};
    CHECK(fy_weights_from_memory(&w, buf, n, "m.safetensors", &err) == FANYI_OK, "%s", err.message);
    const float *p;
    int64_t s4[1] = {4}, s21[2] = {2, 1}, s22[2] = {2, 2};
    CHECK(fy_weights_f32(w, "h", 1, s4, &p, &err) == FANYI_OK, "%s", err.message);
    CHECK(p[0] == 1.0f && p[1] == -2.0f && p[2] == 0.5f && p[3] == 65504.0f, "f16 values %g %g %g %g", p[0], p[1],
          p[2], p[3]);
    CHECK(fy_weights_f32(w, "f", 2, s21, &p, &err) == FANYI_OK && p[0] == 3.5f && p[1] == -1.25f, "f32");
    CHECK(fy_weights_f32(w, "q", 2, s22, &p, &err) == FANYI_OK, "%s", err.message);
    CHECK(p[0] == 63.5f && p[1] == -63.5f && p[2] == 2.0f && p[3] == 0.0f, "i8 values");
    CHECK(fy_weights_f32(w, "f", 1, s4, &p, &err) == FANYI_ERR_MODEL && strstr(err.message, "shape [2, 1]"),
          "shape check: %s", err.message);
    CHECK(fy_weights_unused(w) == NULL, "all used");
    fy_weights_close(w);
    printf("ok %s\n", __func__);
}

static void test_weights_rejects(void) {
    unsigned char buf[4096], data[16] = {0};
    const char *bad[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}",                      /* size */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,17]}}",                      /* bounds */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",                       /* overlap */
        "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}",                        /* dtype */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}",                      /* shape */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}",                         /* offsets */
        "{\"a\":[1,2]}",                                                                          /* entry */
        "not json at all",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = st_image(buf, bad[i], data, 16);
        fy_weights *w = NULL;
        fanyi_error err = {0};
        CHECK(fy_weights_from_memory(&w, buf, n, "x.safetensors", &err) == FANYI_ERR_MODEL, "accepted case %zu", i);
        CHECK(strstr(err.message, "x.safetensors") != NULL, "message %s", err.message);
    }
    fy_weights *w;
    fanyi_error err = {0};
    CHECK(fy_weights_from_memory(&w, buf, 5, "x", &err) == FANYI_ERR_MODEL, "5 bytes accepted");
    printf("ok %s\n", __func__);
}

/* fanyi's own kernels give the fma chain's bits; OpenBLAS sums in its own
 * order, so there a result must be within rounding of it (and batch-invariant,
 * which the callers check bit for bit). */
static int same_as_chain(float got, float chain, int K) {
    if (!fy_gemm_openblas()) return got == chain;
    return fabsf(got - chain) <= 1e-6f * (float)K + 1e-6f;
}

static void test_gemm_invariance_and_kernels(void) {
    enum { M = 23, N = 37, K = 29 };
    float x[M * K], w[N * K], y[M * N], y1[N], ref[M * N];
    srand(7);
    for (int i = 0; i < M * K; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < N * K; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
    fy_packed p;
    CHECK(fy_pack(w, N, K, &p), "pack");
    fy_gemm(x, M, &p, NULL, y, N, NULL);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float acc = 0;
            for (int k = 0; k < K; k++) acc = fmaf(x[m * K + k], w[n * K + k], acc);
            ref[m * N + n] = acc;
        }
    for (int i = 0; i < M * N; i++)
        CHECK(same_as_chain(y[i], ref[i], K), "kernel %s differs from the fma chain at %d", fy_gemm_kernel(), i);
    for (int m = 0; m < M; m++) {
        fy_gemm(x + m * K, 1, &p, NULL, y1, N, NULL);
        CHECK(!memcmp(y1, y + m * N, sizeof y1), "row %d alone differs", m);
    }
    /* Threads share out the panels; the bits must not change. */
    enum { BM = 40, BN = 300, BK = 256 };
    float *bx = malloc(sizeof(float) * BM * BK), *bw = malloc(sizeof(float) * BN * BK);
    float *b1 = malloc(sizeof(float) * BM * BN), *b3 = malloc(sizeof(float) * BM * BN);
    for (int i = 0; i < BM * BK; i++) bx[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < BN * BK; i++) bw[i] = (float)rand() / RAND_MAX - 0.5f;
    fy_packed bp;
    CHECK(fy_pack(bw, BN, BK, &bp), "pack");
    fy_pool *pool = fy_pool_create(3);
    CHECK(pool && fy_pool_threads(pool) == 3, "pool");
    fy_gemm(bx, BM, &bp, NULL, b1, BN, NULL);
    fy_gemm(bx, BM, &bp, NULL, b3, BN, pool);
    int same = !memcmp(b1, b3, sizeof(float) * BM * BN);
    fy_pool_free(pool);
    fy_packed_free(&bp);
    free(bx), free(bw), free(b1), free(b3);
    CHECK(same, "3 threads changed the result");
    fy_packed_free(&p);
    printf("ok %s (%s)\n", __func__, fy_gemm_kernel());
}

/* The int8 semantics of gemm.h, element by element: the tests' reference. */
static float int8_reference(const float *x, const int8_t *q, float scale, int K) {
    float mx = 0;
    for (int k = 0; k < K; k++) mx = fabsf(x[k]) > mx ? fabsf(x[k]) : mx;
    float inv = mx > 0 ? 63.0f / mx : 0, sx = mx > 0 ? mx / 63.0f : 1;
    int32_t acc = 0;
    for (int k = 0; k < K; k++) {
        float v = nearbyintf(x[k] * inv);
        acc += (int32_t)(v > 63 ? 63 : v < -63 ? -63 : v) * q[k];
    }
    return ((float)acc * sx) * scale;
}

/* int8 semantics: y = ((float)sum(xq * q) * sx) * scale, xq = round(x * 63 / max|x|). */
static void test_gemm_int8(void) {
    enum { M = 13, N = 40, K = 37 };
    float x[M * K], y[M * N], y1[N], scale[N];
    int8_t q[N * K];
    srand(11);
    for (int i = 0; i < M * K; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < N * K; i++) q[i] = (int8_t)(rand() % 255 - 127);
    for (int n = 0; n < N; n++) scale[n] = 0.01f + n * 1e-4f;
    memset(x + 5 * K, 0, sizeof(float) * K); /* an all-zero row */
    fy_packed p;
    CHECK(fy_pack_q8(q, scale, N, K, &p), "pack");
    fy_gemm(x, M, &p, NULL, y, N, NULL);
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            float want = int8_reference(x + m * K, q + n * K, scale[n], K);
            CHECK(y[m * N + n] == want, "row %d col %d: %g != %g", m, n, y[m * N + n], want);
        }
        fy_gemm(x + m * K, 1, &p, NULL, y1, N, NULL);
        CHECK(!memcmp(y1, y + m * N, sizeof y1), "row %d alone differs", m);
    }
    fy_pool *pool = fy_pool_create(2);
    float y2[M * N];
    fy_gemm(x, M, &p, NULL, y2, N, pool);
    CHECK(!memcmp(y, y2, sizeof y), "threads changed int8 results");
    fy_packed_free(&p);
    /* Big enough to run in parallel, with the rows quantized once for all tasks. */
    enum { BM = 40, BN = 300, BK = 256 };
    float *bx = malloc(sizeof(float) * BM * BK), *b1 = malloc(sizeof(float) * BM * BN), *b2 = malloc(sizeof(float) * BM * BN);
    int8_t *bq = malloc(BN * BK);
    float bscale[BN];
    for (int i = 0; i < BM * BK; i++) bx[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < BN * BK; i++) bq[i] = (int8_t)(rand() % 255 - 127);
    for (int n = 0; n < BN; n++) bscale[n] = 0.01f;
    fy_packed bp;
    CHECK(fy_pack_q8(bq, bscale, BN, BK, &bp), "pack");
    fy_gemm(bx, BM, &bp, NULL, b1, BN, NULL);
    fy_gemm(bx, BM, &bp, NULL, b2, BN, pool);
    int same = !memcmp(b1, b2, sizeof(float) * BM * BN);
    fy_packed_free(&bp);
    free(bx), free(b1), free(b2), free(bq);
    fy_pool_free(pool);
    CHECK(same, "parallel int8 (rows quantized once) differs");
    printf("ok %s (%s)\n", __func__, fy_gemm_kernel());
}

/* Every edge-tile shape, f32 and int8, against the scalar definition, bit for bit
 * (f32 through OpenBLAS: within rounding, and each row as if alone, bit for bit). */
static void test_gemm_shapes(void) {
    static const int Ms[] = {1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14};
    static const int Ns[] = {1, 5, 16, 17, 31, 33, 48, 70};
    static const int Ks[] = {1, 3, 4, 7, 8, 9, 33, 130};
    float x[14 * 130], w[70 * 130], y[14 * 70], scale[70];
    int8_t q[70 * 130];
    srand(3);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i] = (int8_t)(rand() % 255 - 127);
    for (int n = 0; n < 70; n++) scale[n] = 0.02f;
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++) {
                int M = Ms[a], N = Ns[b], K = Ks[c];
                fy_packed pf, pq;
                CHECK(fy_pack(w, N, K, &pf) && fy_pack_q8(q, scale, N, K, &pq), "pack");
                fy_gemm(x, M, &pf, NULL, y, N, NULL);
                float alone[70];
                for (int m = 0; m < M; m++) {
                    fy_gemm(x + m * K, 1, &pf, NULL, alone, N, NULL);
                    for (int n = 0; n < N; n++) {
                        float acc = 0;
                        for (int k = 0; k < K; k++) acc = fmaf(x[m * K + k], w[n * K + k], acc);
                        CHECK(same_as_chain(y[m * N + n], acc, K), "f32 M=%d N=%d K=%d at (%d,%d)", M, N, K, m, n);
                        CHECK(y[m * N + n] == alone[n], "f32 M=%d N=%d K=%d: row %d alone differs", M, N, K, m);
                    }
                }
                fy_gemm(x, M, &pq, NULL, y, N, NULL);
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++)
                        CHECK(y[m * N + n] == int8_reference(x + m * K, q + n * K, scale[n], K),
                              "int8 M=%d N=%d K=%d at (%d,%d)", M, N, K, m, n);
                fy_packed_free(&pf);
                fy_packed_free(&pq);
            }
    printf("ok %s (%s)\n", __func__, fy_gemm_kernel());
}

static void test_line_reader(void) {
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    const char input[] = "one\r\n\ntwo\0x\nlast";
    CHECK(write(fds[1], input, sizeof input - 1) == (ssize_t)(sizeof input - 1), "write");
    close(fds[1]);
    fy_reader r;
    CHECK(fy_reader_open(&r, fds[0]), "open");
    const char *line;
    size_t len;
    CHECK(fy_reader_line(&r, &line, &len) == 1 && len == 3 && !memcmp(line, "one", 3), "crlf line");
    CHECK(fy_reader_line(&r, &line, &len) == 1 && len == 0, "empty line");
    CHECK(fy_reader_line(&r, &line, &len) == 1 && len == 5 && !memcmp(line, "two\0x", 5), "nul line");
    CHECK(fy_reader_ready(&r), "ready at end");
    CHECK(fy_reader_line(&r, &line, &len) == 1 && len == 4 && !memcmp(line, "last", 4), "last line");
    CHECK(fy_reader_line(&r, &line, &len) == 0, "eof");
    fy_reader_close(&r);
    close(fds[0]);
    printf("ok %s\n", __func__);
}

static void test_tokenizer_rejects_garbage(void) {
    const unsigned char junk[][8] = {{0}, {0x0a, 0x80}, {0x0a, 0x02, 0x0a, 0x00}, {0xff, 0xff, 0xff, 0xff}};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        fy_tokenizer *t = NULL;
        fanyi_error err = {0};
        CHECK(fy_spm_load_memory(&t, junk[i], sizeof junk[i], "junk.model", &err) == FANYI_ERR_MODEL, "case %zu", i);
        CHECK(strstr(err.message, "junk.model") != NULL, "message %s", err.message);
    }
    printf("ok %s\n", __func__);
}

static void test_sentence_ends(void) {
    const char *text = "A man rides. The dog runs! is lower? Dr. Smith. \xe6\x88\x91\xe3\x80\x82\xe4\xbd\xa0. End";
    size_t cuts[16], n = fy_sentence_ends(text, strlen(text), cuts, 16);
    /* A simple splitter: "Dr." before a capital is a boundary too. */
    const char *want[] = {"A man rides. ", "The dog runs! is lower? ", "Dr. ", "Smith. ", "\xe6\x88\x91\xe3\x80\x82",
                          "\xe4\xbd\xa0. ", "End"};
    CHECK(n == 6, "%zu cuts", n);
    size_t begin = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t end = i < n ? cuts[i] : strlen(text);
        CHECK(end - begin == strlen(want[i]) && !memcmp(text + begin, want[i], end - begin), "piece %zu: '%.*s'", i,
              (int)(end - begin), text + begin);
        begin = end;
    }
    CHECK(fy_sentence_ends("no boundary here", 16, cuts, 16) == 0, "false cut");
    printf("ok %s\n", __func__);
}

/* FNV-1a of the bytes: tests/test_unit.py compares these between the vector and portable kernels. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211u;
    return h;
}

/* The row kernels (attention, LayerNorm, log-sum-exp, the beam scan, int8
 * quantization through gemm) on awkward sizes: their bits must not depend on
 * the kernel, and they must be right. */
static void test_row_kernels(void) {
    enum { D = 96, KEYS = 19 };
    float q[D], kv[2 * KEYS][D], out[D], ref[D], scores[KEYS], gamma[D], beta[D], y[D];
    const float *keys[KEYS], *vals[KEYS];
    srand(11);
    for (int i = 0; i < D; i++) {
        q[i] = (float)rand() / RAND_MAX - 0.5f;
        gamma[i] = 1.0f + (float)rand() / RAND_MAX;
        beta[i] = (float)rand() / RAND_MAX - 0.5f;
    }
    for (int j = 0; j < 2 * KEYS; j++)
        for (int i = 0; i < D; i++) kv[j][i] = 2.0f * ((float)rand() / RAND_MAX - 0.5f);
    for (int j = 0; j < KEYS; j++) keys[j] = kv[j], vals[j] = kv[KEYS + j];
    uint64_t h = 14695981039346656037u;
    static const int heads[] = {1, 2, 3, 8}; /* head sizes 96, 48, 32 and 12 (not a multiple of 8) */
    for (int hi = 0; hi < 4; hi++)
        for (int n = 1; n <= KEYS; n++) {
            fy_attend(q, keys, vals, n, D, heads[hi], scores, out);
            h = fnv(h, out, sizeof out);
            if (n != KEYS) continue;
            int dh = D / heads[hi]; /* against plain double arithmetic */
            for (int hd = 0; hd < heads[hi]; hd++) {
                double s[KEYS], mx = -1e30, sum = 0;
                for (int j = 0; j < n; j++) {
                    s[j] = 0;
                    for (int i = 0; i < dh; i++) s[j] += (double)q[hd * dh + i] * keys[j][hd * dh + i];
                    s[j] /= sqrt(dh);
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j < n; j++) sum += exp(s[j] - mx);
                for (int i = 0; i < dh; i++) {
                    double acc = 0;
                    for (int j = 0; j < n; j++) acc += exp(s[j] - mx) / sum * vals[j][hd * dh + i];
                    ref[hd * dh + i] = (float)acc;
                }
            }
            for (int i = 0; i < D; i++) CHECK(fabsf(out[i] - ref[i]) < 1e-5f, "attention, %d heads: %g vs %g", heads[hi], out[i], ref[i]);
        }
    for (int n = 1; n <= D; n += 7) {
        fy_layernorm(kv[0], 1, n, gamma, beta, 1e-5f, y);
        h = fnv(h, y, sizeof(float) * (size_t)n);
        float lse = fy_logsumexp(kv[1], n);
        h = fnv(h, &lse, sizeof lse);
        for (float t = -1.0f; t < 1.0f; t += 0.25f) {
            int first = fy_first_above(kv[2], n / 2, n, 0.3f, -0.1f, t);
            int expect = n;
            for (int v = n - 1; v >= n / 2; v--)
                if (-0.1f + (kv[2][v] - 0.3f) > t) expect = v;
            CHECK(first == expect, "fy_first_above from %d of %d, threshold %g: %d, expected %d", n / 2, n, t, first, expect);
        }
    }
    double mean = 0, var = 0;
    for (int i = 0; i < D; i++) mean += kv[0][i] / D;
    for (int i = 0; i < D; i++) var += (kv[0][i] - mean) * (kv[0][i] - mean) / D;
    fy_layernorm(kv[0], 1, D, gamma, beta, 1e-5f, y);
    for (int i = 0; i < D; i++) {
        float expect = (float)((kv[0][i] - mean) / sqrt(var + 1e-5) * gamma[i] + beta[i]);
        CHECK(fabsf(y[i] - expect) < 1e-5f, "layernorm %d: %g vs %g", i, y[i], expect);
    }
    int8_t qw[7 * 75];
    float qs[7], qy[KEYS * 7];
    for (int i = 0; i < 7 * 75; i++) qw[i] = (int8_t)(rand() % 255 - 127);
    for (int i = 0; i < 7; i++) qs[i] = 0.01f * (float)(i + 1);
    fy_packed qp;
    CHECK(fy_pack_q8(qw, qs, 7, 75, &qp), "pack");
    fy_gemm(&kv[0][0], KEYS, &qp, NULL, qy, 7, NULL); /* rows of 75 from a [.., 96] array: any data will do */
    h = fnv(h, qy, sizeof qy);
    /* The fused ReLU (with a bias) is the plain product, + bias, then max(0, y): int8 and f32. */
    float relu_y[KEYS * 7], plain[KEYS * 7], fw[7 * 75];
    for (int i = 0; i < 7 * 75; i++) fw[i] = (float)qw[i] / 127.0f;
    fy_packed fp;
    CHECK(fy_pack(fw, 7, 75, &fp), "pack");
    for (int t = 0; t < 2; t++) {
        const fy_packed *pk = t ? &fp : &qp;
        fy_gemm(&kv[0][0], KEYS, pk, beta, plain, 7, NULL);
        fy_gemm_relu(&kv[0][0], KEYS, pk, beta, relu_y, 7, NULL);
        for (int i = 0; i < KEYS * 7; i++)
            CHECK(relu_y[i] == (plain[i] > 0 ? plain[i] : 0.0f), "relu %d: %g vs %g", i, relu_y[i], plain[i]);
    }
    fy_packed_free(&qp);
    fy_packed_free(&fp);
    printf("ok %s\nbits row_kernels %016llx\n", __func__, (unsigned long long)h);
}

int main(void) {
    test_sentence_ends();
    test_config_defaults();
    test_config_errors();
    test_weights_parse_and_convert();
    test_weights_rejects();
    test_gemm_invariance_and_kernels();
    test_gemm_int8();
    test_gemm_shapes();
    test_row_kernels();
    test_line_reader();
    test_tokenizer_rejects_garbage();
    return failures ? 1 : 0;
}
