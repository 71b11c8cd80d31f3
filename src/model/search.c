#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

typedef struct {
    float total; /* cumulative log-prob */
    int row, token;
} candidate;

typedef struct {
    double score;
    float logprob;
    int order;  /* insertion order, breaks ties as Hugging Face's list does */
    int length; /* tokens kept (EOS excluded) */
    int *tokens;
} finished_hyp;

/* Everything the step loop touches, allocated once per batch. */
typedef struct {
    int n_sent, beam, max_rows, max_steps, vocab, eos, forced_eos, early_stopping;
    float *logits, *lse;         /* [max_rows][vocab], [max_rows]: log p = logits - lse */
    int *row_sent, *row_tok;     /* current rows */
    float *row_lp;
    int *next_sent, *next_tok, *next_parent;
    float *next_lp;
    int *gen_tok, *gen_parent;   /* [max_steps][max_rows] backpointers */
    int *steps, *n_finished, *n_inserted;
    finished_hyp *finished;      /* [n_sent][beam] */
    int *finished_tokens;        /* [n_sent][beam][max_steps] */
    candidate *cand;             /* [n_sent][2 * beam]: each sentence's best extensions this step */
    int *n_cand;                 /* [n_sent] */
    int *group_first, *group_end; /* rows of each sentence this step, in row order */
    unsigned char *forbidden;    /* [vocab] */
    int *history;                /* [max_rows][max_steps + 1]: each row's sequence, for the repetition guards */
    int decoder_start;
} search_state;

/* Target tokens a sentence with src_len source tokens (EOS included) may
 * have, EOS excluded. With a forced EOS the decoder also needs the position
 * after the last token. */
static int length_limit(const fy_config *cfg, const fy_search_opts *o, int src_len) {
    int positions = cfg->max_positions - (cfg->forced_eos ? 1 : 0);
    int limit = o->max_length < positions ? o->max_length : positions;
    if (o->max_length_ratio > 0) {
        double by_ratio = ceil((double)o->max_length_ratio * src_len);
        if (by_ratio < 1) by_ratio = 1;
        if (by_ratio < limit) limit = (int)by_ratio;
    }
    return limit < 1 ? 1 : limit;
}

/* Every buffer of the step loop, sized for the batch, from the arena. */
static int state_init(search_state *s, const fy_model *m, const int *len, int n, const fy_search_opts *o,
                      fy_arena *arena, fanyi_error *err) {
    const fy_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    s->n_sent = n;
    s->beam = o->beam_size;
    s->max_rows = n * o->beam_size;
    s->vocab = c->tgt_vocab_size;
    s->eos = c->eos_id;
    s->forced_eos = c->forced_eos;
    s->early_stopping = c->early_stopping;
    s->decoder_start = c->decoder_start_id;
    size_t R = (size_t)s->max_rows, V = (size_t)s->vocab, N = (size_t)n;
    s->steps = fy_arena_alloc(arena, N, sizeof(int), 0, err, "search limits");
    if (!s->steps) return FANYI_ERR_MEMORY;
    for (int i = 0; i < n; i++) {
        s->steps[i] = length_limit(c, o, len[i]) + (c->forced_eos ? 1 : 0);
        if (s->steps[i] > s->max_steps) s->max_steps = s->steps[i];
    }
    size_t S = (size_t)s->max_steps;
    int guards = o->no_repeat_ngram > 0 || o->repetition_penalty != 1.0f;
    struct { void *p; size_t n, size; } bufs[] = {
        {&s->lse, R, sizeof(float)},
        {&s->row_sent, R, sizeof(int)},       {&s->row_tok, R, sizeof(int)},       {&s->row_lp, R, sizeof(float)},
        {&s->next_sent, R, sizeof(int)},      {&s->next_tok, R, sizeof(int)},
        {&s->next_parent, R, sizeof(int)},    {&s->next_lp, R, sizeof(float)},
        {&s->gen_tok, R * S, sizeof(int)},    {&s->gen_parent, R * S, sizeof(int)},
        {&s->n_finished, N, sizeof(int)},     {&s->n_inserted, N, sizeof(int)},
        {&s->finished, R, sizeof(finished_hyp)}, {&s->finished_tokens, R * S, sizeof(int)},
        {&s->cand, 2 * R, sizeof(candidate)}, {&s->n_cand, N, sizeof(int)},
        {&s->group_first, N, sizeof(int)},    {&s->group_end, N, sizeof(int)},
        {&s->forbidden, V, 1},                {&s->history, guards ? R * (S + 1) : 0, sizeof(int)},
    };
    s->logits = fy_arena_alloc(arena, R * V, sizeof(float), 0, err, "logits"); /* each step writes its rows */
    if (!s->logits) return FANYI_ERR_MEMORY;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        void *p = bufs[i].n ? fy_arena_alloc(arena, bufs[i].n, bufs[i].size, 1, err, "the search") : NULL;
        if (bufs[i].n && !p) return FANYI_ERR_MEMORY;
        memcpy(bufs[i].p, &p, sizeof p);
    }
    s->forbidden[c->pad_id] = 1;
    for (int i = 0; i < c->n_forbidden; i++) s->forbidden[c->forbidden_ids[i]] = 1;
    for (int i = 0; i < n; i++) {
        s->row_sent[i] = i;
        s->row_tok[i] = c->decoder_start_id;
    }
    return FANYI_OK;
}

/* Inserts into the best-first list of at most k; equal scores keep index order,
 * since candidates arrive in increasing (row, token) order. */
static void offer(candidate *list, int *n, int k, float total, int row, int token) {
    if (*n == k && !(total > list[k - 1].total)) return;
    int i = *n < k ? (*n)++ : k - 1;
    while (i > 0 && total > list[i - 1].total) {
        list[i] = list[i - 1];
        i--;
    }
    list[i] = (candidate){total, row, token};
}

/* Copies the tokens of current row `row` (which has `steps` tokens) into out. */
static void backtrack(const search_state *s, int row, int steps, int *out) {
    for (int t = steps - 1; t >= 0; t--) {
        out[t] = s->gen_tok[(size_t)t * s->max_rows + row];
        row = s->gen_parent[(size_t)t * s->max_rows + row];
    }
}

/* The slot of the sentence's worst finished hypothesis (of a full list): the
 * lowest score, the earliest entered among equals. */
static int worst_finished(const search_state *s, int sent) {
    const finished_hyp *list = &s->finished[(size_t)sent * s->beam];
    int w = 0;
    for (int i = 1; i < s->beam; i++)
        if (list[i].score < list[w].score || (list[i].score == list[w].score && list[i].order < list[w].order)) w = i;
    return w;
}

/* A finished hypothesis of `steps + 1` generated tokens (the last one EOS
 * unless keep_token) enters the sentence's list of at most `beam` as in
 * Hugging Face's BeamHypotheses.add: while the list is short, always;
 * then only if it beats the worst, which it replaces (the earliest entered
 * among equal worst scores). */
static void consider(search_state *s, const fy_search_opts *o, int sent, int parent, int steps, int token,
                     int keep_token, float total) {
    double len = steps + 1;
    double score = o->length_penalty != 0 ? total / pow(len, o->length_penalty) : total;
    finished_hyp *list = &s->finished[(size_t)sent * s->beam];
    int slot = s->n_finished[sent];
    if (slot == s->beam) {
        slot = worst_finished(s, sent);
        if (!(score > list[slot].score)) return;
    } else
        s->n_finished[sent]++;
    finished_hyp *f = &list[slot];
    f->tokens = s->finished_tokens + ((size_t)sent * s->beam + slot) * s->max_steps;
    backtrack(s, parent, steps, f->tokens);
    f->length = steps;
    if (keep_token) f->tokens[f->length++] = token;
    f->logprob = total;
    f->order = s->n_inserted[sent]++;
    f->score = score;
}

/* Hugging Face's stopping rule (early_stopping false): a sentence is done
 * once it has `beam` finished hypotheses and the worst of them is at least
 * the best candidate's log-probability normalized at the current length. */
static int sentence_done(const search_state *s, const fy_search_opts *o, int sent, float best_total, int length) {
    if (s->n_finished[sent] < s->beam) return 0;
    if (s->early_stopping) return 1;
    double worst = s->finished[(size_t)sent * s->beam + worst_finished(s, sent)].score;
    double best = o->length_penalty != 0 ? best_total / pow((double)length, o->length_penalty) : best_total;
    return worst >= best;
}

/* Offers every allowed token of one row; candidates arrive in increasing token order. */
static void offer_row(const search_state *s, const float *logits, float lse, float row_lp, int row, int k,
                      candidate *cand, int *n_cand) {
    for (int v = 0; v < s->vocab; v++) {
        /* Once the list is full, skip to the next token that beats its k-th best. */
        if (*n_cand == k && (v = fy_first_above(logits, v, s->vocab, lse, row_lp, cand[k - 1].total)) == s->vocab)
            break;
        float lp = logits[v] - lse; /* the log-softmax, only where it is looked at */
        if (!s->forbidden[v] && lp != -INFINITY) offer(cand, n_cand, k, row_lp + lp, row, v);
    }
}

/* The best extensions of each sentence's rows; sentences are independent, so
 * groups g0..g1 can run on different threads. */
typedef struct {
    search_state *s;
    const fy_search_opts *o;
    int n_groups, per_task, t;
} offer_job;

/* The repetition guards on row r's logits, which hold log p + lse. As in
 * Hugging Face, the row's sequence is the decoder start token and the t
 * tokens generated so far: a token in it gets log p * penalty (log p /
 * penalty if positive), and a token that would complete an n-gram already in
 * it gets -inf. */
static void apply_guards(search_state *s, const fy_search_opts *o, int r, int t) {
    float *logits = s->logits + (size_t)r * s->vocab, lse = s->lse[r];
    int *seq = s->history + (size_t)r * (s->max_steps + 1), len = t + 1;
    seq[0] = s->decoder_start;
    backtrack(s, r, t, seq + 1);
    if (o->repetition_penalty != 1.0f)
        for (int i = 0; i < len; i++) {
            int v = seq[i], seen = 0;
            for (int k = 0; k < i && !seen; k++) seen = seq[k] == v;
            float lp = logits[v] - lse;
            if (!seen && lp != -INFINITY) logits[v] = lse + (lp < 0 ? lp * o->repetition_penalty : lp / o->repetition_penalty);
        }
    int n = o->no_repeat_ngram;
    if (n > 0 && len + 1 >= n)
        for (int i = 0; i + n <= len; i++) { /* seq[i .. i+n-1] bans its last token after its first n-1 */
            int k = 0;
            while (k < n - 1 && seq[i + k] == seq[len - (n - 1) + k]) k++;
            if (k == n - 1) logits[seq[i + n - 1]] = -INFINITY;
        }
}

/* Each sentence keeps its 2 * beam best extensions, as Hugging Face's top-k
 * does, so that finished ones can be set aside and `beam` stay alive. At
 * the length limit of a model with a forced EOS, EOS is the only extension
 * and costs nothing. */
static void offer_groups(void *p, int task) {
    const offer_job *j = p;
    search_state *s = j->s;
    int g1 = (task + 1) * j->per_task < j->n_groups ? (task + 1) * j->per_task : j->n_groups;
    for (int g = task * j->per_task; g < g1; g++) {
        int sent = s->row_sent[s->group_first[g]], k = 2 * s->beam;
        candidate *cand = s->cand + (size_t)sent * k;
        int forced = s->forced_eos && j->t + 1 == s->steps[sent];
        s->n_cand[sent] = 0;
        for (int r = s->group_first[g]; r < s->group_end[g]; r++) {
            if (forced) {
                offer(cand, &s->n_cand[sent], k, s->row_lp[r], r, s->eos);
                continue;
            }
            if (s->history) apply_guards(s, j->o, r, j->t);
            offer_row(s, s->logits + (size_t)r * s->vocab, s->lse[r], s->row_lp[r], r, k, cand, &s->n_cand[sent]);
        }
    }
}

/* Applies the extensions chosen for sentence `sent` at step t as Hugging
 * Face's BeamSearchScorer does: in rank order, an EOS among the first `beam`
 * finishes a hypothesis, any other token continues one, until `beam` continue.
 * Then the stopping rule; at the length limit the live ones are finished as
 * they are. Returns the rows written to next_*. */
static int select_sentence(search_state *s, const fy_search_opts *o, int sent, int t, int n_next) {
    const candidate *cand = &s->cand[(size_t)sent * 2 * s->beam];
    int first = n_next, live = 0;
    for (int i = 0; i < s->n_cand[sent] && live < s->beam; i++) {
        const candidate *cd = &cand[i];
        if (cd->token == s->eos) {
            if (i < s->beam) consider(s, o, sent, cd->row, t, cd->token, 0, cd->total);
            continue;
        }
        s->next_sent[n_next] = sent;
        s->next_tok[n_next] = cd->token;
        s->next_parent[n_next] = cd->row;
        s->next_lp[n_next] = cd->total;
        s->gen_tok[(size_t)t * s->max_rows + n_next] = cd->token;
        s->gen_parent[(size_t)t * s->max_rows + n_next] = cd->row;
        n_next++, live++;
    }
    if (s->n_cand[sent] > 0 && sentence_done(s, o, sent, cand[0].total, t + 1)) return first; /* rows dropped */
    if (t + 1 < s->steps[sent]) return n_next;
    for (int r = first; r < n_next; r++) consider(s, o, sent, s->next_parent[r], t, s->next_tok[r], 1, s->next_lp[r]);
    return first;
}

/* Best first; among equal scores the later entered, as Hugging Face's stable
 * ascending sort popped from the end gives them. */
static int by_score(const void *a, const void *b) {
    const finished_hyp *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return y->order - x->order;
}

static int collect(search_state *s, const fy_search_opts *o, fy_hyp *hyps, int *n_hyps, fanyi_error *err) {
    for (int i = 0; i < s->n_sent; i++) {
        finished_hyp *f = &s->finished[(size_t)i * s->beam];
        qsort(f, (size_t)s->n_finished[i], sizeof *f, by_score);
        int n = s->n_finished[i] < o->nbest ? s->n_finished[i] : o->nbest;
        for (int j = 0; j < n; j++) {
            fy_hyp *h = &hyps[(size_t)i * o->nbest + j];
            h->ids = fy_calloc((size_t)f[j].length, sizeof(int), err, "translation");
            if (!h->ids) return FANYI_ERR_MEMORY;
            memcpy(h->ids, f[j].tokens, sizeof(int) * (size_t)f[j].length);
            h->n_ids = f[j].length;
            h->score = (float)f[j].score;
            h->logprob = f[j].logprob;
            n_hyps[i] = j + 1;
        }
    }
    return FANYI_OK;
}

int fy_search(const fy_model *m, const int *ids, const int *offset, const int *len, int n, const fy_search_opts *o,
              fy_hyp *hyps, int *n_hyps, fy_pool *pool, fy_arena *arena, fanyi_error *err) {
    for (int i = 0; i < n; i++) n_hyps[i] = 0;
    if (n == 0) return FANYI_OK;
    search_state s;
    fy_decoder dec;
    float *memory = NULL;
    memset(&dec, 0, sizeof dec);
    int rc = state_init(&s, m, len, n, o, arena, err);
    if (!rc) rc = fy_encode(m, ids, offset, len, n, &memory, pool, arena, err);
    if (!rc) rc = fy_decoder_start(&dec, m, memory, offset, len, n, s.max_rows, s.max_steps, pool, arena, err);
    int n_rows = n;
    for (int t = 0; !rc && n_rows > 0; t++) {
        fy_decoder_step(&dec, s.row_tok, s.row_sent, n_rows, s.logits, s.lse);
        int n_groups = 0, n_next = 0;
        for (int first = 0; first < n_rows; n_groups++) {
            int end = first;
            while (end < n_rows && s.row_sent[end] == s.row_sent[first]) end++;
            s.group_first[n_groups] = first;
            s.group_end[n_groups] = end;
            first = end;
        }
        int tasks = fy_pool_threads(pool) < n_groups ? fy_pool_threads(pool) : n_groups;
        offer_job oj = {&s, o, n_groups, (n_groups + tasks - 1) / tasks, t};
        fy_pool_run(pool, offer_groups, &oj, tasks);
        for (int g = 0; g < n_groups; g++) n_next = select_sentence(&s, o, s.row_sent[s.group_first[g]], t, n_next);
        fy_decoder_reorder(&dec, s.next_parent, n_next);
        memcpy(s.row_sent, s.next_sent, sizeof(int) * (size_t)n_next);
        memcpy(s.row_tok, s.next_tok, sizeof(int) * (size_t)n_next);
        memcpy(s.row_lp, s.next_lp, sizeof(float) * (size_t)n_next);
        n_rows = n_next;
    }
    if (!rc) rc = collect(&s, o, hyps, n_hyps, err);
    return rc;
}
