/*
 * api.c -- the model handle's life (fanyi_load, fanyi_free), options and
 * their checks, model facts and results: the public API except translating.
 */
#include "engine.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fanyi_options_default(fanyi_options *o) {
    memset(o, 0, sizeof *o);
    o->max_length_ratio = -1.0f;
    o->length_penalty = -1.0f;
}

int fy_resolve_options(const fy_config *cfg, const fanyi_options *in, fy_search_opts *out, fanyi_error *err) {
    fanyi_options def;
    if (!in) {
        fanyi_options_default(&def);
        in = &def;
    }
    out->beam_size = in->beam_size > 0 ? in->beam_size : cfg->beam_size;
    out->nbest = in->nbest > 0 ? in->nbest : 1;
    out->max_length = in->max_length > 0 ? in->max_length : cfg->max_length;
    out->max_length_ratio = in->max_length_ratio >= 0 ? in->max_length_ratio : cfg->max_length_ratio;
    out->length_penalty = in->length_penalty >= 0 ? in->length_penalty : cfg->length_penalty;
    if (in->beam_size < 0 || in->beam_size > FANYI_MAX_BEAM)
        return fy_fail(err, FANYI_ERR_USAGE, "beam size %d is out of range [1, %d]", in->beam_size, FANYI_MAX_BEAM);
    if (in->nbest < 0) return fy_fail(err, FANYI_ERR_USAGE, "n-best %d is negative", in->nbest);
    if (out->nbest > out->beam_size)
        return fy_fail(err, FANYI_ERR_USAGE, "n-best %d is larger than the beam size %d", out->nbest, out->beam_size);
    if (in->max_length < 0) return fy_fail(err, FANYI_ERR_USAGE, "max length %d is negative", in->max_length);
    if (!isfinite(in->length_penalty))
        return fy_fail(err, FANYI_ERR_USAGE, "length penalty %g is not a finite number", in->length_penalty);
    if (!isfinite(in->max_length_ratio))
        return fy_fail(err, FANYI_ERR_USAGE, "max length ratio %g is not a finite number", in->max_length_ratio);
    out->no_repeat_ngram = in->no_repeat_ngram > 0 ? in->no_repeat_ngram : in->no_repeat_ngram < 0 ? 0 : cfg->no_repeat_ngram;
    out->repetition_penalty = in->repetition_penalty > 0 ? in->repetition_penalty : cfg->repetition_penalty;
    if (in->no_repeat_ngram > FANYI_MAX_NGRAM)
        return fy_fail(err, FANYI_ERR_USAGE, "no-repeat n-gram size %d is out of range [1, %d]", in->no_repeat_ngram,
                       FANYI_MAX_NGRAM);
    if (!isfinite(in->repetition_penalty) || in->repetition_penalty < 0 || in->repetition_penalty > 100)
        return fy_fail(err, FANYI_ERR_USAGE, "repetition penalty %g is out of range (0, 100]", in->repetition_penalty);
    if (in->threads < 0 || in->threads > FANYI_MAX_THREADS)
        return fy_fail(err, FANYI_ERR_USAGE, "thread count %d is out of range [1, %d]", in->threads,
                       FANYI_MAX_THREADS);
    out->threads = in->threads > 0 ? in->threads : fy_default_threads();
    return FANYI_OK;
}

/* The tokenizers load on their own thread while the weights are checked and packed. */
typedef struct {
    const char *dir;
    const fy_config *cfg; /* parsed once, read by both threads */
    fy_tokenizer *source, *target;
    int rc;
    fanyi_error err;
} tokenizer_load;

static void *load_tokenizers(void *p) {
    tokenizer_load *t = p;
    const fy_config *c = t->cfg;
    const char *target_vocab = c->target_vocab[0] ? c->target_vocab : c->vocab;
    if (c->source_spm[0]) t->rc = fy_tokenizer_load(&t->source, t->dir, c->source_spm, c->vocab, c->src_vocab_size, &t->err);
    if (!t->rc && c->target_spm[0]) {
        /* One tokenizer serves both sides when they use the same files (a joint vocabulary). */
        if (t->source && !strcmp(c->source_spm, c->target_spm) && !strcmp(c->vocab, target_vocab) &&
            c->src_vocab_size == c->tgt_vocab_size)
            t->target = t->source;
        else
            t->rc = fy_tokenizer_load(&t->target, t->dir, c->target_spm, target_vocab, c->tgt_vocab_size, &t->err);
    }
    return NULL;
}

fanyi_model *fanyi_load(const char *dir, fanyi_error *err) {
    fanyi_model *fm = fy_calloc(1, sizeof *fm, err, "model");
    if (!fm) return NULL;
    fy_config cfg;
    memset(&cfg, 0, sizeof cfg);
    tokenizer_load tl = {dir, &cfg, NULL, NULL, FANYI_OK, {0}};
    char *config_path = fy_path_join(dir, "config.json");
    int rc = config_path ? fy_config_load(&cfg, config_path, err) : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    free(config_path);
    pthread_t thread;
    int threaded = !rc && pthread_create(&thread, NULL, load_tokenizers, &tl) == 0;
    if (!rc && !threaded) load_tokenizers(&tl);
    int model_rc = rc ? rc : fy_model_load(&fm->model, dir, &cfg, err);
    if (threaded) pthread_join(thread, NULL);
    if (!rc && model_rc) fy_config_free(&cfg); /* the model did not take it over */
    rc = model_rc;
    fm->source = tl.source;
    fm->target = tl.target;
    if (!rc && tl.rc) {
        *err = tl.err;
        rc = tl.rc;
    }
    if (!rc && (!fm->source) != (!fm->target))
        rc = fy_fail(err, FANYI_ERR_MODEL, "%s/config.json: source_spm and target_spm must be given together", dir);
    if (rc) {
        fanyi_free(fm);
        return NULL;
    }
    return fm;
}

void fanyi_free(fanyi_model *fm) {
    if (!fm) return;
    if (fm->target != fm->source) fy_tokenizer_free(fm->target);
    fy_tokenizer_free(fm->source);
    if (fm->model.weights) fy_model_free(&fm->model);
    free(fm);
}

int fanyi_src_vocab_size(const fanyi_model *fm) { return fm->model.cfg.src_vocab_size; }
int fanyi_tgt_vocab_size(const fanyi_model *fm) { return fm->model.cfg.tgt_vocab_size; }
int fanyi_has_tokenizer(const fanyi_model *fm) { return fm->source != NULL; }

int fanyi_target_langs(const fanyi_model *fm, const char **langs, int cap) {
    return fm->source ? fy_tokenizer_language_codes(fm->source, langs, cap) : 0;
}

/* The source id of opts->target_lang ("fra" or ">>fra<<"), or -1 when none is asked for. */
int fy_target_lang_id(const fanyi_model *fm, const fanyi_options *opts, int *id, fanyi_error *err) {
    *id = -1;
    if (!opts || !opts->target_lang) return FANYI_OK;
    const char *lang = opts->target_lang;
    size_t n = strlen(lang);
    int bare = !(n >= 5 && !strncmp(lang, ">>", 2) && !strcmp(lang + n - 2, "<<"));
    char *code = malloc(n + 5);
    if (!code) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    snprintf(code, n + 5, bare ? ">>%s<<" : "%s", lang);
    /* The vocabulary is scanned for its codes only to explain a failed lookup. */
    *id = fm->source && n > 0 ? fy_tokenizer_model_id(fm->source, code, strlen(code)) : -1;
    const char *codes[8];
    int n_codes = *id < 0 ? fanyi_target_langs(fm, codes, 8) : 0, rc = FANYI_OK;
    if (*id < 0 && !n_codes)
        rc = fy_fail(err, FANYI_ERR_USAGE, "target language '%s': this model has a single target language", lang);
    else if (*id < 0)
        rc = fy_fail(err, FANYI_ERR_USAGE, "unknown target language '%s' (the model has %d, such as %s%s%s%s%s; "
                     "see --list-models)", lang, n_codes, codes[0], n_codes > 1 ? ", " : "", n_codes > 1 ? codes[1] : "",
                     n_codes > 2 ? ", " : "", n_codes > 2 ? codes[2] : "");
    free(code);
    return rc;
}

void fanyi_results_free(fanyi_result *results, int n) {
    if (!results) return;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < results[i].n_hyps; j++) {
            free(results[i].hyps[j].ids);
            free(results[i].hyps[j].text);
        }
        free(results[i].hyps);
    }
    free(results);
}

int fanyi_check_options(const fanyi_model *fm, const fanyi_options *opts, fanyi_error *err) {
    fy_search_opts resolved;
    int lang_id;
    int rc = fy_resolve_options(&fm->model.cfg, opts, &resolved, err);
    return rc ? rc : fy_target_lang_id(fm, opts, &lang_id, err);
}
