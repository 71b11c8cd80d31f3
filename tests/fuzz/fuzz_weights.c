/* libFuzzer target: safetensors header validation and tensor conversion. */
#include "weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fy_weights *w;
    fanyi_error err;
    if (fy_weights_from_memory(&w, data, size, "fuzz.safetensors", &err) != FANYI_OK) return 0;
    /* Ask for every tensor under its own shape, as the model binder would. */
    for (int i = 0; i < fy_weights_count(w); i++) {
        const fy_tensor *t = fy_weights_nth(w, i);
        const float *p;
        if (fy_weights_f32(w, t->name, t->rank, t->shape, &p, &err) == FANYI_OK && t->rank > 0 && t->shape[0] > 0) {
            volatile float sink = p[0];
            (void)sink;
        }
    }
    fy_weights_close(w);
    return 0;
}
