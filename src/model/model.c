#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* ---- binding tensors ---------------------------------------------------- */

/* A matrix to pack once every tensor has been checked: packing is the bulk
 * of loading, so it runs on all cores. A job may stack several tensors of the
 * same shape (q, k, v) into one matrix, so that one product computes them all. */
enum { MAX_STACK = 3 };
typedef struct {
    fy_weights *w;
    int parts;
    const int8_t *q[MAX_STACK]; /* int8 tensors: their data; f32 ones are converted by the task */
    const void *scales[MAX_STACK];
    int out, in;                /* of each part */
    int release;                /* drop the unpacked tensors afterwards */
    fy_packed *dst;
    int rc;
    fanyi_error err;
    char name[MAX_STACK][384];
} pack_job;

typedef struct {
    fy_weights *w;
    fanyi_error *err;
    int rc;
    pack_job *jobs;
    size_t n_jobs, cap_jobs;
} binder;

static const float *bind(binder *b, const char *name, int rank, int64_t d0, int64_t d1) {
    const float *p = NULL;
    int64_t shape[2] = {d0, d1};
    if (!b->rc) b->rc = fy_weights_f32(b->w, name, rank, shape, &p, b->err);
    return p;
}

/* Checks matrices names[0..parts) [out, in] and queues them for packing, stacked
 * in that order, for fy_gemm: I8 tensors stay int8 (int8 semantics, see gemm.h),
 * others become f32 panels; stacked tensors must share a kind.
 * release: only the packed copy is read afterwards. */
static void bind_stacked(binder *b, const char *const *names, int parts, int out, int in, fy_packed *p, int release) {
    if (b->rc) return;
    if (!fy_grow(&b->jobs, &b->cap_jobs, b->n_jobs + 1, sizeof *b->jobs)) {
        b->rc = fy_fail(b->err, FANYI_ERR_MEMORY, "out of memory");
        return;
    }
    pack_job *j = &b->jobs[b->n_jobs];
    memset(j, 0, sizeof *j);
    j->w = b->w;
    j->parts = parts;
    j->out = out;
    j->in = in;
    j->dst = p;
    j->release = release;
    int64_t shape[2] = {out, in};
    for (int i = 0; i < parts && !b->rc; i++) {
        snprintf(j->name[i], sizeof j->name[i], "%s", names[i]);
        const fy_tensor *t = fy_weights_find(b->w, names[i]);
        if (t && t->dtype == FY_I8) b->rc = fy_weights_q8(b->w, names[i], out, in, &j->q[i], &j->scales[i], b->err);
        else b->rc = fy_weights_check(b->w, names[i], 2, shape, b->err);
        if (!b->rc && i > 0 && !j->q[i] != !j->q[0])
            b->rc = fy_fail(b->err, FANYI_ERR_MODEL, "tensors '%s' and '%s' are multiplied together, so both must be "
                            "I8 or neither", names[0], names[i]);
    }
    if (!b->rc) b->n_jobs++;
}

static void bind_matrix(binder *b, const char *name, int out, int in, fy_packed *p, int release) {
    bind_stacked(b, &name, 1, out, in, p, release);
}

/* The n parts (bytes each) laid end to end: parts[0] itself when n is 1, else a
 * copy stored in *owned for the caller to free. NULL when out of memory. */
static const void *concat(const void *const *parts, int n, size_t bytes, void **owned) {
    *owned = NULL;
    if (n == 1) return parts[0];
    char *buf = malloc(bytes * (size_t)n);
    for (int i = 0; buf && i < n; i++) memcpy(buf + (size_t)i * bytes, parts[i], bytes);
    return *owned = buf;
}

/* Converts (f16, unaligned f32), stacks, packs, and drops the unpacked data of
 * one job, so that only a few unpacked copies exist at any time. */
static void pack_task(void *ctx, int i) {
    pack_job *j = (pack_job *)ctx + i;
    size_t each = (size_t)j->out * (size_t)j->in;
    int64_t shape[2] = {j->out, j->in};
    const void *data[MAX_STACK];
    for (int p = 0; p < j->parts && !j->rc; p++) {
        const float *f32 = NULL;
        if (!j->q[0]) j->rc = fy_weights_f32(j->w, j->name[p], 2, shape, &f32, &j->err);
        data[p] = j->q[0] ? (const void *)j->q[p] : f32;
    }
    if (j->rc) return;
    void *owned_w, *owned_s = NULL;
    const void *w = concat(data, j->parts, j->q[0] ? each : each * sizeof(float), &owned_w);
    const void *scales = j->q[0] ? concat(j->scales, j->parts, 4 * (size_t)j->out, &owned_s) : NULL;
    int n = j->out * j->parts;
    int ok = w && (j->q[0] ? scales && fy_pack_q8(w, scales, n, j->in, j->dst) : fy_pack(w, n, j->in, j->dst));
    free(owned_w);
    free(owned_s);
    if (!ok) j->rc = fy_fail(&j->err, FANYI_ERR_MEMORY, "out of memory packing '%s'", j->name[0]);
    for (int p = 0; !j->rc && j->release && p < j->parts; p++) fy_weights_release(j->w, j->name[p]);
}

/* Packs every queued matrix on all cores: packing is most of loading. */
static int pack_all(binder *b) {
    fy_pool *pool = fy_pool_create(fy_default_threads());
    fy_pool_run(pool, pack_task, b->jobs, (int)b->n_jobs);
    fy_pool_free(pool);
    for (size_t i = 0; i < b->n_jobs; i++)
        if (b->jobs[i].rc) {
            *b->err = b->jobs[i].err;
            return b->jobs[i].rc;
        }
    return FANYI_OK;
}

static void bind_lin(binder *b, fy_lin *l, const char *prefix, int out, int in) {
    char name[384];
    snprintf(name, sizeof name, "%s.weight", prefix);
    bind_matrix(b, name, out, in, &l->w, 1);
    snprintf(name, sizeof name, "%s.bias", prefix);
    l->b = bind(b, name, 1, out, 0);
}

/* Projections prefix.parts[i] (each [d, d]) as one linear layer [parts * d, d]
 * whose bias is the parts' biases laid end to end. */
static void bind_fused(binder *b, fy_lin *l, const char *prefix, const char *const *parts, int n, int d) {
    char names[MAX_STACK][320];
    const char *ptrs[MAX_STACK];
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "%s.%s.weight", prefix, parts[i]);
        ptrs[i] = names[i];
    }
    bind_stacked(b, ptrs, n, d, d, &l->w, 1);
    if (b->rc) return;
    l->owned_b = malloc(sizeof(float) * (size_t)n * (size_t)d);
    if (!l->owned_b) {
        b->rc = fy_fail(b->err, FANYI_ERR_MEMORY, "out of memory");
        return;
    }
    l->b = l->owned_b;
    for (int i = 0; i < n && !b->rc; i++) {
        snprintf(names[i], sizeof names[i], "%s.%s.bias", prefix, parts[i]);
        const float *bias = bind(b, names[i], 1, d, 0);
        if (bias) memcpy(l->owned_b + (size_t)i * d, bias, sizeof(float) * (size_t)d);
    }
}

static void bind_ln(binder *b, fy_ln *n, const char *prefix, int d) {
    char name[384];
    snprintf(name, sizeof name, "%s.weight", prefix);
    n->gamma = bind(b, name, 1, d, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    n->beta = bind(b, name, 1, d, 0);
}

/* Self-attention: q, k and v of the same input in one product. Cross-attention:
 * k and v of the encoder output in one product, q of the decoder separately. */
static void bind_attn(binder *b, fy_attn *a, const char *prefix, int d, int cross) {
    static const char *const qkv[] = {"q", "k", "v"};
    char name[320]; /* prefix (< 256) plus a short suffix */
    if (cross) {
        snprintf(name, sizeof name, "%s.q", prefix);
        bind_lin(b, &a->q, name, d, d);
        bind_fused(b, &a->kv, prefix, qkv + 1, 2, d);
    } else {
        bind_fused(b, &a->qkv, prefix, qkv, 3, d);
    }
    snprintf(name, sizeof name, "%s.o", prefix);
    bind_lin(b, &a->o, name, d, d);
}

static void bind_layer(binder *b, fy_layer *l, const char *side, int i, int cross, const fy_config *c) {
    char p[256];
#define LAYER_NAME(suffix) (snprintf(p, sizeof p, "%s.layers.%d.%s", side, i, suffix), p)
    bind_attn(b, &l->self_attn, LAYER_NAME("self_attn"), c->d_model, 0);
    bind_ln(b, &l->self_norm, LAYER_NAME("self_attn_norm"), c->d_model);
    if (cross) {
        bind_attn(b, &l->cross_attn, LAYER_NAME("cross_attn"), c->d_model, 1);
        bind_ln(b, &l->cross_norm, LAYER_NAME("cross_attn_norm"), c->d_model);
    }
    bind_lin(b, &l->fc1, LAYER_NAME("ffn.fc1"), c->d_ff, c->d_model);
    bind_lin(b, &l->fc2, LAYER_NAME("ffn.fc2"), c->d_model, c->d_ff);
    bind_ln(b, &l->ffn_norm, LAYER_NAME("ffn_norm"), c->d_model);
#undef LAYER_NAME
}

static int bind_all(fy_model *m, fanyi_error *err) {
    const fy_config *c = &m->cfg;
    binder b = {m->weights, err, FANYI_OK, NULL, 0, 0};
    int d = c->d_model;
    m->src_embed = bind(&b, "src_embed.weight", 2, c->src_vocab_size, d);
    m->tgt_embed = c->shared_embeddings ? m->src_embed : bind(&b, "tgt_embed.weight", 2, c->tgt_vocab_size, d);
    const char *out_name = !c->tied_output ? "output.weight" : c->shared_embeddings ? "src_embed.weight"
                                                                                      : "tgt_embed.weight";
    bind_matrix(&b, out_name, c->tgt_vocab_size, d, &m->out_proj, !c->tied_output);
    m->logits_bias = c->logits_bias ? bind(&b, "logits_bias", 1, c->tgt_vocab_size, 0) : NULL;
    if (c->positions == FY_POS_LEARNED) {
        m->enc_pos = bind(&b, "encoder.pos.weight", 2, c->max_positions, d);
        m->dec_pos = bind(&b, "decoder.pos.weight", 2, c->max_positions, d);
    }
    for (int i = 0; i < c->encoder_layers; i++) bind_layer(&b, &m->enc[i], "encoder", i, 0, c);
    for (int i = 0; i < c->decoder_layers; i++) bind_layer(&b, &m->dec[i], "decoder", i, 1, c);
    if (c->encoder_final_norm) bind_ln(&b, &m->enc_final, "encoder.final_norm", d);
    if (c->decoder_final_norm) bind_ln(&b, &m->dec_final, "decoder.final_norm", d);
    const char *stray = b.rc ? NULL : fy_weights_unused(m->weights);
    if (stray)
        b.rc = fy_fail(err, FANYI_ERR_MODEL, "%s: unknown tensor '%s': this config does not use it", c->weights, stray);
    if (!b.rc) b.rc = pack_all(&b);
    free(b.jobs);
    return b.rc;
}

static void release(fy_model *m);

int fy_model_load(fy_model *m, const char *dir, const fy_config *cfg, fanyi_error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg; /* the strings stay the caller's until the load succeeds */
    const fy_config *c = &m->cfg;
    char *path = fy_path_join(dir, c->weights);
    int rc = path ? fy_weights_open(&m->weights, path, err) : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(path);
    if (!rc) {
        m->enc = fy_calloc((size_t)c->encoder_layers + 1, sizeof *m->enc, err, "encoder layers");
        m->dec = fy_calloc((size_t)c->decoder_layers + 1, sizeof *m->dec, err, "decoder layers");
        rc = m->enc && m->dec ? FANYI_OK : FANYI_ERR_MEMORY;
    }
    if (!rc && c->positions != FY_POS_LEARNED) {
        m->pos_table = fy_calloc((size_t)c->max_positions * (size_t)c->d_model, sizeof(float), err, "positions");
        if (!m->pos_table) rc = FANYI_ERR_MEMORY;
        else {
            fy_sinusoid_table(m->pos_table, c->max_positions, c->d_model, c->positions);
            m->enc_pos = m->dec_pos = m->pos_table;
        }
    }
    if (!rc) rc = bind_all(m, err);
    if (rc) release(m); /* the config is not ours to free yet */
    return rc;
}

static void free_layer(fy_layer *l) {
    fy_lin *lins[] = {&l->self_attn.qkv, &l->self_attn.o, &l->cross_attn.q, &l->cross_attn.kv, &l->cross_attn.o,
                      &l->fc1, &l->fc2};
    for (size_t i = 0; i < sizeof lins / sizeof lins[0]; i++) {
        fy_packed_free(&lins[i]->w);
        free(lins[i]->owned_b);
    }
}

/* Everything but the config. */
static void release(fy_model *m) {
    for (int i = 0; m->enc && i < m->cfg.encoder_layers; i++) free_layer(&m->enc[i]);
    for (int i = 0; m->dec && i < m->cfg.decoder_layers; i++) free_layer(&m->dec[i]);
    fy_packed_free(&m->out_proj);
    fy_weights_close(m->weights);
    free(m->enc);
    free(m->dec);
    free(m->pos_table);
    memset(m, 0, sizeof *m);
}

void fy_model_free(fy_model *m) {
    fy_config cfg = m->cfg;
    release(m);
    fy_config_free(&cfg);
}

/* ---- shared pieces -------------------------------------------------------- */

/* x = embedding * scale + position; row r is at pos[r], or at fixed_pos if pos is NULL. */
static void embed(const fy_model *m, const float *table, const float *pos_table, const int *ids, const int *pos,
                  int fixed_pos, int rows, float *x) {
    int d = m->cfg.d_model;
    float scale = m->cfg.scale_embeddings ? sqrtf((float)d) : 1.0f;
    for (int r = 0; r < rows; r++) {
        const float *e = table + (size_t)ids[r] * d, *p = pos_table + (size_t)(pos ? pos[r] : fixed_pos) * d;
        float *xr = x + (size_t)r * d;
        for (int i = 0; i < d; i++) xr[i] = e[i] * scale + p[i];
    }
}

/* Splits rows [0, n) into chunks over the pool's threads; fn(ctx, task, r0, r1)
 * uses scratch slot `task`. Few rows stay on the calling thread. */
typedef void (*rows_fn)(void *ctx, int task, int r0, int r1);
typedef struct {
    rows_fn fn;
    void *ctx;
    int n, chunk;
} rows_job;

static void rows_task(void *p, int task) {
    const rows_job *j = p;
    int r0 = task * j->chunk, r1 = r0 + j->chunk < j->n ? r0 + j->chunk : j->n;
    if (r0 < r1) j->fn(j->ctx, task, r0, r1);
}

static void for_rows(fy_pool *pool, int n, int min_rows, rows_fn fn, void *ctx) {
    int tasks = fy_pool_threads(pool);
    if (tasks > (n + min_rows - 1) / min_rows) tasks = (n + min_rows - 1) / min_rows;
    if (tasks <= 1) {
        if (n > 0) fn(ctx, 0, 0, n);
        return;
    }
    rows_job job = {fn, ctx, n, (n + tasks - 1) / tasks};
    fy_pool_run(pool, rows_task, &job, tasks);
}

typedef struct {
    const fy_config *c;
    const fy_ln *norm;
    const float *x;
    float *y;
} layernorm_job;

static void layernorm_rows(void *p, int task, int r0, int r1) {
    const layernorm_job *j = p;
    size_t d = (size_t)j->c->d_model;
    (void)task;
    fy_layernorm(j->x + r0 * d, r1 - r0, (int)d, j->norm->gamma, j->norm->beta, j->c->layernorm_eps, j->y + r0 * d);
}

/* y = LayerNorm(x), rows shared out between threads (y may equal x). */
static void layernorm(const fy_config *c, const fy_ln *norm, const float *x, float *y, int rows, fy_pool *pool) {
    layernorm_job j = {c, norm, x, y};
    for_rows(pool, rows, 32, layernorm_rows, &j);
}

/* Input of a sublayer: LayerNorm(x) before it (pre-norm), x itself after (post-norm). */
static const float *sublayer_input(const fy_config *c, const fy_ln *norm, const float *x, float *h, int rows,
                                   fy_pool *pool) {
    if (!c->pre_norm) return x;
    layernorm(c, norm, x, h, rows, pool);
    return h;
}

/* x = x + o, normalized afterwards in post-norm. */
static void sublayer_output(const fy_config *c, const fy_ln *norm, float *x, const float *o, int rows, fy_pool *pool) {
    size_t n = (size_t)rows * c->d_model;
    fy_add(x, o, n);
    if (!c->pre_norm) layernorm(c, norm, x, x, rows, pool);
}

static void feed_forward(const fy_config *c, const fy_layer *l, float *x, float *h, float *ff, float *o, int rows,
                         fy_pool *pool) {
    const float *in = sublayer_input(c, &l->ffn_norm, x, h, rows, pool);
    fy_linear_act(in, rows, &l->fc1.w, l->fc1.b, c->activation, ff, pool);
    fy_linear(ff, rows, &l->fc2.w, l->fc2.b, o, pool);
    sublayer_output(c, &l->ffn_norm, x, o, rows, pool);
}

/* ---- encoder ---------------------------------------------------------- */

/* Self-attention of one sentence of L rows of [q | k | v] (3d floats each), one
 * query row at a time: the same deterministic kernel as the decoder, so nothing
 * depends on the number of threads. keys/vals have room for L pointers. */
static void sentence_attention(const fy_config *c, const float *qkv, int L, const float **keys, const float **vals,
                               float *scores, float *out) {
    size_t d = (size_t)c->d_model;
    for (int j = 0; j < L; j++) {
        keys[j] = qkv + j * 3 * d + d;
        vals[j] = qkv + j * 3 * d + 2 * d;
    }
    for (int i = 0; i < L; i++) fy_attend(qkv + i * 3 * d, keys, vals, L, c->d_model, c->n_heads, scores, out + i * d);
}

/* Sentences [s0, s1) of an encoder layer's attention; scratch slot `task`. */
typedef struct {
    const fy_config *c;
    const float *qkv;
    float *attn;
    const int *offset, *len;
    const float **ptrs; /* per task: 2 * span pointers */
    float *scores;      /* per task: span floats */
    int span;
} enc_attn_job;

static void encoder_attention_rows(void *p, int task, int s0, int s1) {
    const enc_attn_job *j = p;
    size_t d = (size_t)j->c->d_model, span = (size_t)j->span;
    const float **keys = j->ptrs + task * 2 * span, **vals = keys + span;
    for (int i = s0; i < s1; i++) {
        size_t o = (size_t)j->offset[i] * d;
        sentence_attention(j->c, j->qkv + 3 * o, j->len[i], keys, vals, j->scores + task * span, j->attn + o);
    }
}

int fy_encode(const fy_model *m, const int *ids, const int *offset, const int *len, int n, float **memory,
              fy_pool *pool, fy_arena *arena, fanyi_error *err) {
    const fy_config *c = &m->cfg;
    int total = 0, longest = 0;
    for (int i = 0; i < n; i++) {
        total += len[i];
        longest = len[i] > longest ? len[i] : longest;
    }
    size_t d = (size_t)c->d_model, rows = (size_t)(total ? total : 1);
    size_t width = d > (size_t)c->d_ff ? d : (size_t)c->d_ff;
    size_t slots = (size_t)fy_pool_threads(pool), span = (size_t)longest + 1;
    float *x = fy_arena_alloc(arena, rows * d, sizeof(float), 1, err, "encoder states");
    float *work = x ? fy_arena_alloc(arena, rows * (4 * d + width) + span * slots, sizeof(float), 1, err,
                                     "encoder buffers") : NULL;
    int *pos = work ? fy_arena_alloc(arena, rows, sizeof(int), 1, err, "positions") : NULL;
    const float **keys = pos ? fy_arena_alloc(arena, span * slots, 2 * sizeof *keys, 1, err, "attention keys") : NULL;
    if (!keys) return FANYI_ERR_MEMORY;
    float *h = work, *qkv = h + rows * d, *attn = qkv + 3 * rows * d;
    float *o = qkv;                                   /* written once attention has read qkv */
    float *ff = attn, *scores = attn + rows * width; /* attn and ff are never live together */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < len[i]; j++) pos[offset[i] + j] = j;
    embed(m, m->src_embed, m->enc_pos, ids, pos, 0, total, x);
    for (int l = 0; l < c->encoder_layers; l++) {
        const fy_layer *L = &m->enc[l];
        const float *in = sublayer_input(c, &L->self_norm, x, h, total, pool);
        fy_linear(in, total, &L->self_attn.qkv.w, L->self_attn.qkv.b, qkv, pool);
        enc_attn_job ej = {c, qkv, attn, offset, len, keys, scores, (int)span};
        for_rows(pool, n, 1, encoder_attention_rows, &ej);
        fy_linear(attn, total, &L->self_attn.o.w, L->self_attn.o.b, o, pool);
        sublayer_output(c, &L->self_norm, x, o, total, pool);
        feed_forward(c, L, x, h, ff, o, total, pool);
    }
    if (c->encoder_final_norm) layernorm(c, &m->enc_final, x, x, total, pool);
    *memory = x;
    return FANYI_OK;
}

/* ---- decoder ---------------------------------------------------------- */

int fy_decoder_start(fy_decoder *dec, const fy_model *m, const float *memory, const int *src_offset,
                     const int *src_len, int n_sent, int max_rows, int max_steps, fy_pool *pool, fy_arena *arena,
                     fanyi_error *err) {
    const fy_config *c = &m->cfg;
    memset(dec, 0, sizeof *dec);
    dec->m = m;
    dec->pool = pool;
    dec->max_rows = max_rows;
    dec->max_steps = max_steps;
    dec->src_offset = src_offset;
    dec->src_len = src_len;
    int total = 0, longest = 0;
    for (int i = 0; i < n_sent; i++) {
        total += src_len[i];
        longest = src_len[i] > longest ? src_len[i] : longest;
    }
    dec->n_src = total;
    size_t d = (size_t)c->d_model, L = (size_t)c->decoder_layers, R = (size_t)max_rows, S = (size_t)max_steps;
    size_t cross = L * (size_t)(total ? total : 1) * 2 * d, self = L * S * R * d;
    size_t span = (size_t)(longest > max_steps ? longest : max_steps);
    /* Per-thread scratch for fy_attend: one slot per pool thread. */
    size_t slots = (size_t)fy_pool_threads(pool);
    dec->span = (int)span;
    struct { void *p; size_t n, size; int zero; } bufs[] = {
        {&dec->cross_kv, cross, sizeof(float), 0}, /* written by the projection below */
        {&dec->self_k, self, sizeof(float), 0},    /* written before read */
        {&dec->self_v, self, sizeof(float), 0},
        {&dec->hist, R * S, sizeof(int), 1},       {&dec->hist_next, R * S, sizeof(int), 1},
        {&dec->x, R * d, sizeof(float), 1},        {&dec->h, R * d, sizeof(float), 1},
        {&dec->q, R * d, sizeof(float), 1},        {&dec->qkv, R * 3 * d, sizeof(float), 1},
        {&dec->attn, R * d, sizeof(float), 1},     {&dec->o, R * d, sizeof(float), 1},
        {&dec->ff, R * (size_t)c->d_ff, sizeof(float), 1},
        {&dec->scores, span * slots, sizeof(float), 1},
        {&dec->keys, span * slots, sizeof *dec->keys, 1}, {&dec->vals, span * slots, sizeof *dec->vals, 1},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        void *p = fy_arena_alloc(arena, bufs[i].n, bufs[i].size, bufs[i].zero, err, "the decoder");
        if (!p)
            return fy_fail(err, FANYI_ERR_MEMORY, "out of memory sizing the decoder for %d rows x %d steps", max_rows,
                           max_steps);
        memcpy(bufs[i].p, &p, sizeof p);
    }
    for (size_t l = 0; l < L; l++) {
        const fy_attn *a = &m->dec[l].cross_attn;
        fy_linear(memory, total, &a->kv.w, a->kv.b, dec->cross_kv + l * total * 2 * d, pool);
    }
    return FANYI_OK;
}

typedef struct {
    fy_decoder *dec;
    int layer;
    const int *row_sent;
} attn_job;

static void self_attention_rows(void *p, int task, int r0, int r1) {
    const attn_job *j = p;
    fy_decoder *dec = j->dec;
    const fy_config *c = &dec->m->cfg;
    size_t d = (size_t)c->d_model, R = (size_t)dec->max_rows, span = (size_t)dec->span;
    const float **keys = dec->keys + task * span, **vals = dec->vals + task * span;
    int t = dec->step;
    size_t slot = ((size_t)j->layer * dec->max_steps + t) * R * d;
    for (int r = r0; r < r1; r++) {
        /* At step t, row r's own key is the only one of this step it reads. */
        const float *qkv = dec->qkv + r * 3 * d;
        memcpy(dec->self_k + slot + r * d, qkv + d, d * sizeof(float));
        memcpy(dec->self_v + slot + r * d, qkv + 2 * d, d * sizeof(float));
        const int *anc = dec->hist + (size_t)r * dec->max_steps;
        for (int s = 0; s <= t; s++) {
            size_t at = (((size_t)j->layer * dec->max_steps + s) * R + anc[s]) * d;
            keys[s] = dec->self_k + at;
            vals[s] = dec->self_v + at;
        }
        fy_attend(qkv, keys, vals, t + 1, c->d_model, c->n_heads, dec->scores + task * span, dec->attn + r * d);
    }
}

static void cross_attention_rows(void *p, int task, int r0, int r1) {
    const attn_job *j = p;
    fy_decoder *dec = j->dec;
    const fy_config *c = &dec->m->cfg;
    size_t d = (size_t)c->d_model, base = (size_t)j->layer * dec->n_src * 2 * d, span = (size_t)dec->span;
    const float **keys = dec->keys + task * span, **vals = dec->vals + task * span;
    for (int r = r0; r < r1; r++) {
        int s = j->row_sent[r], n = dec->src_len[s];
        const float *first = dec->cross_kv + base + (size_t)dec->src_offset[s] * 2 * d;
        for (int k = 0; k < n; k++) {
            keys[k] = first + k * 2 * d;
            vals[k] = first + k * 2 * d + d;
        }
        fy_attend(dec->q + r * d, keys, vals, n, c->d_model, c->n_heads, dec->scores + task * span, dec->attn + r * d);
    }
}

typedef struct {
    float *x;
    float *lse;
    int n, pad;
} lse_job;

/* Pad is never produced, so it is left out of the normalization, as Hugging
 * Face's Marian does before its log-softmax. */
static void logsumexp_rows(void *p, int task, int r0, int r1) {
    const lse_job *j = p;
    (void)task;
    for (int r = r0; r < r1; r++) {
        float *row = j->x + (size_t)r * j->n;
        row[j->pad] = -INFINITY;
        j->lse[r] = fy_logsumexp(row, j->n);
    }
}

void fy_decoder_step(fy_decoder *dec, const int *tokens, const int *row_sent, int n_rows, float *logits, float *lse) {
    const fy_model *m = dec->m;
    const fy_config *c = &m->cfg;
    int t = dec->step;
    for (int r = 0; r < n_rows; r++) dec->hist[(size_t)r * dec->max_steps + t] = r;
    embed(m, m->tgt_embed, m->dec_pos, tokens, NULL, t, n_rows, dec->x);
    for (int l = 0; l < c->decoder_layers; l++) {
        const fy_layer *L = &m->dec[l];
        const float *in = sublayer_input(c, &L->self_norm, dec->x, dec->h, n_rows, dec->pool);
        fy_linear(in, n_rows, &L->self_attn.qkv.w, L->self_attn.qkv.b, dec->qkv, dec->pool);
        attn_job aj = {dec, l, row_sent};
        for_rows(dec->pool, n_rows, 8, self_attention_rows, &aj);
        fy_linear(dec->attn, n_rows, &L->self_attn.o.w, L->self_attn.o.b, dec->o, dec->pool);
        sublayer_output(c, &L->self_norm, dec->x, dec->o, n_rows, dec->pool);

        in = sublayer_input(c, &L->cross_norm, dec->x, dec->h, n_rows, dec->pool);
        fy_linear(in, n_rows, &L->cross_attn.q.w, L->cross_attn.q.b, dec->q, dec->pool);
        for_rows(dec->pool, n_rows, 8, cross_attention_rows, &aj);
        fy_linear(dec->attn, n_rows, &L->cross_attn.o.w, L->cross_attn.o.b, dec->o, dec->pool);
        sublayer_output(c, &L->cross_norm, dec->x, dec->o, n_rows, dec->pool);

        feed_forward(c, L, dec->x, dec->h, dec->ff, dec->o, n_rows, dec->pool);
    }
    if (c->decoder_final_norm) layernorm(c, &m->dec_final, dec->x, dec->x, n_rows, dec->pool);
    fy_linear(dec->x, n_rows, &m->out_proj, m->logits_bias, logits, dec->pool);
    lse_job lj = {logits, lse, c->tgt_vocab_size, c->pad_id};
    for_rows(dec->pool, n_rows, 4, logsumexp_rows, &lj);
    dec->n_rows = n_rows;
    dec->step = t + 1;
}

void fy_decoder_reorder(fy_decoder *dec, const int *parent, int n_rows) {
    size_t S = (size_t)dec->max_steps, steps = (size_t)dec->step;
    for (int r = 0; r < n_rows; r++) memcpy(dec->hist_next + r * S, dec->hist + (size_t)parent[r] * S, steps * sizeof(int));
    int *tmp = dec->hist;
    dec->hist = dec->hist_next;
    dec->hist_next = tmp;
    dec->n_rows = n_rows;
}

