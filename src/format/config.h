/*
 * config.h -- the model's config.json (see man/fanyi-model.5).
 *
 * fy_config_load() parses and checks every key: unknown values, wrong types
 * and inconsistent sizes are reported with the key's name. The result is a
 * plain struct the rest of the engine reads; fy_config_free() releases the
 * strings it owns.
 */
#ifndef FANYI_CONFIG_H
#define FANYI_CONFIG_H

#include "common.h"

enum fy_activation { FY_ACT_RELU, FY_ACT_GELU, FY_ACT_SWISH };
enum fy_positions { FY_POS_SIN_INTERLEAVED, FY_POS_SIN_HALVES, FY_POS_LEARNED };

#define FY_MAX_FORBIDDEN 64

typedef struct fy_config {
    int src_vocab_size, tgt_vocab_size;
    int d_model, n_heads, d_ff;
    int encoder_layers, decoder_layers;
    int max_positions;
    enum fy_activation activation;
    int pre_norm; /* 0: post-norm (the paper), 1: pre-norm */
    int encoder_final_norm, decoder_final_norm;
    int scale_embeddings;
    enum fy_positions positions;
    int shared_embeddings, tied_output, logits_bias;
    float layernorm_eps;
    int pad_id, eos_id, unk_id, decoder_start_id;
    int forbidden_ids[FY_MAX_FORBIDDEN];
    int n_forbidden;
    int source_eos;
    /* Relative to the model dir; "" if none. target_vocab, when set, maps target pieces (else vocab does). */
    char *source_spm, *target_spm, *vocab, *target_vocab, *weights;
    int beam_size, max_length; /* max_length: target tokens, EOS excluded */
    float max_length_ratio, length_penalty;
    int forced_eos;     /* EOS is the only choice after max_length tokens (Hugging Face's forced_eos_token_id) */
    int early_stopping; /* beam search stops a sentence once it has beam_size finished hypotheses */
    int no_repeat_ngram;      /* default repetition guards (0 and 1: off) */
    float repetition_penalty;
} fy_config;

/* Parses JSON text; `path` is used in messages only. */
int fy_config_parse(fy_config *cfg, const char *json, size_t len, const char *path, fanyi_error *err);
int fy_config_load(fy_config *cfg, const char *path, fanyi_error *err);
void fy_config_free(fy_config *cfg);

#endif
