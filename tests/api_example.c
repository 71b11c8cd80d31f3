/*
 * api_example MODEL_DIR -- embedding fanyi in another program through the
 * public API alone (fanyi.h): load a model, translate a batch of text lines
 * with beam 4 and a 2-best list, print "score<TAB>text" for each
 * hypothesis, report errors, free everything. tests/test_api.py checks it
 * against the command line.
 */
#include <stdio.h>
#include <string.h>

#include "fanyi.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: api_example MODEL_DIR\n");
        return 1;
    }
    fanyi_error err;
    fanyi_model *model = fanyi_load(argv[1], &err);
    if (!model) {
        fprintf(stderr, "load failed (%d): %s\n", err.code, err.message);
        return 2;
    }
    const char *lines[] = {"a man rides a horse", "", "two dogs play in the snow"};
    size_t lens[3];
    for (int i = 0; i < 3; i++) lens[i] = strlen(lines[i]);
    fanyi_options opts;
    fanyi_options_default(&opts);
    opts.beam_size = 4;
    opts.nbest = 2;
    fanyi_result *results;
    if (fanyi_translate_text(model, lines, lens, 3, &opts, &results, &err) != FANYI_OK) {
        fprintf(stderr, "translate failed (%d): %s\n", err.code, err.message);
        fanyi_free(model);
        return 3;
    }
    for (int i = 0; i < 3; i++) {
        printf("sentence %d: %d hypotheses\n", i, results[i].n_hyps);
        for (int j = 0; j < results[i].n_hyps; j++)
            printf("%.6f\t%s\n", results[i].hyps[j].score, results[i].hyps[j].text);
    }
    fanyi_results_free(results, 3);
    /* An invalid option is an error, not a crash. */
    opts.nbest = 9;
    int rc = fanyi_translate_text(model, lines, lens, 1, &opts, &results, &err);
    printf("nbest > beam: code %d, message: %s\n", rc, err.message);
    /* So is a negative length. */
    opts.nbest = 1;
    const int *no_ids[1] = {NULL};
    int bad_len[1] = {-3};
    rc = fanyi_translate_ids(model, no_ids, bad_len, 1, &opts, &results, &err);
    printf("negative length: code %d, message: %s\n", rc, err.message);
    fanyi_free(model);
    return 0;
}
