/* libFuzzer target: config.json parsing and validation. */
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fy_config cfg;
    fanyi_error err;
    if (fy_config_parse(&cfg, (const char *)data, size, "config.json", &err) == FANYI_OK) fy_config_free(&cfg);
    return 0;
}
