/*
 * tokenizer.h -- SentencePiece models (.model/.spm) in C, id for id.
 *
 * Loads the SentencePiece ModelProto directly (unigram and BPE; normal,
 * unknown, control, user-defined, unused and byte pieces) and reproduces
 * SentencePiece 0.1.97's encoder and decoder exactly: the precompiled
 * character map normalizer (nmt_nfkc and friends), dummy prefix, whitespace
 * removal, the U+2581 escape, Viterbi over piece scores (unigram) or
 * score-ordered merges (BPE), byte fallback and the merging of unknown runs.
 *
 * Invalid UTF-8 is replaced byte by byte with U+FFFD (SentencePiece does the
 * same) and reported through *warnings. utf8proc decodes and validates.
 *
 * Model ids: when the model directory has a vocabulary file (Marian's
 * vocab.json, piece -> id), pieces map through it and unknown pieces become
 * its <unk>; otherwise the SentencePiece ids are the model ids.
 */
#ifndef FANYI_TOKENIZER_H
#define FANYI_TOKENIZER_H

#include "common.h"

typedef struct fanyi_tokenizer fy_tokenizer; /* fanyi.h names it fanyi_tokenizer */

/* A growable id array owned by the caller (free ids when done). */
typedef struct {
    int *ids;
    size_t n, cap;
} fy_ids;

/* A growable byte string owned by the caller. */
typedef struct {
    char *s;
    size_t n, cap;
} fy_text;

/* Loads dir/spm_file, and dir/vocab_file when vocab_file is not empty.
 * model_vocab_size (0: unchecked) is the embedding size ids must fit. */
int fy_tokenizer_load(fy_tokenizer **out, const char *dir, const char *spm_file, const char *vocab_file,
                      int model_vocab_size, fanyi_error *err);
/* Loads a SentencePiece model from a path (no vocabulary file). */
int fy_spm_load_file(fy_tokenizer **out, const char *path, fanyi_error *err);
/* Parses a SentencePiece model from memory (used by the fuzzer). */
int fy_spm_load_memory(fy_tokenizer **out, const uint8_t *data, size_t size, const char *name, fanyi_error *err);
void fy_tokenizer_free(fy_tokenizer *t);

enum { FY_TOK_INVALID_UTF8 = 1 };

/* Appends the model ids of text to out. *warnings gets FY_TOK_* bits.
 * With a vocabulary file the text follows MarianTokenizer's conventions: the
 * special tokens </s>, <unk> and <pad> written in the text become their ids
 * (the text between them is encoded piece by piece), and a leading language
 * code such as >>fra<< becomes its own id (<unk> if the vocabulary lacks it). */
int fy_tokenizer_encode(const fy_tokenizer *t, const char *text, size_t len, fy_ids *out, int *warnings,
                        fanyi_error *err);
/* Appends the pieces of text to out, separated by single spaces. */
int fy_tokenizer_encode_pieces(const fy_tokenizer *t, const char *text, size_t len, fy_text *out, int *warnings,
                               fanyi_error *err);
/* Appends the detokenized text of model ids to out. */
int fy_tokenizer_decode(const fy_tokenizer *t, const int *ids, size_t n, fy_text *out, fanyi_error *err);
/* Same, from pieces given as strings. */
int fy_tokenizer_decode_pieces(const fy_tokenizer *t, const char *const *pieces, const size_t *lens, size_t n,
                               fy_text *out, fanyi_error *err);

/* The id of a vocabulary entry, or -1 (also without a vocabulary file). */
int fy_tokenizer_model_id(const fy_tokenizer *t, const char *entry, size_t n);
/* The language codes (">>xx<<" entries) of the vocabulary, in id order: up
 * to cap of them into codes (owned by the tokenizer); returns how many there are. */
int fy_tokenizer_language_codes(const fy_tokenizer *t, const char **codes, int cap);

/* Number of model ids (vocabulary entries, or SentencePiece pieces). */
int fy_tokenizer_size(const fy_tokenizer *t);

int fy_ids_push(fy_ids *v, int id);
int fy_text_append(fy_text *t, const char *s, size_t n);

#endif
