#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"

/* A small reader that remembers the file for error messages. */
typedef struct {
    const cJSON *root;
    const char *path;
    fanyi_error *err;
} reader;

static const cJSON *field(const reader *r, const char *key, int required, int *rc) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v && required) *rc = fy_fail(r->err, FANYI_ERR_MODEL, "%s: missing required key '%s'", r->path, key);
    return v;
}

static int read_int(const reader *r, const char *key, int required, int def, int lo, int hi, int *out) {
    int rc = FANYI_OK;
    const cJSON *v = field(r, key, required, &rc);
    if (rc) return rc;
    if (!v) {
        *out = def;
        return FANYI_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key '%s' must be an integer in [%d, %d]", r->path, key, lo,
                       hi);
    *out = (int)v->valuedouble;
    return FANYI_OK;
}

static int read_float(const reader *r, const char *key, float def, float lo, float hi, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v) {
        *out = def;
        return FANYI_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key '%s' must be a number in [%g, %g]", r->path, key, lo, hi);
    *out = (float)v->valuedouble;
    return FANYI_OK;
}

static int read_bool(const reader *r, const char *key, int def, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v) {
        *out = def;
        return FANYI_OK;
    }
    if (!cJSON_IsBool(v)) return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key '%s' must be true or false", r->path, key);
    *out = cJSON_IsTrue(v);
    return FANYI_OK;
}

/* Reads a string key; file names may not leave the model directory. */
static int read_string(const reader *r, const char *key, const char *def, int is_file, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    const char *s = def;
    if (v) {
        if (!cJSON_IsString(v)) return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key '%s' must be a string", r->path, key);
        s = v->valuestring;
    }
    if (is_file && (s[0] == '/' || strstr(s, "..")))
        return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key '%s': file name '%s' must stay inside the model directory",
                       r->path, key, s);
    *out = strdup(s);
    if (!*out) return fy_fail(r->err, FANYI_ERR_MEMORY, "out of memory reading %s", r->path);
    return FANYI_OK;
}

static int read_enum(const reader *r, const char *key, const char *const *names, int n, int def, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v) {
        *out = def;
        return FANYI_OK;
    }
    if (cJSON_IsString(v))
        for (int i = 0; i < n; i++)
            if (strcmp(v->valuestring, names[i]) == 0) {
                *out = i;
                return FANYI_OK;
            }
    char allowed[256] = "";
    for (int i = 0; i < n; i++) {
        strncat(allowed, i ? ", " : "", sizeof allowed - strlen(allowed) - 1);
        strncat(allowed, names[i], sizeof allowed - strlen(allowed) - 1);
    }
    return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key '%s' must be one of: %s", r->path, key, allowed);
}

static int read_forbidden(const reader *r, fy_config *cfg) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, "forbidden_ids");
    cfg->n_forbidden = 0;
    if (!v) return FANYI_OK;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > FY_MAX_FORBIDDEN)
        return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key 'forbidden_ids' must be an array of at most %d ids", r->path,
                       FY_MAX_FORBIDDEN);
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble >= cfg->tgt_vocab_size ||
            item->valuedouble != floor(item->valuedouble))
            return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key 'forbidden_ids': %g is not a target id", r->path,
                           cJSON_IsNumber(item) ? item->valuedouble : -1.0);
        cfg->forbidden_ids[cfg->n_forbidden++] = (int)item->valuedouble;
    }
    return FANYI_OK;
}

static int check_consistency(const reader *r, const fy_config *c) {
    if (c->d_model % c->n_heads)
        return fy_fail(r->err, FANYI_ERR_MODEL, "%s: d_model %d is not a multiple of n_heads %d", r->path, c->d_model,
                       c->n_heads);
    if (c->positions != FY_POS_LEARNED && c->d_model % 2)
        return fy_fail(r->err, FANYI_ERR_MODEL, "%s: sinusoidal positions need an even d_model (got %d)", r->path,
                       c->d_model);
    if (c->shared_embeddings && c->src_vocab_size != c->tgt_vocab_size)
        return fy_fail(r->err, FANYI_ERR_MODEL,
                       "%s: shared_embeddings needs src_vocab_size == tgt_vocab_size (%d != %d)", r->path,
                       c->src_vocab_size, c->tgt_vocab_size);
    const struct { const char *name; int id; int vocab; } ids[] = {
        {"pad_id", c->pad_id, c->tgt_vocab_size},  {"eos_id", c->eos_id, c->tgt_vocab_size},
        {"unk_id", c->unk_id, c->src_vocab_size},  {"decoder_start_id", c->decoder_start_id, c->tgt_vocab_size},
        {"eos_id", c->eos_id, c->src_vocab_size},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].id >= ids[i].vocab)
            return fy_fail(r->err, FANYI_ERR_MODEL, "%s: key '%s' = %d is outside the vocabulary of %d", r->path,
                           ids[i].name, ids[i].id, ids[i].vocab);
    return FANYI_OK;
}

int fy_config_parse(fy_config *cfg, const char *json, size_t len, const char *path, fanyi_error *err) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fy_fail(err, FANYI_ERR_MODEL, "%s: not a JSON object", path);
    }
    reader r = {root, path, err};
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (!strcmp(a->string, b->string)) {
                int code = fy_fail(err, FANYI_ERR_MODEL, "%s: key '%s' appears twice", path, a->string);
                cJSON_Delete(root);
                return code;
            }
    static const char *const acts[] = {"relu", "gelu", "swish"};
    static const char *const poss[] = {"sinusoidal-interleaved", "sinusoidal-halves", "learned"};
    static const char *const norms[] = {"post", "pre"};
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    int version = 0, act = 0, pos = 0, rc;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "fanyi") != 0)
        rc = fy_fail(err, FANYI_ERR_MODEL, "%s: key 'format' must be \"fanyi\" (is this a fanyi model directory?)",
                     path);
    else if ((rc = read_int(&r, "format_version", 1, 1, 1, 1000, &version)) == FANYI_OK && version != 1)
        rc = fy_fail(err, FANYI_ERR_MODEL, "%s: format_version %d is newer than this fanyi understands (1)", path,
                     version);
    const int big = 1 << 24;
    if (!rc) rc = read_int(&r, "src_vocab_size", 1, 0, 1, big, &cfg->src_vocab_size);
    if (!rc) rc = read_int(&r, "tgt_vocab_size", 1, 0, 1, big, &cfg->tgt_vocab_size);
    if (!rc) rc = read_int(&r, "d_model", 1, 0, 1, FY_MAX_K, &cfg->d_model);
    if (!rc) rc = read_int(&r, "n_heads", 1, 0, 1, 1024, &cfg->n_heads);
    if (!rc) rc = read_int(&r, "d_ff", 1, 0, 1, FY_MAX_K, &cfg->d_ff);
    if (!rc) rc = read_int(&r, "encoder_layers", 1, 0, 0, 256, &cfg->encoder_layers);
    if (!rc) rc = read_int(&r, "decoder_layers", 1, 0, 1, 256, &cfg->decoder_layers);
    if (!rc) rc = read_int(&r, "max_positions", 1, 0, 2, 1 << 16, &cfg->max_positions);
    if (!rc) rc = read_enum(&r, "activation", acts, 3, 0, &act);
    if (!rc) rc = read_enum(&r, "norm", norms, 2, 0, &cfg->pre_norm);
    if (!rc) rc = read_bool(&r, "encoder_final_norm", 0, &cfg->encoder_final_norm);
    if (!rc) rc = read_bool(&r, "decoder_final_norm", 0, &cfg->decoder_final_norm);
    if (!rc) rc = read_bool(&r, "scale_embeddings", 1, &cfg->scale_embeddings);
    if (!rc) rc = read_enum(&r, "positions", poss, 3, 0, &pos);
    if (!rc) rc = read_bool(&r, "shared_embeddings", 0, &cfg->shared_embeddings);
    if (!rc) rc = read_bool(&r, "tied_output", 1, &cfg->tied_output);
    if (!rc) rc = read_bool(&r, "logits_bias", 0, &cfg->logits_bias);
    if (!rc) rc = read_float(&r, "layernorm_eps", 1e-5f, 0.0f, 1.0f, &cfg->layernorm_eps);
    if (!rc) rc = read_int(&r, "pad_id", 1, 0, 0, big, &cfg->pad_id);
    if (!rc) rc = read_int(&r, "eos_id", 1, 0, 0, big, &cfg->eos_id);
    if (!rc) rc = read_int(&r, "unk_id", 0, 1, 0, big, &cfg->unk_id);
    if (!rc) rc = read_int(&r, "decoder_start_id", 0, cfg->pad_id, 0, big, &cfg->decoder_start_id);
    if (!rc) rc = read_forbidden(&r, cfg);
    if (!rc) rc = read_bool(&r, "source_eos", 1, &cfg->source_eos);
    if (!rc) rc = read_string(&r, "source_spm", "", 1, &cfg->source_spm);
    if (!rc) rc = read_string(&r, "target_spm", "", 1, &cfg->target_spm);
    if (!rc) rc = read_string(&r, "vocab", "", 1, &cfg->vocab);
    if (!rc) rc = read_string(&r, "target_vocab", "", 1, &cfg->target_vocab);
    if (!rc) rc = read_string(&r, "weights", "model.safetensors", 1, &cfg->weights);
    if (!rc) rc = read_int(&r, "beam_size", 0, 5, 1, 1024, &cfg->beam_size);
    if (!rc) rc = read_int(&r, "max_length", 0, 256, 1, 1 << 20, &cfg->max_length);
    if (!rc) rc = read_float(&r, "max_length_ratio", 0.0f, 0.0f, 1000.0f, &cfg->max_length_ratio);
    if (!rc) rc = read_float(&r, "length_penalty", 1.0f, 0.0f, 100.0f, &cfg->length_penalty);
    if (!rc) rc = read_bool(&r, "forced_eos", 0, &cfg->forced_eos);
    if (!rc) rc = read_bool(&r, "early_stopping", 0, &cfg->early_stopping);
    if (!rc) rc = read_int(&r, "no_repeat_ngram_size", 0, 0, 0, 1024, &cfg->no_repeat_ngram);
    if (!rc) rc = read_float(&r, "repetition_penalty", 1.0f, 0.01f, 100.0f, &cfg->repetition_penalty);
    cfg->activation = (enum fy_activation)act;
    cfg->positions = (enum fy_positions)pos;
    if (!rc) rc = check_consistency(&r, cfg);
    cJSON_Delete(root);
    if (rc) fy_config_free(cfg);
    return rc;
}

int fy_config_load(fy_config *cfg, const char *path, fanyi_error *err) {
    char *text;
    size_t len;
    int rc = fy_read_file(path, &text, &len, err);
    if (rc) return rc;
    rc = fy_config_parse(cfg, text, len, path, err);
    free(text);
    return rc;
}

void fy_config_free(fy_config *cfg) {
    free(cfg->source_spm);
    free(cfg->target_spm);
    free(cfg->vocab);
    free(cfg->target_vocab);
    free(cfg->weights);
    cfg->source_spm = cfg->target_spm = cfg->vocab = cfg->target_vocab = cfg->weights = NULL;
}
