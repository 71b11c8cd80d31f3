/*
 * spm.h -- the inside of the SentencePiece tokenizer, shared by its parts:
 * load.c (model file and vocabulary), normalize.c, unigram.c, bpe.c,
 * encode.c and decode.c. Nothing outside src/tokenizer includes it.
 */
#ifndef FANYI_TOKENIZER_SPM_H
#define FANYI_TOKENIZER_SPM_H

#include "index.h"
#include "tokenizer.h"

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

struct fanyi_tokenizer {
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

/* A piece of the normalized text and its SentencePiece id. */
typedef struct {
    uint32_t begin, len; /* in the normalized text */
    int id;
} segment;

typedef struct {
    segment *v;
    size_t n, cap;
} segments;

int fy_seg_push(segments *s, uint32_t begin, uint32_t len, int id);

/* SentencePiece's normalizer (character map, user pieces, whitespace) into o; 0 if memory runs out. */
int fy_spm_normalize(const fy_tokenizer *t, const char *s, size_t n, fy_text *o);
/* Length of the longest user-defined piece at the start of s, or 0. */
size_t fy_spm_user_longest(const fy_tokenizer *t, const char *s, size_t n);
/* Length of the valid UTF-8 character at s, or 0 if the bytes are invalid. */
size_t fy_utf8_char_len(const char *s, size_t n);
/* Byte length of the UTF-8 character that starts with *s (from its lead byte). */
size_t fy_one_char_len(const char *s);
/* Segmentations of normalized text; 0 when memory runs out. */
int fy_spm_unigram(const fy_tokenizer *t, const char *s, size_t n, segments *out);
int fy_spm_bpe(const fy_tokenizer *t, const char *s, size_t n, segments *out);
/* The SentencePiece id of a piece string (the unknown piece's if none). */
int fy_spm_piece_id(const fy_tokenizer *t, const char *s, size_t n);

#endif
