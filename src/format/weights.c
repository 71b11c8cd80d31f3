#include "weights.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest header we accept: real headers are a few hundred KB at most. */
#define FY_MAX_HEADER (100u << 20)

struct fy_weights {
    char *path;
    const uint8_t *map; /* whole file */
    size_t size;
    int mapped;         /* 1 if we own the mapping */
    const uint8_t *data; /* start of the data section */
    size_t data_size;
    fy_tensor *tensors;
    int n_tensors;
};

static size_t dtype_size(enum fy_dtype t) { return t == FY_F32 ? 4 : t == FY_F16 ? 2 : 1; }

static int parse_dtype(const char *s, enum fy_dtype *out) {
    if (!strcmp(s, "F32")) *out = FY_F32;
    else if (!strcmp(s, "F16")) *out = FY_F16;
    else if (!strcmp(s, "I8")) *out = FY_I8;
    else return 0;
    return 1;
}

static int parse_tensor(fy_weights *w, const cJSON *item, fy_tensor *t, fanyi_error *err) {
    const char *name = item->string;
    if (!cJSON_IsObject(item)) return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s': entry is not an object", w->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt)) return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s': missing 'dtype'", w->path, name);
    if (!parse_dtype(dt->valuestring, &t->dtype))
        return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s': unsupported dtype '%s' (F32, F16 or I8)", w->path, name,
                       dt->valuestring);
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > FY_MAX_RANK)
        return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s': 'shape' must be an array of at most %d sizes", w->path,
                       name, FY_MAX_RANK);
    size_t numel = 1;
    t->rank = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 4e12 || d->valuedouble != floor(d->valuedouble))
            return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s': invalid dimension in 'shape'", w->path, name);
        t->shape[t->rank++] = (int64_t)d->valuedouble;
        if (!fy_mul_size(numel, (size_t)d->valuedouble, &numel))
            return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s': shape overflows", w->path, name);
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !cJSON_IsNumber(offs->child) ||
        !cJSON_IsNumber(offs->child->next))
        return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s': 'data_offsets' must be [begin, end]", w->path, name);
    double b = offs->child->valuedouble, e = offs->child->next->valuedouble;
    if (b < 0 || e < b || e > (double)w->data_size || b != floor(b) || e != floor(e))
        return fy_fail(err, FANYI_ERR_MODEL,
                       "%s: tensor '%s': data_offsets [%.0f, %.0f] lie outside the %zu bytes of tensor data", w->path,
                       name, b, e, w->data_size);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    size_t bytes;
    if (!fy_mul_size(numel, dtype_size(t->dtype), &bytes) || bytes != t->end - t->begin)
        return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s': %zu bytes of data but its shape and dtype need %zu",
                       w->path, name, t->end - t->begin, bytes);
    t->name = strdup(name);
    if (!t->name) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    return FANYI_OK;
}

static int by_begin(const void *a, const void *b) {
    const fy_tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int check_overlaps(fy_weights *w, fanyi_error *err) {
    fy_tensor *sorted = malloc(sizeof *sorted * (size_t)(w->n_tensors ? w->n_tensors : 1));
    if (!sorted) return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    memcpy(sorted, w->tensors, sizeof *sorted * (size_t)w->n_tensors);
    qsort(sorted, (size_t)w->n_tensors, sizeof *sorted, by_begin);
    int rc = FANYI_OK;
    for (int i = 1; i < w->n_tensors && !rc; i++)
        if (sorted[i].begin < sorted[i - 1].end)
            rc = fy_fail(err, FANYI_ERR_MODEL, "%s: tensors '%s' and '%s' overlap in the file", w->path,
                         sorted[i - 1].name, sorted[i].name);
    free(sorted);
    return rc;
}

static int parse_header(fy_weights *w, fanyi_error *err) {
    if (w->size < 8) return fy_fail(err, FANYI_ERR_MODEL, "%s: file is %zu bytes, too short for a safetensors header", w->path, w->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | w->map[i];
    if (n < 2 || n > FY_MAX_HEADER || n > w->size - 8)
        return fy_fail(err, FANYI_ERR_MODEL, "%s: header length %llu is impossible for a file of %zu bytes", w->path,
                       (unsigned long long)n, w->size);
    w->data = w->map + 8 + n;
    w->data_size = w->size - 8 - (size_t)n;
    cJSON *root = cJSON_ParseWithLength((const char *)w->map + 8, (size_t)n);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fy_fail(err, FANYI_ERR_MODEL, "%s: header is not a JSON object (truncated or not safetensors?)", w->path);
    }
    int count = cJSON_GetArraySize(root);
    w->tensors = calloc((size_t)(count ? count : 1), sizeof *w->tensors);
    int rc = w->tensors ? FANYI_OK : fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (rc) break;
        if (!strcmp(item->string, "__metadata__")) continue;
        for (int i = 0; i < w->n_tensors && !rc; i++)
            if (!strcmp(w->tensors[i].name, item->string))
                rc = fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s' appears twice", w->path, item->string);
        if (!rc) rc = parse_tensor(w, item, &w->tensors[w->n_tensors], err);
        if (!rc) w->n_tensors++;
    }
    cJSON_Delete(root);
    if (!rc) rc = check_overlaps(w, err);
    return rc;
}

static int weights_init(fy_weights **out, const uint8_t *data, size_t size, int mapped, const char *path,
                        fanyi_error *err) {
    fy_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        if (mapped) munmap((void *)data, size);
        return fy_fail(err, FANYI_ERR_MEMORY, "out of memory");
    }
    w->map = data;
    w->size = size;
    w->mapped = mapped;
    int rc = parse_header(w, err);
    if (rc) {
        fy_weights_close(w);
        return rc;
    }
    *out = w;
    return FANYI_OK;
}

int fy_weights_from_memory(fy_weights **out, const uint8_t *data, size_t size, const char *path, fanyi_error *err) {
    return weights_init(out, data, size, 0, path, err);
}

int fy_weights_open(fy_weights **out, const char *path, fanyi_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fy_fail(err, FANYI_ERR_MODEL, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fy_fail(err, FANYI_ERR_MODEL, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return fy_fail(err, FANYI_ERR_MODEL, "%s: file is %zu bytes, too short for a safetensors header", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return fy_fail(err, FANYI_ERR_MODEL, "%s: cannot map: %s", path, strerror(errno));
    return weights_init(out, map, size, 1, path, err);
}

void fy_weights_close(fy_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].converted);
    }
    free(w->tensors);
    if (w->mapped) munmap((void *)w->map, w->size);
    free(w->path);
    free(w);
}

const fy_tensor *fy_weights_find(const fy_weights *w, const char *name) {
    for (int i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name)) return &w->tensors[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalize */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | man << 13;
    else bits = sign | (exp - 15 + 127) << 23 | man << 13;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* F16C and AVX from CPUID leaf 1 (ECX bits 29 and 28); clang's __builtin_cpu_supports lacks "f16c". */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) && (c & (1u << 28));
}
/* F16C converts 8 halves per instruction, exactly as the scalar code does. */
__attribute__((target("f16c,avx"))) static size_t halves_f16c(const uint8_t *src, size_t n, float *dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
    return i;
}
#endif

static void halves_to_floats(const uint8_t *src, size_t n, float *dst) {
    size_t i = 0;
#if defined(__x86_64__)
    if (cpu_has_f16c()) i = halves_f16c(src, n, dst);
#endif
    for (; i < n; i++) dst[i] = half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
}

static int shape_string(const int64_t *shape, int rank, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return 0;
}

static int check_shape(fy_weights *w, const fy_tensor *t, int rank, const int64_t *shape, fanyi_error *err) {
    int same = t->rank == rank;
    for (int i = 0; same && i < rank; i++) same = t->shape[i] == shape[i];
    if (same) return FANYI_OK;
    char want[128], got[128];
    shape_string(shape, rank, want, sizeof want);
    shape_string(t->shape, t->rank, got, sizeof got);
    return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s' has shape %s, the config implies %s", w->path, t->name, got, want);
}

/* The F32 per-row scales of I8 tensor t, checked. */
static int find_scales(fy_weights *w, fy_tensor *t, fy_tensor **out, fanyi_error *err) {
    /* Tensor names have no length limit, so neither has the scales' name. */
    size_t len = strlen(t->name);
    char *scale_name = malloc(len + sizeof ".scale");
    if (!scale_name) return fy_fail(err, FANYI_ERR_MEMORY, "%s: out of memory", w->path);
    memcpy(scale_name, t->name, len);
    memcpy(scale_name + len, ".scale", sizeof ".scale");
    fy_tensor *s = (fy_tensor *)fy_weights_find(w, scale_name);
    free(scale_name);
    if (!s) return fy_fail(err, FANYI_ERR_MODEL, "%s: I8 tensor '%s' needs its per-row scales '%s.scale'", w->path, t->name, t->name);
    if (t->rank != 2 || s->dtype != FY_F32 || s->rank != 1 || s->shape[0] != t->shape[0])
        return fy_fail(err, FANYI_ERR_MODEL, "%s: '%s.scale' must be F32 of shape [%lld] (one scale per row of '%s')", w->path,
                       t->name, (long long)(t->rank ? t->shape[0] : 0), t->name);
    const uint8_t *sb = w->data + s->begin;
    for (int64_t r = 0; r < s->shape[0]; r++) {
        float scale;
        memcpy(&scale, sb + 4 * r, 4);
        if (!isfinite(scale))
            return fy_fail(err, FANYI_ERR_MODEL, "%s: '%s.scale' row %lld: scale is not finite", w->path, t->name, (long long)r);
    }
    s->used = 1;
    *out = s;
    return FANYI_OK;
}

int fy_weights_q8(fy_weights *w, const char *name, int64_t rows, int64_t cols, const int8_t **q,
                  const void **scales, fanyi_error *err) {
    fy_tensor *t = (fy_tensor *)fy_weights_find(w, name);
    if (!t) return fy_fail(err, FANYI_ERR_MODEL, "%s: missing tensor '%s'", w->path, name);
    int64_t shape[2] = {rows, cols};
    int rc = check_shape(w, t, 2, shape, err);
    if (rc) return rc;
    if (t->dtype != FY_I8) return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s' is not I8", w->path, name);
    fy_tensor *s;
    if ((rc = find_scales(w, t, &s, err))) return rc;
    t->used = 1;
    *q = (const int8_t *)(w->data + t->begin);
    *scales = w->data + s->begin;
    return FANYI_OK;
}

static int dequantize(fy_weights *w, fy_tensor *t, float *out, fanyi_error *err) {
    fy_tensor *s;
    int rc = find_scales(w, t, &s, err);
    if (rc) return rc;
    const int8_t *q = (const int8_t *)(w->data + t->begin);
    const uint8_t *sb = w->data + s->begin;
    size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
    for (size_t r = 0; r < rows; r++) {
        float scale;
        memcpy(&scale, sb + 4 * r, 4);
        for (size_t c = 0; c < cols; c++) out[r * cols + c] = (float)q[r * cols + c] * scale;
    }
    return FANYI_OK;
}

int fy_weights_check(fy_weights *w, const char *name, int rank, const int64_t *shape, fanyi_error *err) {
    fy_tensor *t = (fy_tensor *)fy_weights_find(w, name);
    if (!t) return fy_fail(err, FANYI_ERR_MODEL, "%s: missing tensor '%s'", w->path, name);
    int rc = check_shape(w, t, rank, shape, err);
    if (rc) return rc;
    if (t->dtype == FY_I8) {
        fy_tensor *s;
        if (rank != 2) return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s' is I8, but only matrices may be quantized", w->path, name);
        if ((rc = find_scales(w, t, &s, err))) return rc;
    }
    t->used = 1;
    return FANYI_OK;
}

/* Lets the kernel reclaim the mapped pages of t (they are read again from the
 * page cache if touched). Whole pages inside the tensor's bytes only:
 * neighbours may still be in use. */
static void drop_pages(const fy_weights *w, const fy_tensor *t) {
    if (!w->mapped) return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t begin = (uintptr_t)(w->data + t->begin), end = (uintptr_t)(w->data + t->end);
    uintptr_t first = (begin + (uintptr_t)page - 1) & ~((uintptr_t)page - 1), last = end & ~((uintptr_t)page - 1);
    if (last > first) madvise((void *)first, last - first, MADV_DONTNEED);
}

/* Index of the first NaN or infinity in x, or n. Blocks are scanned with
 * bit tests the compiler vectorizes, so the check costs one pass at load. */
static size_t first_non_finite(const float *x, size_t n) {
    const size_t block = 1024;
    for (size_t b = 0; b < n; b += block) {
        size_t end = b + block < n ? b + block : n;
        uint32_t all_ones = 0;
        for (size_t i = b; i < end; i++) {
            uint32_t bits;
            memcpy(&bits, &x[i], 4);
            all_ones |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
        }
        if (all_ones)
            for (size_t i = b; i < end; i++)
                if (!isfinite(x[i])) return i;
    }
    return n;
}

/* Weights that are NaN or infinite translate into garbage: refuse them, naming the element. */
static int check_finite(const fy_weights *w, const fy_tensor *t, const float *x, size_t n, fanyi_error *err) {
    size_t bad = first_non_finite(x, n);
    if (bad == n) return FANYI_OK;
    size_t cols = t->rank >= 2 ? (size_t)t->shape[t->rank - 1] : n;
    if (t->rank >= 2)
        return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s' holds a non-finite value (%g) at row %zu, column %zu",
                       w->path, t->name, (double)x[bad], bad / cols, bad % cols);
    return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s' holds a non-finite value (%g) at index %zu", w->path,
                   t->name, (double)x[bad], bad);
}

int fy_weights_f32(fy_weights *w, const char *name, int rank, const int64_t *shape, const float **data,
                   fanyi_error *err) {
    fy_tensor *t = (fy_tensor *)fy_weights_find(w, name);
    if (!t) return fy_fail(err, FANYI_ERR_MODEL, "%s: missing tensor '%s'", w->path, name);
    int rc = check_shape(w, t, rank, shape, err);
    if (rc) return rc;
    t->used = 1;
    size_t n = (t->end - t->begin) / dtype_size(t->dtype);
    const uint8_t *src = w->data + t->begin;
    if (t->dtype == FY_F32 && ((uintptr_t)src % sizeof(float)) == 0) {
        if ((rc = check_finite(w, t, (const float *)src, n, err))) return rc;
        drop_pages(w, t); /* the scan must not leave a sparsely read table (an embedding) resident */
        *data = (const float *)src;
        return FANYI_OK;
    }
    if (t->dtype == FY_I8 && rank != 2)
        return fy_fail(err, FANYI_ERR_MODEL, "%s: tensor '%s' is I8, but only matrices may be quantized", w->path, name);
    if (t->converted) { /* asked for twice (a tied embedding): one copy */
        *data = t->converted;
        return FANYI_OK;
    }
    float *buf = fy_calloc(n, sizeof(float), err, "converted tensor");
    if (!buf) return FANYI_ERR_MEMORY;
    t->converted = buf;
    if (t->dtype == FY_F32) memcpy(buf, src, n * 4);
    else if (t->dtype == FY_F16)
        halves_to_floats(src, n, buf);
    else if ((rc = dequantize(w, t, buf, err)))
        return rc;
    if ((rc = check_finite(w, t, buf, n, err))) return rc;
    *data = buf;
    return FANYI_OK;
}

void fy_weights_release(fy_weights *w, const char *name) {
    fy_tensor *t = (fy_tensor *)fy_weights_find(w, name);
    if (!t) return;
    if (t->converted) {
        free(t->converted);
        t->converted = NULL;
        return;
    }
    drop_pages(w, t);
}

const char *fy_weights_unused(const fy_weights *w) {
    for (int i = 0; i < w->n_tensors; i++)
        if (!w->tensors[i].used) return w->tensors[i].name;
    return NULL;
}

int fy_weights_count(const fy_weights *w) { return w->n_tensors; }
const fy_tensor *fy_weights_nth(const fy_weights *w, int i) { return i >= 0 && i < w->n_tensors ? &w->tensors[i] : NULL; }
