#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum piece_type { P_NORMAL = 1, P_UNKNOWN = 2, P_CONTROL = 3, P_USER = 4, P_UNUSED = 5, P_BYTE = 6 };
enum model_type { M_UNIGRAM = 1, M_BPE = 2 };

static const char kSpace[] = "\xe2\x96\x81"; /* U+2581, the escaped space */
static const char kReplacement[] = "\xef\xbf\xbd";

typedef struct {
    const char *s;
    uint32_t len;
    float score;
    int type;
} piece;

/* ---- hash maps ------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* String -> int, open addressing; keys point into memory the owner keeps. */
typedef struct {
    const char **keys;
    uint32_t *lens;
    int *vals;
    size_t cap;
} strmap;

static int strmap_init(strmap *m, size_t n) {
    m->cap = 16;
    while (m->cap < 2 * n + 16) m->cap *= 2;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->lens = calloc(m->cap, sizeof *m->lens);
    m->vals = calloc(m->cap, sizeof *m->vals);
    return m->keys && m->lens && m->vals;
}

static void strmap_free(strmap *m) { free(m->keys), free(m->lens), free(m->vals); }

/* Returns 0 if the key was already present (value unchanged). */
static int strmap_put(strmap *m, const char *k, size_t n, int v) {
    size_t i = hash_bytes(k, n) & (m->cap - 1);
    for (; m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (m->lens[i] == n && !memcmp(m->keys[i], k, n)) return 0;
    m->keys[i] = k;
    m->lens[i] = (uint32_t)n;
    m->vals[i] = v;
    return 1;
}

static int strmap_get(const strmap *m, const char *k, size_t n) {
    if (!m->cap) return -1;
    for (size_t i = hash_bytes(k, n) & (m->cap - 1); m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (m->lens[i] == n && !memcmp(m->keys[i], k, n)) return m->vals[i];
    return -1;
}

/* A byte trie: (node, byte) -> child in one hash table; each node may end a piece. */
typedef struct {
    uint64_t *keys; /* node << 8 | byte, plus 1 so that 0 means empty */
    int32_t *child;
    size_t cap;
    int32_t *value; /* piece id ending at node, or -1 */
    int n_nodes, cap_nodes;
} trie;

static int trie_init(trie *t, size_t total_bytes) {
    memset(t, 0, sizeof *t);
    t->cap = 16;
    while (t->cap < 2 * total_bytes + 16) t->cap *= 2;
    t->cap_nodes = (int)total_bytes + 1;
    t->keys = calloc(t->cap, sizeof *t->keys);
    t->child = calloc(t->cap, sizeof *t->child);
    t->value = malloc(sizeof *t->value * (size_t)t->cap_nodes);
    if (!t->keys || !t->child || !t->value) return 0;
    t->value[0] = -1;
    t->n_nodes = 1;
    return 1;
}

static void trie_free(trie *t) { free(t->keys), free(t->child), free(t->value); }

static inline int trie_step(const trie *t, int node, uint8_t byte) {
    uint64_t key = ((uint64_t)node << 8 | byte) + 1;
    for (size_t i = (key * 0x9E3779B97F4A7C15ull >> 20) & (t->cap - 1); t->keys[i]; i = (i + 1) & (t->cap - 1))
        if (t->keys[i] == key) return t->child[i];
    return -1;
}

static void trie_insert(trie *t, const char *s, size_t n, int id) {
    int node = 0;
    for (size_t j = 0; j < n; j++) {
        int next = trie_step(t, node, (uint8_t)s[j]);
        if (next < 0) {
            uint64_t key = ((uint64_t)node << 8 | (uint8_t)s[j]) + 1;
            size_t i = (key * 0x9E3779B97F4A7C15ull >> 20) & (t->cap - 1);
            while (t->keys[i]) i = (i + 1) & (t->cap - 1);
            next = t->n_nodes++;
            t->value[next] = -1;
            t->keys[i] = key;
            t->child[i] = next;
        }
        node = next;
    }
    if (t->value[node] < 0) t->value[node] = id;
}

/* ---- the tokenizer ---------------------------------------------------------- */

struct fy_tokenizer {
    char *name;
    uint8_t *blob; /* the model file; piece strings point into it */
    size_t blob_size;
    piece *pieces;
    int n_pieces;
    int model_type, byte_fallback, treat_ws_as_suffix;
    int unk_id; /* index of the UNKNOWN piece */
    const char *unk_surface;
    size_t unk_surface_len;
    /* normalizer */
    const uint8_t *charsmap_trie;
    size_t charsmap_units;
    const char *charsmap_norm;
    size_t charsmap_norm_size;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    int nfkc, casefold; /* utf8proc normalization when there is no charsmap */
    strmap normal;   /* normal, user-defined and unused pieces */
    strmap reserved; /* control, unknown and byte pieces */
    trie pieces_trie;
    trie user_trie;
    int has_user;
    float min_score, max_score;
    /* model vocabulary (Marian vocab.json) */
    int has_vocab;
    int *piece_to_model; /* spm id -> model id */
    char **model_pieces; /* model id -> piece */
    strmap model_ids;    /* piece -> model id */
    int n_model, model_unk;
};

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
    if (!strmap_init(&t->normal, (size_t)t->n_pieces) || !strmap_init(&t->reserved, 300) ||
        !trie_init(&t->pieces_trie, bytes))
        return fy_fail(err, FANYI_ERR_MEMORY, "%s: out of memory indexing pieces", t->name);
    for (int i = 0; i < t->n_pieces; i++) {
        const piece *p = &t->pieces[i];
        if (p->len == 0) return fy_fail(err, FANYI_ERR_MODEL, "%s: piece %d is empty", t->name, i);
        if (p->type < P_NORMAL || p->type > P_BYTE)
            return fy_fail(err, FANYI_ERR_MODEL, "%s: piece %d has unknown type %d", t->name, i, p->type);
        int normal = p->type == P_NORMAL || p->type == P_USER || p->type == P_UNUSED;
        if (!strmap_put(normal ? &t->normal : &t->reserved, p->s, p->len, i))
            return fy_fail(err, FANYI_ERR_MODEL, "%s: piece %d ('%.*s') is defined twice", t->name, i, (int)p->len, p->s);
        if (normal) trie_insert(&t->pieces_trie, p->s, p->len, i);
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
        if (!trie_init(&t->user_trie, user_bytes)) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        for (int i = 0; i < t->n_pieces; i++)
            if (t->pieces[i].type == P_USER) trie_insert(&t->user_trie, t->pieces[i].s, t->pieces[i].len, i);
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
    rc = t->model_pieces && t->piece_to_model && strmap_init(&t->model_ids, (size_t)n) ? FANYI_OK
         : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    cJSON_ArrayForEach(it, root) {
        if (rc) break;
        int id = (int)it->valuedouble;
        if (t->model_pieces[id]) continue; /* first piece of an id names it */
        t->model_pieces[id] = strdup(it->string);
        if (!t->model_pieces[id]) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        else strmap_put(&t->model_ids, t->model_pieces[id], strlen(t->model_pieces[id]), id);
    }
    cJSON_Delete(root);
    if (rc) return rc;
    t->model_unk = strmap_get(&t->model_ids, "<unk>", 5);
    if (t->model_unk < 0) return fy_fail(err, FANYI_ERR_MODEL, "%s: no '<unk>' entry", path);
    for (int i = 0; i < t->n_pieces; i++) {
        int id = strmap_get(&t->model_ids, t->pieces[i].s, t->pieces[i].len);
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
    strmap_free(&t->normal);
    strmap_free(&t->reserved);
    trie_free(&t->pieces_trie);
    if (t->has_user) trie_free(&t->user_trie);
    if (t->model_pieces)
        for (int i = 0; i < t->n_model; i++) free(t->model_pieces[i]);
    free(t->model_pieces);
    free(t->piece_to_model);
    strmap_free(&t->model_ids);
    free(t->pieces);
    free(t->blob);
    free(t->name);
    free(t);
}

int fy_tokenizer_size(const fy_tokenizer *t) { return t->has_vocab ? t->n_model : t->n_pieces; }

/* ---- growable buffers ------------------------------------------------------ */

int fy_ids_push(fy_ids *v, int id) {
    if (!fy_grow(&v->ids, &v->cap, v->n + 1, sizeof *v->ids)) return 0;
    v->ids[v->n++] = id;
    return 1;
}

int fy_text_append(fy_text *t, const char *s, size_t n) {
    if (!fy_grow(&t->s, &t->cap, t->n + n + 1, 1)) return 0;
    memcpy(t->s + t->n, s, n);
    t->n += n;
    t->s[t->n] = '\0';
    return 1;
}

/* ---- normalizer -------------------------------------------------------------- */

/* darts-clone double array: longest prefix of s[0..n) with a value. */
static size_t charsmap_longest(const fy_tokenizer *t, const char *s, size_t n, uint32_t *value) {
    const uint8_t *u = t->charsmap_trie;
#define UNIT(i) ((uint32_t)u[4 * (i)] | (uint32_t)u[4 * (i) + 1] << 8 | (uint32_t)u[4 * (i) + 2] << 16 | (uint32_t)u[4 * (i) + 3] << 24)
#define OFFSET(x) (((x) >> 10) << (((x) & (1u << 9)) >> 6))
    size_t best = 0, pos = 0;
    uint32_t unit = UNIT(0);
    pos ^= OFFSET(unit);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        pos ^= c;
        if (pos >= t->charsmap_units) break;
        unit = UNIT(pos);
        if ((unit & ((1u << 31) | 0xFF)) != c) break;
        pos ^= OFFSET(unit);
        if (pos >= t->charsmap_units) break;
        if ((unit >> 8) & 1) {
            best = i + 1;
            *value = UNIT(pos) & ((1u << 31) - 1);
        }
    }
#undef UNIT
#undef OFFSET
    return best;
}

static size_t user_longest(const fy_tokenizer *t, const char *s, size_t n) {
    if (!t->has_user) return 0;
    size_t best = 0;
    int node = 0;
    for (size_t i = 0; i < n && node >= 0; i++) {
        node = trie_step(&t->user_trie, node, (uint8_t)s[i]);
        if (node >= 0 && t->user_trie.value[node] >= 0) best = i + 1;
    }
    return best;
}

/* Length of the valid UTF-8 character at s, or 0 if the bytes are invalid. */
static size_t utf8_char_len(const char *s, size_t n) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
    return k > 0 ? (size_t)k : 0;
}

/* One step of normalization at s: sets the replacement (out, out_len); returns bytes consumed. */
static size_t normalize_prefix(const fy_tokenizer *t, const char *s, size_t n, const char **out, size_t *out_len) {
    size_t k = user_longest(t, s, n);
    if (k) {
        *out = s;
        *out_len = k;
        return k;
    }
    uint32_t value = 0;
    k = t->charsmap_trie ? charsmap_longest(t, s, n, &value) : 0;
    if (k && value < t->charsmap_norm_size) {
        *out = t->charsmap_norm + value;
        *out_len = strnlen(*out, t->charsmap_norm_size - value);
        return k;
    }
    k = utf8_char_len(s, n);
    if (!k) {
        *out = kReplacement;
        *out_len = 3;
        return 1;
    }
    *out = s;
    *out_len = k;
    return k;
}

static int ends_with_space(const fy_text *o, const char *sp, size_t sl) {
    return o->n >= sl && !memcmp(o->s + o->n - sl, sp, sl);
}

/* SentencePiece's Normalizer::Normalize. */
static int normalize(const fy_tokenizer *t, const char *s, size_t n, fy_text *o) {
    o->n = 0;
    if (o->s) o->s[0] = '\0';
    const char *rep;
    size_t rep_len, k;
    if (t->remove_extra_ws)
        while (n > 0 && (k = normalize_prefix(t, s, n, &rep, &rep_len)) && rep_len == 1 && rep[0] == ' ') {
            s += k;
            n -= k;
        }
    if (n == 0) return 1;
    const char *space = t->escape_ws ? kSpace : " ";
    size_t space_len = t->escape_ws ? 3 : 1;
    if (!t->treat_ws_as_suffix && t->add_dummy_prefix && !fy_text_append(o, space, space_len)) return 0;
    int prev_space = t->remove_extra_ws;
    while (n > 0) {
        k = normalize_prefix(t, s, n, &rep, &rep_len);
        while (prev_space && rep_len > 0 && rep[0] == ' ') rep++, rep_len--;
        if (rep_len > 0) {
            for (size_t i = 0; i < rep_len; i++) {
                int ok = (t->escape_ws && rep[i] == ' ') ? fy_text_append(o, kSpace, 3) : fy_text_append(o, rep + i, 1);
                if (!ok) return 0;
            }
            prev_space = rep[rep_len - 1] == ' ';
        }
        s += k;
        n -= k;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    if (t->remove_extra_ws)
        while (ends_with_space(o, space, space_len)) o->n -= space_len, o->s[o->n] = '\0';
    if (t->treat_ws_as_suffix && t->add_dummy_prefix && !fy_text_append(o, space, space_len)) return 0;
    return 1;
}

/* ---- segmentation -------------------------------------------------------------- */

typedef struct {
    uint32_t begin, len; /* in the normalized text */
    int id;
} segment;

typedef struct {
    segment *v;
    size_t n, cap;
} segments;

static int seg_push(segments *s, uint32_t begin, uint32_t len, int id) {
    if (!fy_grow(&s->v, &s->cap, s->n + 1, sizeof *s->v)) return 0;
    s->v[s->n++] = (segment){begin, len, id};
    return 1;
}

static size_t one_char_len(const char *s) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[(uint8_t)*s >> 4];
}

/* Unigram: SentencePiece's EncodeOptimized, same arithmetic (double candidates, float storage). */
static int encode_unigram(const fy_tokenizer *t, const char *s, size_t n, segments *out) {
    typedef struct {
        int id;
        float score;
        int starts_at;
    } best_node;
    best_node *best = malloc((n + 1) * sizeof *best);
    if (!best) return 0;
    for (size_t i = 0; i <= n; i++) best[i] = (best_node){-1, 0.0f, -1};
    const float unk_score = t->min_score - 10.0f;
    for (size_t start = 0; start < n;) {
        float till_here = best[start].score;
        int has_single = 0;
        size_t mblen = one_char_len(s + start);
        if (mblen > n - start) mblen = n - start;
        int node = 0;
        for (size_t pos = start; pos < n;) {
            node = trie_step(&t->pieces_trie, node, (uint8_t)s[pos++]);
            if (node < 0) break;
            int id = t->pieces_trie.value[node];
            if (id < 0 || t->pieces[id].type == P_UNUSED) continue;
            size_t length = pos - start;
            double score = t->pieces[id].type == P_USER ? (double)((float)length * t->max_score) - 0.1
                                                          : (double)t->pieces[id].score;
            double cand = score + (double)till_here;
            best_node *b = &best[pos];
            if (b->starts_at == -1 || cand > (double)b->score) *b = (best_node){id, (float)cand, (int)start};
            if (length == mblen) has_single = 1;
        }
        if (!has_single) {
            best_node *b = &best[start + mblen];
            float cand = unk_score + till_here;
            if (b->starts_at == -1 || cand > b->score) *b = (best_node){t->unk_id, cand, (int)start};
        }
        start += mblen;
    }
    size_t first = out->n, count = 0;
    for (size_t end = n; end > 0; end = (size_t)best[end].starts_at) count++;
    for (size_t i = 0; i < count; i++)
        if (!seg_push(out, 0, 0, 0)) {
            free(best);
            return 0;
        }
    size_t i = first + count;
    for (size_t end = n; end > 0; end = (size_t)best[end].starts_at) {
        const best_node *b = &best[end];
        out->v[--i] = (segment){(uint32_t)b->starts_at, (uint32_t)(end - (size_t)b->starts_at), b->id};
    }
    free(best);
    return 1;
}

static int piece_to_id(const fy_tokenizer *t, const char *s, size_t n) {
    int id = strmap_get(&t->reserved, s, n);
    if (id < 0) id = strmap_get(&t->normal, s, n);
    return id < 0 ? t->unk_id : id;
}

typedef struct {
    int left, right;
    float score;
    uint32_t size;
} bpe_pair;

typedef struct {
    int prev, next, freeze;
    uint32_t begin, len;
} bpe_symbol;

/* Max-heap on (score, then lower left). */
static int pair_before(const bpe_pair *a, const bpe_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    bpe_pair *v;
    size_t n, cap;
} pair_heap;

static int heap_push(pair_heap *h, bpe_pair p) {
    if (!fy_grow(&h->v, &h->cap, h->n + 1, sizeof *h->v)) return 0;
    size_t i = h->n++;
    while (i > 0 && pair_before(&p, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = p;
    return 1;
}

static bpe_pair heap_pop(pair_heap *h) {
    bpe_pair top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->v[c + 1], &h->v[c])) c++;
        if (!pair_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* Merges that produced unused pieces, for resegmentation (SentencePiece's rev_merge). */
typedef struct {
    uint32_t begin, size, left_len; /* the merged piece at norm[begin..+size), split at left_len */
} bpe_merge;

typedef struct {
    bpe_merge *v;
    size_t n, cap;
} merge_log;

static int bpe_add_pair(const fy_tokenizer *t, const char *s, const bpe_symbol *sym, int left, int right, pair_heap *h,
                        merge_log *log) {
    if (left < 0 || right < 0 || sym[left].freeze || sym[right].freeze) return 1;
    uint32_t size = sym[left].len + sym[right].len;
    int id = strmap_get(&t->normal, s + sym[left].begin, size);
    if (id < 0) return 1;
    if (t->pieces[id].type == P_UNUSED) {
        if (!fy_grow(&log->v, &log->cap, log->n + 1, sizeof *log->v)) return 0;
        log->v[log->n++] = (bpe_merge){sym[left].begin, size, sym[left].len};
    }
    return heap_push(h, (bpe_pair){left, right, t->pieces[id].score, size});
}

/* Splits an unused piece back into the two pieces it was last recorded as merged from. */
static int bpe_resegment(const fy_tokenizer *t, const char *s, uint32_t begin, uint32_t len, const merge_log *log,
                         segments *out) {
    int id = piece_to_id(t, s + begin, len);
    if (t->pieces[id].type == P_UNUSED)
        for (size_t i = log->n; i-- > 0;) {
            const bpe_merge *m = &log->v[i];
            if (m->size == len && !memcmp(s + m->begin, s + begin, len))
                return bpe_resegment(t, s, begin, m->left_len, log, out) &&
                       bpe_resegment(t, s, begin + m->left_len, len - m->left_len, log, out);
        }
    return seg_push(out, begin, len, id);
}

static int encode_bpe(const fy_tokenizer *t, const char *s, size_t n, segments *out) {
    size_t count = 0;
    for (size_t i = 0; i < n; count++) {
        size_t k = user_longest(t, s + i, n - i);
        i += k ? k : (one_char_len(s + i) < n - i ? one_char_len(s + i) : n - i);
    }
    bpe_symbol *sym = malloc((count ? count : 1) * sizeof *sym);
    pair_heap heap = {0};
    merge_log log = {0};
    if (!sym) return 0;
    size_t idx = 0;
    for (size_t i = 0; i < n; idx++) {
        size_t k = user_longest(t, s + i, n - i);
        int freeze = k > 0;
        if (!k) k = one_char_len(s + i) < n - i ? one_char_len(s + i) : n - i;
        sym[idx] = (bpe_symbol){(int)idx - 1, idx + 1 < count ? (int)idx + 1 : -1, freeze, (uint32_t)i, (uint32_t)k};
        i += k;
    }
    int ok = 1;
    for (size_t i = 1; ok && i < count; i++) ok = bpe_add_pair(t, s, sym, (int)i - 1, (int)i, &heap, &log);
    while (ok && heap.n) {
        bpe_pair top = heap_pop(&heap);
        bpe_symbol *l = &sym[top.left], *r = &sym[top.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = top.left;
        r->len = 0;
        ok = bpe_add_pair(t, s, sym, l->prev, top.left, &heap, &log) && bpe_add_pair(t, s, sym, top.left, l->next, &heap, &log);
    }
    for (int i = count ? 0 : -1; ok && i != -1; i = sym[i].next) ok = bpe_resegment(t, s, sym[i].begin, sym[i].len, &log, out);
    free(sym);
    free(heap.v);
    free(log.v);
    return ok;
}

/* Normalizes and segments text; segments index into norm. */
static int segment_text(const fy_tokenizer *t, const char *text, size_t len, fy_text *norm, segments *segs,
                        int *warnings, fanyi_error *err) {
    const char *src = text;
    size_t n = len;
    /* Invalid bytes become U+FFFD inside the normalizer, one per byte and after
     * the character map has had its chance, as SentencePiece does; here they
     * are only reported. */
    for (size_t i = 0; i < len;) {
        size_t k = utf8_char_len(text + i, len - i);
        if (!k) {
            *warnings |= FY_TOK_INVALID_UTF8;
            break;
        }
        i += k;
    }
    utf8proc_uint8_t *folded = NULL;
    if (t->nfkc && !t->charsmap_trie && n > 0) {
        /* No compiled map in the model: apply the named normalization with utf8proc. */
        utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
        if (t->casefold) opt |= UTF8PROC_CASEFOLD;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)n, &folded, opt);
        if (r >= 0) {
            src = (const char *)folded;
            n = (size_t)r;
        }
    }
    int ok = normalize(t, src, n, norm);
    free(folded);
    if (!ok) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory normalizing a line");
    if (norm->n == 0) return FANYI_OK;
    ok = t->model_type == M_BPE ? encode_bpe(t, norm->s, norm->n, segs) : encode_unigram(t, norm->s, norm->n, segs);
    return ok ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "out of memory segmenting a line");
}

/* Calls emit(piece text, spm id) for each output piece: byte fallback expanded, unknown runs merged. */
typedef int (*piece_sink)(void *ctx, const fy_tokenizer *t, const char *s, size_t n, int spm_id);

static int emit_pieces(const fy_tokenizer *t, const fy_text *norm, const segments *segs, piece_sink sink, void *ctx) {
    for (size_t i = 0; i < segs->n; i++) {
        const segment *sg = &segs->v[i];
        int is_unk = t->pieces[sg->id].type == P_UNKNOWN;
        if (is_unk && t->byte_fallback) {
            for (uint32_t j = 0; j < sg->len; j++) {
                char byte_piece[8];
                snprintf(byte_piece, sizeof byte_piece, "<0x%02X>", (uint8_t)norm->s[sg->begin + j]);
                if (!sink(ctx, t, byte_piece, 6, piece_to_id(t, byte_piece, 6))) return 0;
            }
            continue;
        }
        uint32_t len = sg->len;
        while (is_unk && i + 1 < segs->n && t->pieces[segs->v[i + 1].id].type == P_UNKNOWN) len += segs->v[++i].len;
        if (!sink(ctx, t, norm->s + sg->begin, len, sg->id)) return 0;
    }
    return 1;
}

static int sink_ids(void *ctx, const fy_tokenizer *t, const char *s, size_t n, int spm_id) {
    int id = spm_id;
    if (t->has_vocab) {
        /* Marian maps the piece string through vocab.json; unknown pieces become <unk>. */
        id = strmap_get(&t->model_ids, s, n);
        if (id < 0) id = t->model_unk;
    }
    return fy_ids_push(ctx, id);
}

static int sink_pieces(void *ctx, const fy_tokenizer *t, const char *s, size_t n, int spm_id) {
    fy_text *out = ctx;
    (void)t, (void)spm_id;
    return (out->n == 0 || fy_text_append(out, " ", 1)) && fy_text_append(out, s, n);
}

static int encode_with(const fy_tokenizer *t, const char *text, size_t len, piece_sink sink, void *ctx, int *warnings,
                       fanyi_error *err) {
    fy_text norm = {0};
    segments segs = {0};
    int rc = segment_text(t, text, len, &norm, &segs, warnings, err);
    if (!rc && !emit_pieces(t, &norm, &segs, sink, ctx)) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(norm.s);
    free(segs.v);
    return rc;
}

/* ---- Marian's text conventions --------------------------------------------------- */

/* MarianTokenizer's special tokens: written literally in the text, each becomes its id. */
static const char *const kMarianSpecials[] = {"</s>", "<unk>", "<pad>"};

/* The special token of the vocabulary that starts at text[0], or -1; *n gets its length. */
static int special_at(const fy_tokenizer *t, const char *text, size_t len, size_t *n) {
    for (size_t k = 0; k < sizeof kMarianSpecials / sizeof *kMarianSpecials; k++) {
        size_t sn = strlen(kMarianSpecials[k]);
        int id = sn <= len && !memcmp(text, kMarianSpecials[k], sn) ? strmap_get(&t->model_ids, text, sn) : -1;
        if (id >= 0) {
            *n = sn;
            return id;
        }
    }
    return -1;
}

/* The span of a language code ">>xx<<" as Python's re ">>.+<<" finds it:
 * from the first ">>" to the last "<<" at least one character later.
 * Returns 0 if there is none. */
static int language_code_span(const char *text, size_t len, size_t *begin, size_t *end) {
    const char *open = len >= 5 ? memmem(text, len, ">>", 2) : NULL;
    if (!open) return 0;
    size_t from = (size_t)(open - text) + 3;
    for (size_t q = len - 2; q >= from; q--) /* from >= 3: q cannot wrap */
        if (text[q] == '<' && text[q + 1] == '<') {
            *begin = (size_t)(open - text);
            *end = q + 2;
            return 1;
        }
    return 0;
}

/* One stretch of text between special tokens, as MarianTokenizer._tokenize
 * does it: a language code at its start becomes one id (<unk> if the
 * vocabulary lacks it), a code anywhere is cut out, the rest is SentencePiece's. */
static int encode_marian_segment(const fy_tokenizer *t, const char *text, size_t len, fy_ids *out, int *warnings,
                                 fanyi_error *err) {
    size_t begin, end;
    if (!language_code_span(text, len, &begin, &end)) return encode_with(t, text, len, sink_ids, out, warnings, err);
    if (begin == 0) {
        int id = strmap_get(&t->model_ids, text, end);
        if (!fy_ids_push(out, id >= 0 ? id : t->model_unk)) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    }
    fy_text rest = {0};
    int rc = fy_text_append(&rest, text, begin) && fy_text_append(&rest, text + end, len - end)
                 ? encode_with(t, rest.s, rest.n, sink_ids, out, warnings, err)
                 : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(rest.s);
    return rc;
}

int fy_tokenizer_encode(const fy_tokenizer *t, const char *text, size_t len, fy_ids *out, int *warnings,
                        fanyi_error *err) {
    if (!t->has_vocab) return encode_with(t, text, len, sink_ids, out, warnings, err);
    size_t from = 0;
    for (size_t i = 0; i <= len;) {
        size_t n = 0;
        int special = i < len ? special_at(t, text + i, len - i, &n) : -1;
        if (special < 0 && i < len) {
            i++;
            continue;
        }
        int rc = i > from ? encode_marian_segment(t, text + from, i - from, out, warnings, err) : FANYI_OK;
        if (!rc && special >= 0 && !fy_ids_push(out, special)) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
        if (rc) return rc;
        if (special < 0) break;
        i += n;
        from = i;
    }
    return FANYI_OK;
}

int fy_tokenizer_model_id(const fy_tokenizer *t, const char *entry, size_t n) {
    return t->has_vocab ? strmap_get(&t->model_ids, entry, n) : -1;
}

int fy_tokenizer_language_codes(const fy_tokenizer *t, const char **codes, int cap) {
    int n = 0;
    for (int id = 0; t->has_vocab && id < t->n_model; id++) {
        const char *p = t->model_pieces[id];
        size_t len = p ? strlen(p) : 0, begin, end;
        if (len >= 5 && language_code_span(p, len, &begin, &end) && begin == 0 && end == len) {
            if (n < cap) codes[n] = p;
            n++;
        }
    }
    return n;
}

int fy_tokenizer_encode_pieces(const fy_tokenizer *t, const char *text, size_t len, fy_text *out, int *warnings,
                               fanyi_error *err) {
    fy_text line = {0};
    int rc = encode_with(t, text, len, sink_pieces, &line, warnings, err);
    if (!rc && line.n && !fy_text_append(out, line.s, line.n)) rc = fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(line.s);
    return rc;
}

/* ---- decoding ---------------------------------------------------------------- */

/* Appends bytes collected from byte pieces; invalid sequences become U+FFFD per byte. */
static int flush_bytes(fy_text *out, fy_text *bytes) {
    for (size_t i = 0; i < bytes->n;) {
        size_t k = utf8_char_len(bytes->s + i, bytes->n - i);
        if (!(k ? fy_text_append(out, bytes->s + i, k) : fy_text_append(out, kReplacement, 3))) return 0;
        i += k ? k : 1;
    }
    bytes->n = 0;
    return 1;
}

/* SentencePiece 0.1.97's Decode: the leading U+2581 is dropped while the text is still empty. */
static int decode_piece(const fy_tokenizer *t, const char *s, size_t n, fy_text *out, fy_text *bytes) {
    int id = piece_to_id(t, s, n);
    const piece *p = &t->pieces[id];
    if (p->type == P_BYTE) {
        unsigned v = 0;
        sscanf(p->s + 3, "%2X", &v);
        char c = (char)v;
        return fy_text_append(bytes, &c, 1);
    }
    if (!flush_bytes(out, bytes)) return 0;
    if (p->type == P_CONTROL) return 1;
    if (p->type == P_UNKNOWN) {
        if (p->len == n && !memcmp(p->s, s, n)) return fy_text_append(out, t->unk_surface, t->unk_surface_len);
        return fy_text_append(out, s, n);
    }
    size_t i = 0;
    if (out->n == 0 && (t->add_dummy_prefix || t->remove_extra_ws) && n >= 3 && !memcmp(s, kSpace, 3)) i = 3;
    while (i < n) {
        if (n - i >= 3 && !memcmp(s + i, kSpace, 3)) {
            if (!fy_text_append(out, " ", 1)) return 0;
            i += 3;
        } else {
            if (!fy_text_append(out, s + i, 1)) return 0;
            i++;
        }
    }
    return 1;
}

int fy_tokenizer_decode_pieces(const fy_tokenizer *t, const char *const *pieces, const size_t *lens, size_t n,
                               fy_text *out, fanyi_error *err) {
    fy_text line = {0}, bytes = {0};
    int ok = fy_text_append(&line, "", 0);
    for (size_t i = 0; ok && i < n; i++) ok = decode_piece(t, pieces[i], lens[i], &line, &bytes);
    ok = ok && flush_bytes(&line, &bytes) && fy_text_append(out, line.s, line.n);
    free(line.s);
    free(bytes.s);
    return ok ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "out of memory decoding");
}

int fy_tokenizer_decode(const fy_tokenizer *t, const int *ids, size_t n, fy_text *out, fanyi_error *err) {
    fy_text line = {0}, bytes = {0};
    int ok = fy_text_append(&line, "", 0), limit = fy_tokenizer_size(t);
    for (size_t i = 0; ok && i < n; i++) {
        if (ids[i] < 0 || ids[i] >= limit) {
            free(line.s), free(bytes.s);
            return fy_fail(err, FANYI_ERR_INPUT, "%s: id %d is outside the vocabulary (0..%d)", t->name, ids[i], limit - 1);
        }
        if (t->has_vocab) {
            const char *p = t->model_pieces[ids[i]];
            ok = p ? decode_piece(t, p, strlen(p), &line, &bytes) : 1;
        } else
            ok = decode_piece(t, t->pieces[ids[i]].s, t->pieces[ids[i]].len, &line, &bytes);
    }
    ok = ok && flush_bytes(&line, &bytes) && fy_text_append(out, line.s, line.n);
    free(line.s);
    free(bytes.s);
    return ok ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "out of memory decoding");
}
