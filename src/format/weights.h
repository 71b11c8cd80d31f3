/*
 * weights.h -- tensors in the safetensors layout, memory-mapped.
 *
 * fy_weights_open() maps the file and validates its header completely: a
 * sane header length, JSON that parses, a known dtype, a shape whose size
 * matches the byte range, byte ranges inside the file that do not overlap.
 * Model code then asks for tensors by name and shape with fy_weights_f32(),
 * which checks dtype and shape and returns f32 data: F32 tensors are used in
 * place when aligned, F16 and I8 (with its F32 "<name>.scale" per-row scales)
 * are converted into buffers the weights object owns. fy_weights_unused()
 * names a tensor no one asked for, so that stray tensors are reported.
 */
#ifndef FANYI_WEIGHTS_H
#define FANYI_WEIGHTS_H

#include "common.h"

enum fy_dtype { FY_F32, FY_F16, FY_I8 };

#define FY_MAX_RANK 4

typedef struct fy_tensor {
    char *name;
    enum fy_dtype dtype;
    int rank;
    int64_t shape[FY_MAX_RANK];
    size_t begin, end; /* byte range within the data section */
    int used;
    float *converted;  /* f32 copy owned by the weights (F16, I8, unaligned F32), or NULL */
} fy_tensor;

typedef struct fy_weights fy_weights;

int fy_weights_open(fy_weights **out, const char *path, fanyi_error *err);
/* Parses from memory that the caller keeps alive (used by the fuzzer and tests). */
int fy_weights_from_memory(fy_weights **out, const uint8_t *data, size_t size, const char *path, fanyi_error *err);
void fy_weights_close(fy_weights *w);

const fy_tensor *fy_weights_find(const fy_weights *w, const char *name);

/* Checks that tensor `name` exists with the given rank and shape and a dtype
 * fy_weights_f32 can convert, and marks it used, without converting it. */
int fy_weights_check(fy_weights *w, const char *name, int rank, const int64_t *shape, fanyi_error *err);

/* Returns f32 data of tensor `name`, which must have the given rank and shape.
 * Calls for different tensors may run in parallel. */
int fy_weights_f32(fy_weights *w, const char *name, int rank, const int64_t *shape, const float **data,
                   fanyi_error *err);

/* For an I8 matrix [rows, cols]: its raw int8 data and its per-row scales
 * (rows little-endian f32, unaligned). FANYI_ERR_MODEL if it is not I8 or
 * not of that shape. Marks both tensors used. */
int fy_weights_q8(fy_weights *w, const char *name, int64_t rows, int64_t cols, const int8_t **q,
                  const void **scales, fanyi_error *err);

/* Drops the f32 data of a tensor the caller no longer reads (it was packed):
 * frees a converted copy, or lets the kernel reclaim the mapped pages. */
void fy_weights_release(fy_weights *w, const char *name);

/* The first tensor never requested, or NULL. */
const char *fy_weights_unused(const fy_weights *w);
int fy_weights_count(const fy_weights *w);
const fy_tensor *fy_weights_nth(const fy_weights *w, int i);

#endif
