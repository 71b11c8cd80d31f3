/*
 * fanyi.h -- the public C API of the fanyi neural machine translator: the
 * only header a program using libfanyi includes.
 *
 * Contract:
 *   - fanyi_load() maps a model directory (config.json, weights, tokenizer files),
 *     validates all of it and returns a model, or NULL with *err filled in.
 *     Nothing is used before everything has been checked.
 *   - fanyi_translate_ids()/fanyi_translate_text() translate a batch. They
 *     allocate the results, which the caller releases with fanyi_results_free().
 *     A sentence's translation does not depend on the rest of its batch.
 *   - Every failure returns a FANYI_ERR_* code and a message naming the file,
 *     key or tensor and what is wrong. The library never exits or prints.
 *   - A model may be shared by threads for reading; a call writes only to its
 *     own results. There is no global mutable state.
 *   - An execution context (fanyi_context_*) keeps worker threads and working
 *     memory across calls; the calls without one make their own each time.
 *   - The tokenizers (fanyi_tokenize*, fanyi_detokenize*) are SentencePiece's,
 *     id for id, and a model's own map pieces through its vocabulary.
 *   - See fanyi(3) for every function.
 */
#ifndef FANYI_H
#define FANYI_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FANYI_VERSION "0.1.0"

/* The library exports these names only (libfanyi.so is built with hidden visibility). */
#if defined(__GNUC__)
#define FANYI_API __attribute__((visibility("default")))
#else
#define FANYI_API
#endif

/* The one place option limits are stated; the CLI's help and checks use them. */
#define FANYI_MAX_THREADS 256
#define FANYI_MAX_BEAM 1024
#define FANYI_MAX_NGRAM 1024
#define FANYI_STR_(x) #x
#define FANYI_STR(x) FANYI_STR_(x)

enum fanyi_status {
    FANYI_OK = 0,
    FANYI_ERR_USAGE = 1,  /* invalid options or arguments */
    FANYI_ERR_MODEL = 2,  /* model directory, config, weights or tokenizer */
    FANYI_ERR_INPUT = 3,  /* input that cannot be translated */
    FANYI_ERR_MEMORY = 4, /* out of memory */
    FANYI_ERR_IO = 5      /* reading or writing a file */
};

typedef struct fanyi_error {
    int code;
    char message[1024];
} fanyi_error;

typedef struct fanyi_model fanyi_model;

/* Decoding options. fanyi_options_default() fills in "use the model's value"
 * (0 or negative), so callers override only what they set. */
typedef struct fanyi_options {
    int beam_size;          /* 1 = greedy; 0 = model default */
    int nbest;              /* hypotheses returned per sentence (<= beam_size); 0 = 1 */
    int max_length;         /* absolute limit on target tokens; 0 = model default */
    float max_length_ratio; /* limit = ceil(ratio * source tokens); < 0 = model default, 0 = none */
    float length_penalty;   /* score = logprob / length^penalty; < 0 = model default */
    int threads;            /* worker threads, at most FANYI_MAX_THREADS; 0 = one per CPU, up to 8
                               (output never depends on it) */
    int split_sentences;    /* text: translate each sentence of a line separately, then rejoin */
    int no_repeat_ngram;     /* n: no n-gram occurs twice in a translation; 0 = model default, < 0 = off */
    float repetition_penalty; /* > 1 discourages tokens already produced (log p * penalty);
                                 0 = model default, 1 = off */
    const char *target_lang; /* text: the target language of a multi-target model, "fra" or ">>fra<<";
                                its code goes before every sentence. NULL: none */
} fanyi_options;

typedef struct fanyi_hypothesis {
    int *ids;      /* target ids, without EOS */
    int n_ids;
    float score;   /* length-normalized log-probability */
    float logprob; /* raw sum of token log-probabilities */
    char *text;    /* detokenized text (NULL for fanyi_translate_ids) */
} fanyi_hypothesis;

typedef struct fanyi_result {
    fanyi_hypothesis *hyps; /* best first */
    int n_hyps;
    int warnings;           /* bit set of FANYI_WARN_* */
} fanyi_result;

enum fanyi_warning {
    FANYI_WARN_INVALID_UTF8 = 1, /* invalid bytes were replaced by U+FFFD */
    FANYI_WARN_TRUNCATED = 2,    /* ids: the source was longer than the model allows and was cut */
    FANYI_WARN_SPLIT = 4         /* text: the line was too long for the model, so it was translated in
                                    pieces (at sentence boundaries where possible) and rejoined */
};

FANYI_API void fanyi_options_default(fanyi_options *opts);

/* Checks options against the model's defaults (n-best against the beam the
 * model would use, finite penalties, ranges) without translating anything,
 * so that a caller can refuse bad options before reading any input.
 * The translate calls make the same check. */
FANYI_API int fanyi_check_options(const fanyi_model *model, const fanyi_options *opts, fanyi_error *err);

FANYI_API fanyi_model *fanyi_load(const char *model_dir, fanyi_error *err);
FANYI_API void fanyi_free(fanyi_model *model);

/* Model facts the CLI needs: vocabulary sizes and whether text is supported. */
FANYI_API int fanyi_src_vocab_size(const fanyi_model *model);
FANYI_API int fanyi_tgt_vocab_size(const fanyi_model *model);
FANYI_API int fanyi_has_tokenizer(const fanyi_model *model);

/* The target-language codes (">>fra<<", ...) of a multi-target model, in id
 * order: up to cap of them into langs (strings owned by the model); returns
 * how many the model has (0 for a single-target model). */
FANYI_API int fanyi_target_langs(const fanyi_model *model, const char **langs, int cap);

/* Translates n sentences given as token ids (no EOS; it is appended as the
 * model requires). On success *results points to n results. */
FANYI_API int fanyi_translate_ids(const fanyi_model *model, const int *const *src, const int *src_len, int n,
                        const fanyi_options *opts, fanyi_result **results, fanyi_error *err);

/* Translates n lines of UTF-8 text (without newline). A line longer than the
 * model allows is cut at sentence boundaries (else at the token limit), its
 * pieces translated and rejoined with spaces: one result per line, with the
 * best hypothesis only, its score the sum of the pieces' scores. */
FANYI_API int fanyi_translate_text(const fanyi_model *model, const char *const *lines, const size_t *line_len,
                         int n, const fanyi_options *opts, fanyi_result **results, fanyi_error *err);

FANYI_API void fanyi_results_free(fanyi_result *results, int n);

/* ---- execution contexts ----------------------------------------------------
 * A context holds worker threads and the working memory of translations, so
 * that a caller translating again and again (a line at a time, say) starts
 * no threads and the model's work allocates nothing (a warm ids call
 * allocates only its results; a text call also its tokenization buffers):
 * the calls above make a context of their own each time. A context serves one call at a time; any
 * model may be used with it. With a context, opts->threads must be 0 or its
 * thread count. */
typedef struct fanyi_context fanyi_context;

/* threads: 1 to FANYI_MAX_THREADS, or 0 for one per CPU (up to 8). NULL on failure. */
FANYI_API fanyi_context *fanyi_context_new(int threads, fanyi_error *err);
FANYI_API void fanyi_context_free(fanyi_context *ctx);
FANYI_API int fanyi_context_threads(const fanyi_context *ctx);
FANYI_API int fanyi_context_translate_text(fanyi_context *ctx, const fanyi_model *model, const char *const *lines,
                                           const size_t *line_len, int n, const fanyi_options *opts,
                                           fanyi_result **results, fanyi_error *err);
FANYI_API int fanyi_context_translate_ids(fanyi_context *ctx, const fanyi_model *model, const int *const *src,
                                          const int *src_len, int n, const fanyi_options *opts,
                                          fanyi_result **results, fanyi_error *err);

/* ---- tokenizers ----------------------------------------------------------
 * SentencePiece, id for id and piece for piece as SentencePiece 0.1.97
 * encodes and decodes. Strings and arrays returned through pointers are
 * allocated by the call; release them with free(). */
typedef struct fanyi_tokenizer fanyi_tokenizer;

/* A SentencePiece model file (.model, .spm) on its own: ids are SentencePiece's. */
FANYI_API fanyi_tokenizer *fanyi_tokenizer_load(const char *path, fanyi_error *err);
FANYI_API void fanyi_tokenizer_free(fanyi_tokenizer *tok);

/* A model's own tokenizers, owned by the model (NULL without tokenizer
 * files): ids are the model's (through its vocabulary file, when it has one). */
FANYI_API const fanyi_tokenizer *fanyi_source_tokenizer(const fanyi_model *model);
FANYI_API const fanyi_tokenizer *fanyi_target_tokenizer(const fanyi_model *model);

/* Text (UTF-8; invalid bytes become U+FFFD and set FANYI_WARN_INVALID_UTF8
 * in *warnings) to ids, or to its pieces joined by single spaces. Strings
 * come back NUL-terminated, with their length in *out_len (if not NULL),
 * since text may hold NUL bytes. */
FANYI_API int fanyi_tokenize(const fanyi_tokenizer *tok, const char *text, size_t len, int **ids, int *n_ids,
                             int *warnings, fanyi_error *err);
FANYI_API int fanyi_tokenize_pieces(const fanyi_tokenizer *tok, const char *text, size_t len, char **pieces,
                                    size_t *out_len, int *warnings, fanyi_error *err);
/* Ids, or pieces, back to text. */
FANYI_API int fanyi_detokenize(const fanyi_tokenizer *tok, const int *ids, int n_ids, char **text, size_t *out_len,
                               fanyi_error *err);
FANYI_API int fanyi_detokenize_pieces(const fanyi_tokenizer *tok, const char *const *pieces, const size_t *lens, int n,
                                      char **text, size_t *out_len, fanyi_error *err);

#ifdef __cplusplus
}
#endif
#endif
