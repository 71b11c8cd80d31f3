#include "spm.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- protobuf --------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    int bad;
} pbuf;

static uint64_t pb_varint(pbuf *b) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) break;
        uint8_t c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
    b->bad = 1;
    return 0;
}

/* Reads a field header; returns 0 at the end. */
static int pb_field(pbuf *b, int *field, int *wire) {
    if (b->p >= b->end || b->bad) return 0;
    uint64_t key = pb_varint(b);
    *field = (int)(key >> 3);
    *wire = (int)(key & 7);
    return !b->bad;
}

static pbuf pb_bytes(pbuf *b) {
    uint64_t n = pb_varint(b);
    pbuf sub = {b->p, b->p, 0};
    if (b->bad || n > (uint64_t)(b->end - b->p)) {
        b->bad = 1;
        return sub;
    }
    sub.end = b->p + n;
    b->p += n;
    return sub;
}

static void pb_skip(pbuf *b, int wire) {
    if (wire == 0) pb_varint(b);
    else if (wire == 1) b->p = (b->end - b->p >= 8) ? b->p + 8 : (b->bad = 1, b->p);
    else if (wire == 2) pb_bytes(b);
    else if (wire == 5) b->p = (b->end - b->p >= 4) ? b->p + 4 : (b->bad = 1, b->p);
    else b->bad = 1;
}

static float pb_float(pbuf *b) {
    float f = 0;
    if (b->end - b->p < 4) {
        b->bad = 1;
        return 0;
    }
    memcpy(&f, b->p, 4);
    b->p += 4;
    return f;
}

static int parse_piece(fy_tokenizer *t, pbuf sub, piece *pc) {
    int field, wire;
    pc->type = P_NORMAL;
    pc->s = NULL;
    pc->len = 0;
    pc->score = 0;
    while (pb_field(&sub, &field, &wire)) {
        if (field == 1 && wire == 2) {
            pbuf s = pb_bytes(&sub);
            pc->s = (const char *)s.p;
            pc->len = (uint32_t)(s.end - s.p);
        } else if (field == 2 && wire == 5) pc->score = pb_float(&sub);
        else if (field == 3 && wire == 0) pc->type = (int)pb_varint(&sub);
        else pb_skip(&sub, wire);
    }
    (void)t;
    return !sub.bad;
}

static void parse_trainer(fy_tokenizer *t, pbuf sub, int *bad) {
    int field, wire;
    while (pb_field(&sub, &field, &wire)) {
        if (field == 3 && wire == 0) t->model_type = (int)pb_varint(&sub);
        else if (field == 24 && wire == 0) t->treat_ws_as_suffix = pb_varint(&sub) != 0;
        else if (field == 35 && wire == 0) t->byte_fallback = pb_varint(&sub) != 0;
        else if (field == 44 && wire == 2) {
            pbuf s = pb_bytes(&sub);
            t->unk_surface = (const char *)s.p;
            t->unk_surface_len = (size_t)(s.end - s.p);
        } else pb_skip(&sub, wire);
    }
    *bad |= sub.bad;
}

static void parse_normalizer(fy_tokenizer *t, pbuf sub, int *bad) {
    int field, wire;
    while (pb_field(&sub, &field, &wire)) {
        if (field == 1 && wire == 2) {
            pbuf s = pb_bytes(&sub);
            size_t n = (size_t)(s.end - s.p);
            const char *name = (const char *)s.p;
#define NAME_IS(lit) (n == sizeof(lit) - 1 && !memcmp(name, lit, n))
            t->nfkc = NAME_IS("nfkc") || NAME_IS("nmt_nfkc") || NAME_IS("nfkc_cf") || NAME_IS("nmt_nfkc_cf");
            t->casefold = NAME_IS("nfkc_cf") || NAME_IS("nmt_nfkc_cf");
#undef NAME_IS
        } else if (field == 2 && wire == 2) {
            pbuf s = pb_bytes(&sub);
            t->charsmap_trie = s.p; /* decoded below */
            t->charsmap_norm_size = (size_t)(s.end - s.p);
        } else if (field == 3 && wire == 0) t->add_dummy_prefix = pb_varint(&sub) != 0;
        else if (field == 4 && wire == 0) t->remove_extra_ws = pb_varint(&sub) != 0;
        else if (field == 5 && wire == 0) t->escape_ws = pb_varint(&sub) != 0;
        else pb_skip(&sub, wire);
    }
    *bad |= sub.bad;
}

/* <trie size (4 bytes LE)><double-array units><NUL-separated normalized strings> */
static int decode_charsmap(fy_tokenizer *t, fanyi_error *err) {
    const uint8_t *blob = t->charsmap_trie;
    size_t size = t->charsmap_norm_size;
    t->charsmap_trie = NULL;
    t->charsmap_norm_size = 0;
    if (!blob || size == 0) return FANYI_OK;
    uint32_t trie_size = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24;
    if (size <= 4 || trie_size >= size - 4 + 1 || trie_size % 4 || trie_size == 0)
        return fy_fail(err, FANYI_ERR_MODEL, "%s: normalizer_spec.precompiled_charsmap is broken", t->name);
    t->charsmap_trie = blob + 4;
    t->charsmap_units = trie_size / 4;
    t->charsmap_norm = (const char *)blob + 4 + trie_size;
    t->charsmap_norm_size = size - 4 - trie_size;
    return FANYI_OK;
}

static int index_pieces(fy_tokenizer *t, fanyi_error *err) {
    size_t bytes = 0, user_bytes = 0;
    int byte_seen[256] = {0}, n_bytes = 0;
    t->unk_id = -1;
    t->min_score = FLT_MAX;
    t->max_score = FLT_MIN;
    for (int i = 0; i < t->n_pieces; i++) bytes += t->pieces[i].len;
    if (!fy_strmap_init(&t->normal, (size_t)t->n_pieces) || !fy_strmap_init(&t->reserved, 300) ||
        !fy_trie_init(&t->pieces_trie, bytes))
        return fy_fail(err, FANYI_ERR_MEMORY, "%s: out of memory indexing pieces", t->name);
    for (int i = 0; i < t->n_pieces; i++) {
        const piece *p = &t->pieces[i];
        if (p->len == 0) return fy_fail(err, FANYI_ERR_MODEL, "%s: piece %d is empty", t->name, i);
        if (p->type < P_NORMAL || p->type > P_BYTE)
            return fy_fail(err, FANYI_ERR_MODEL, "%s: piece %d has unknown type %d", t->name, i, p->type);
        int normal = p->type == P_NORMAL || p->type == P_USER || p->type == P_UNUSED;
        if (!fy_strmap_put(normal ? &t->normal : &t->reserved, p->s, p->len, i))
            return fy_fail(err, FANYI_ERR_MODEL, "%s: piece %d ('%.*s') is defined twice", t->name, i, (int)p->len, p->s);
        if (normal) fy_trie_insert(&t->pieces_trie, p->s, p->len, i);
        if (p->type == P_USER) user_bytes += p->len;
        if (p->type == P_NORMAL) {
            t->min_score = p->score < t->min_score ? p->score : t->min_score;
            t->max_score = p->score > t->max_score ? p->score : t->max_score;
        }
        if (p->type == P_UNKNOWN) {
            if (t->unk_id >= 0) return fy_fail(err, FANYI_ERR_MODEL, "%s: more than one <unk> piece", t->name);
            t->unk_id = i;
        }
        if (p->type == P_BYTE) {
            unsigned v;
            char tail;
            if (!t->byte_fallback)
                return fy_fail(err, FANYI_ERR_MODEL, "%s: byte piece %d but byte_fallback is off", t->name, i);
            if (p->len != 6 || sscanf(p->s, "<0x%2X%c", &v, &tail) != 2 || tail != '>' || v > 255)
                return fy_fail(err, FANYI_ERR_MODEL, "%s: byte piece %d ('%.*s') is invalid", t->name, i, (int)p->len, p->s);
            if (!byte_seen[v]++) n_bytes++;
        }
    }
    if (t->unk_id < 0) return fy_fail(err, FANYI_ERR_MODEL, "%s: the model defines no <unk> piece", t->name);
    if (t->byte_fallback && n_bytes != 256)
        return fy_fail(err, FANYI_ERR_MODEL, "%s: byte_fallback is on but only %d of 256 byte pieces exist", t->name, n_bytes);
    if (t->min_score == FLT_MAX) t->min_score = 0;
    if (t->max_score == FLT_MIN) t->max_score = 0;
    t->has_user = user_bytes > 0;
    if (t->has_user) {
        if (!fy_trie_init(&t->user_trie, user_bytes)) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        for (int i = 0; i < t->n_pieces; i++)
            if (t->pieces[i].type == P_USER) fy_trie_insert(&t->user_trie, t->pieces[i].s, t->pieces[i].len, i);
    }
    return FANYI_OK;
}

static int parse_model(fy_tokenizer *t, fanyi_error *err) {
    pbuf b = {t->blob, t->blob + t->blob_size, 0};
    int field, wire, bad = 0, n = 0;
    /* Defaults of the proto. */
    t->model_type = M_UNIGRAM;
    t->add_dummy_prefix = t->remove_extra_ws = t->escape_ws = 1;
    t->unk_surface = " \xe2\x81\x87 ";
    t->unk_surface_len = 5;
    while (pb_field(&b, &field, &wire)) { /* count pieces first */
        if (field == 1 && wire == 2) n++;
        pb_skip(&b, wire);
    }
    if (b.bad || n == 0) return fy_fail(err, FANYI_ERR_MODEL, "%s: not a SentencePiece model (no pieces, or a truncated file)", t->name);
    t->pieces = calloc((size_t)n, sizeof *t->pieces);
    if (!t->pieces) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    b = (pbuf){t->blob, t->blob + t->blob_size, 0};
    while (pb_field(&b, &field, &wire)) {
        if (field == 1 && wire == 2) bad |= !parse_piece(t, pb_bytes(&b), &t->pieces[t->n_pieces++]);
        else if (field == 2 && wire == 2) parse_trainer(t, pb_bytes(&b), &bad);
        else if (field == 3 && wire == 2) parse_normalizer(t, pb_bytes(&b), &bad);
        else pb_skip(&b, wire);
    }
    if (b.bad || bad) return fy_fail(err, FANYI_ERR_MODEL, "%s: the SentencePiece model is corrupt", t->name);
    if (t->model_type != M_UNIGRAM && t->model_type != M_BPE)
        return fy_fail(err, FANYI_ERR_MODEL, "%s: model type %d is not supported (unigram and BPE are)", t->name, t->model_type);
    int rc = decode_charsmap(t, err);
    return rc ? rc : index_pieces(t, err);
}

int fy_spm_load_memory(fy_tokenizer **out, const uint8_t *data, size_t size, const char *name, fanyi_error *err) {
    fy_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    t->name = strdup(name);
    t->blob = malloc(size ? size : 1);
    if (!t->name || !t->blob) {
        fy_tokenizer_free(t);
        return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    }
    memcpy(t->blob, data, size);
    t->blob_size = size;
    int rc = parse_model(t, err);
    if (rc) {
        fy_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return FANYI_OK;
}

int fy_spm_load_file(fy_tokenizer **out, const char *path, fanyi_error *err) {
    char *data;
    size_t size;
    int rc = fy_read_file(path, &data, &size, err);
    if (rc) return rc;
    rc = fy_spm_load_memory(out, (const uint8_t *)data, size, path, err);
    free(data);
    return rc;
}

static int load_vocab(fy_tokenizer *t, const char *path, int model_vocab_size, fanyi_error *err) {
    char *text;
    size_t len;
    int rc = fy_read_file(path, &text, &len, err);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fy_fail(err, FANYI_ERR_MODEL, "%s: not a JSON object of piece -> id", path);
    }
    int n = cJSON_GetArraySize(root), max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= 1 << 24) {
            cJSON_Delete(root);
            return fy_fail(err, FANYI_ERR_MODEL, "%s: entry '%s' is not a valid id", path, it->string);
        }
        if ((int)it->valuedouble > max_id) max_id = (int)it->valuedouble;
    }
    if (model_vocab_size && max_id >= model_vocab_size) {
        cJSON_Delete(root);
        return fy_fail(err, FANYI_ERR_MODEL, "%s: id %d does not fit the model's vocabulary of %d", path, max_id,
                       model_vocab_size);
    }
    t->n_model = max_id + 1;
    t->model_pieces = calloc((size_t)(t->n_model ? t->n_model : 1), sizeof *t->model_pieces);
    t->piece_to_model = malloc(sizeof(int) * (size_t)t->n_pieces);
    rc = t->model_pieces && t->piece_to_model && fy_strmap_init(&t->model_ids, (size_t)n) ? FANYI_OK
         : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    cJSON_ArrayForEach(it, root) {
        if (rc) break;
        int id = (int)it->valuedouble;
        if (t->model_pieces[id]) continue; /* first piece of an id names it */
        t->model_pieces[id] = strdup(it->string);
        if (!t->model_pieces[id]) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        else fy_strmap_put(&t->model_ids, t->model_pieces[id], strlen(t->model_pieces[id]), id);
    }
    cJSON_Delete(root);
    if (rc) return rc;
    t->model_unk = fy_strmap_get(&t->model_ids, "<unk>", 5);
    if (t->model_unk < 0) return fy_fail(err, FANYI_ERR_MODEL, "%s: no '<unk>' entry", path);
    for (int i = 0; i < t->n_pieces; i++) {
        int id = fy_strmap_get(&t->model_ids, t->pieces[i].s, t->pieces[i].len);
        t->piece_to_model[i] = id >= 0 ? id : t->model_unk;
    }
    t->has_vocab = 1;
    return FANYI_OK;
}

int fy_tokenizer_load(fy_tokenizer **out, const char *dir, const char *spm_file, const char *vocab_file,
                      int model_vocab_size, fanyi_error *err) {
    char *path = fy_path_join(dir, spm_file);
    if (!path) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    fy_tokenizer *t = NULL;
    int rc = fy_spm_load_file(&t, path, err);
    free(path);
    if (!rc && vocab_file && vocab_file[0]) {
        path = fy_path_join(dir, vocab_file);
        rc = path ? load_vocab(t, path, model_vocab_size, err) : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        free(path);
    } else if (!rc && model_vocab_size && t->n_pieces > model_vocab_size)
        rc = fy_fail(err, FANYI_ERR_MODEL, "%s/%s: %d pieces do not fit the model's vocabulary of %d", dir, spm_file,
                     t->n_pieces, model_vocab_size);
    if (rc) {
        fy_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return FANYI_OK;
}

void fy_tokenizer_free(fy_tokenizer *t) {
    if (!t) return;
    fy_strmap_free(&t->normal);
    fy_strmap_free(&t->reserved);
    fy_trie_free(&t->pieces_trie);
    if (t->has_user) fy_trie_free(&t->user_trie);
    if (t->model_pieces)
        for (int i = 0; i < t->n_model; i++) free(t->model_pieces[i]);
    free(t->model_pieces);
    free(t->piece_to_model);
    fy_strmap_free(&t->model_ids);
    free(t->pieces);
    free(t->blob);
    free(t->name);
    free(t);
}

int fy_tokenizer_size(const fy_tokenizer *t) { return t->has_vocab ? t->n_model : t->n_pieces; }
