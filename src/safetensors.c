/* safetensors.c - loading one encoder layer's weights from a .safetensors file.
 *
 * Format: u64 little-endian header size N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data. Offsets are relative to the
 * data start; the tensors must tile the data exactly (no holes, no overlap).
 *
 * Everything is validated before any weight changes: the header (size
 * limit, JSON, every entry's dtype, shape and offsets, tiling), then the
 * tensors the naming scheme needs (presence, dtype, exact shape), converted
 * into a staging copy; only then are the weights set. The file is mapped
 * read-only and never trusted: every size product is overflow-checked. */
#include "internal.h"

#include <cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER ((uint64_t)100 << 20) /* the reference implementation's limit */
#define MAX_DIMS 8

typedef enum dtype { DT_F32, DT_F16, DT_BF16, DT_OTHER } dtype;

static const struct {
    const char *name;
    size_t size;
    dtype dt;
} dtypes[] = {
    {"F32", 4, DT_F32},     {"F16", 2, DT_F16},     {"BF16", 2, DT_BF16},   {"F64", 8, DT_OTHER},
    {"I64", 8, DT_OTHER},   {"U64", 8, DT_OTHER},   {"I32", 4, DT_OTHER},   {"U32", 4, DT_OTHER},
    {"I16", 2, DT_OTHER},   {"U16", 2, DT_OTHER},   {"I8", 1, DT_OTHER},    {"U8", 1, DT_OTHER},
    {"BOOL", 1, DT_OTHER},  {"F8_E4M3", 1, DT_OTHER}, {"F8_E5M2", 1, DT_OTHER},
};

typedef struct entry {
    const char *name;
    dtype dt;
    size_t ndim, shape[MAX_DIMS];
    uint64_t begin, end;
} entry;

typedef struct file {
    const unsigned char *map;
    size_t size;
    const unsigned char *data; /* after the header */
    uint64_t data_len;
    cJSON *json;
    entry *entries;
    size_t n;
} file;

static int as_u64(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != floor(d))
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static mha_status parse_entry(const cJSON *it, entry *e, uint64_t data_len)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return MHA_ERR_HEADER;
    size_t esize = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dt->valuestring, dtypes[i].name)) {
            esize = dtypes[i].size;
            e->dt = dtypes[i].dt;
        }
    if (!esize)
        return MHA_ERR_DTYPE;
    int nd = cJSON_GetArraySize(shape);
    if (nd < 0 || nd > MAX_DIMS)
        return MHA_ERR_HEADER;
    e->ndim = (size_t)nd;
    uint64_t count = 1, bytes;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (as_u64(cJSON_GetArrayItem(shape, i), &d) != 0)
            return MHA_ERR_HEADER;
        if (__builtin_mul_overflow(count, d, &count))
            return MHA_ERR_OFFSETS;
        e->shape[i] = (size_t)d;
    }
    if (as_u64(cJSON_GetArrayItem(offs, 0), &e->begin) != 0 ||
        as_u64(cJSON_GetArrayItem(offs, 1), &e->end) != 0)
        return MHA_ERR_HEADER;
    if (__builtin_mul_overflow(count, (uint64_t)esize, &bytes) || e->end < e->begin ||
        e->end - e->begin != bytes)
        return MHA_ERR_OFFSETS;
    if (e->end > data_len)
        return MHA_ERR_TRUNCATED;
    return MHA_OK;
}

/* Maps and validates the whole file. */
static mha_status file_open(const char *path, file *f)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return MHA_ERR_IO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return MHA_ERR_IO;
    }
    if (st.st_size < 8) {
        close(fd);
        return MHA_ERR_TRUNCATED;
    }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return MHA_ERR_IO;
    f->map = m;

    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->map[i];
    if (hlen > MAX_HEADER)
        return MHA_ERR_HEADER_TOO_LARGE;
    if (hlen > f->size - 8)
        return MHA_ERR_TRUNCATED;
    if (hlen < 2 || f->map[8] != '{')
        return MHA_ERR_HEADER;
    f->data = f->map + 8 + hlen;
    f->data_len = f->size - 8 - hlen;
    f->json = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)hlen);
    if (!f->json || !cJSON_IsObject(f->json))
        return MHA_ERR_HEADER;

    size_t n = 0;
    for (const cJSON *it = f->json->child; it; it = it->next)
        n++;
    f->entries = calloc(n ? n : 1, sizeof *f->entries);
    if (!f->entries)
        return MHA_ERR_NO_MEMORY;
    for (const cJSON *it = f->json->child; it; it = it->next) {
        if (!it->string)
            return MHA_ERR_HEADER;
        for (const cJSON *o = f->json->child; o != it; o = o->next)
            if (!strcmp(o->string, it->string))
                return MHA_ERR_HEADER; /* duplicate key */
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it))
                return MHA_ERR_HEADER;
            for (const cJSON *kv = it->child; kv; kv = kv->next)
                if (!cJSON_IsString(kv))
                    return MHA_ERR_HEADER;
            continue;
        }
        entry *e = &f->entries[f->n];
        e->name = it->string;
        mha_status s = parse_entry(it, e, f->data_len);
        if (s != MHA_OK)
            return s;
        f->n++;
    }
    /* the tensors tile the data region: no holes, no overlaps */
    qsort(f->entries, f->n, sizeof *f->entries, cmp_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (f->entries[i].begin != at)
            return MHA_ERR_OFFSETS;
        at = f->entries[i].end;
    }
    if (at != f->data_len)
        return MHA_ERR_OFFSETS;
    return MHA_OK;
}

static void file_close(file *f)
{
    cJSON_Delete(f->json);
    free(f->entries);
    if (f->map)
        munmap((void *)f->map, f->size);
}

static const entry *find(const file *f, const char *prefix, const char *name)
{
    size_t lp = strlen(prefix);
    for (size_t i = 0; i < f->n; i++) {
        const char *s = f->entries[i].name;
        if (!strncmp(s, prefix, lp) && !strcmp(s + lp, name))
            return &f->entries[i];
    }
    return NULL;
}

/* Exact conversions: F16 (incl. subnormals, inf, NaN) and BF16 to F32. */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13; /* inf, NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | man << 13;
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void convert(const file *f, const entry *e, float *dst, size_t row0, size_t rows,
                    size_t cols)
{
    size_t es = e->dt == DT_F32 ? 4 : 2;
    const unsigned char *p = f->data + e->begin + row0 * cols * es;
    for (size_t i = 0; i < rows * cols; i++, p += es) {
        uint32_t bits;
        if (e->dt == DT_F32) {
            bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&dst[i], &bits, 4);
        } else if (e->dt == DT_BF16) {
            bits = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
            memcpy(&dst[i], &bits, 4);
        } else {
            dst[i] = f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        }
    }
}

/* One tensor of the file feeding one or three parameters. */
typedef struct source {
    const char *name;      /* after the prefix */
    const char *alt;       /* older alternative name, or NULL */
    mha_param p[3];        /* parameters, split along rows (in_proj: Q, K, V) */
    size_t n_split;
} source;

#define S1(n, a, p0) {n, a, {p0, 0, 0}, 1}
static const source torch_names[] = {
    {"self_attn.in_proj_weight", NULL, {MHA_PARAM_WQ, MHA_PARAM_WK, MHA_PARAM_WV}, 3},
    {"self_attn.in_proj_bias", NULL, {MHA_PARAM_BQ, MHA_PARAM_BK, MHA_PARAM_BV}, 3},
    S1("self_attn.out_proj.weight", NULL, MHA_PARAM_WO),
    S1("self_attn.out_proj.bias", NULL, MHA_PARAM_BO),
    S1("linear1.weight", NULL, MHA_PARAM_W1),
    S1("linear1.bias", NULL, MHA_PARAM_B1),
    S1("linear2.weight", NULL, MHA_PARAM_W2),
    S1("linear2.bias", NULL, MHA_PARAM_B2),
    S1("norm1.weight", NULL, MHA_PARAM_LN1_WEIGHT),
    S1("norm1.bias", NULL, MHA_PARAM_LN1_BIAS),
    S1("norm2.weight", NULL, MHA_PARAM_LN2_WEIGHT),
    S1("norm2.bias", NULL, MHA_PARAM_LN2_BIAS),
};
static const source bert_names[] = {
    S1("attention.self.query.weight", NULL, MHA_PARAM_WQ),
    S1("attention.self.query.bias", NULL, MHA_PARAM_BQ),
    S1("attention.self.key.weight", NULL, MHA_PARAM_WK),
    S1("attention.self.key.bias", NULL, MHA_PARAM_BK),
    S1("attention.self.value.weight", NULL, MHA_PARAM_WV),
    S1("attention.self.value.bias", NULL, MHA_PARAM_BV),
    S1("attention.output.dense.weight", NULL, MHA_PARAM_WO),
    S1("attention.output.dense.bias", NULL, MHA_PARAM_BO),
    S1("attention.output.LayerNorm.weight", "attention.output.LayerNorm.gamma", MHA_PARAM_LN1_WEIGHT),
    S1("attention.output.LayerNorm.bias", "attention.output.LayerNorm.beta", MHA_PARAM_LN1_BIAS),
    S1("intermediate.dense.weight", NULL, MHA_PARAM_W1),
    S1("intermediate.dense.bias", NULL, MHA_PARAM_B1),
    S1("output.dense.weight", NULL, MHA_PARAM_W2),
    S1("output.dense.bias", NULL, MHA_PARAM_B2),
    S1("output.LayerNorm.weight", "output.LayerNorm.gamma", MHA_PARAM_LN2_WEIGHT),
    S1("output.LayerNorm.bias", "output.LayerNorm.beta", MHA_PARAM_LN2_BIAS),
};

/* Rows and columns parameter p has in nn.Linear layout (vectors: 1 dim). */
static void param_dims(const mha_ctx *ctx, mha_param p, size_t *rows, size_t *cols, int *ndim)
{
    *ndim = 2;
    *cols = ctx->d_model;
    switch (p) {
    case MHA_PARAM_WQ: *rows = ctx->d_q; break;
    case MHA_PARAM_WK: case MHA_PARAM_WV: *rows = ctx->d_kv; break;
    case MHA_PARAM_WO: *rows = ctx->d_model; *cols = ctx->d_q; break;
    case MHA_PARAM_W1: case MHA_PARAM_W3: *rows = ctx->d_ff; break;
    case MHA_PARAM_W2: *rows = ctx->d_model; *cols = ctx->d_ff; break;
    default:
        *ndim = 1;
        *rows = ctx->param_n[p];
        *cols = 1;
        break;
    }
}

static int is_bias_param(mha_param p)
{
    return p == MHA_PARAM_BQ || p == MHA_PARAM_BK || p == MHA_PARAM_BV || p == MHA_PARAM_BO ||
           p == MHA_PARAM_B1 || p == MHA_PARAM_B2;
}

mha_status mha_load_safetensors(mha_ctx *ctx, const char *path, const char *prefix, int naming)
{
    if (!ctx || !path)
        return MHA_ERR_NULL_ARG;
    if (naming != MHA_NAMING_TORCH && naming != MHA_NAMING_BERT)
        return MHA_ERR_BAD_NAMING;
    if (!prefix)
        prefix = "";
    /* What the naming schemes can express: one K/V head per query head,
     * d_head * n_heads = d_model (PyTorch's in_proj), no SwiGLU gate. */
    if (ctx->activation == MHA_ACT_SWIGLU || ctx->n_kv_heads != ctx->n_heads ||
        ctx->d_q != ctx->d_model)
        return MHA_ERR_NAMING_MISMATCH;
    const source *src = naming == MHA_NAMING_TORCH ? torch_names : bert_names;
    size_t n_src = naming == MHA_NAMING_TORCH ? sizeof torch_names / sizeof torch_names[0]
                                              : sizeof bert_names / sizeof bert_names[0];
    file f;
    mha_status st = file_open(path, &f);
    float *stage = NULL;
    const entry *found[32] = {0};
    if (st != MHA_OK)
        goto done;
    for (size_t i = 0; i < n_src && st == MHA_OK; i++) {
        const entry *e = find(&f, prefix, src[i].name);
        if (!e && src[i].alt)
            e = find(&f, prefix, src[i].alt);
        found[i] = e;
        int bias = is_bias_param(src[i].p[0]);
        if (bias && !ctx->bias) {
            if (e)
                st = MHA_ERR_NAMING_MISMATCH; /* the file has biases the config lacks */
            continue;
        }
        if (!e) {
            st = MHA_ERR_TENSOR_MISSING;
            break;
        }
        if (e->dt == DT_OTHER) {
            st = MHA_ERR_DTYPE;
            break;
        }
        size_t rows, cols, total_rows = 0;
        int ndim;
        param_dims(ctx, src[i].p[0], &rows, &cols, &ndim);
        for (size_t k = 0; k < src[i].n_split; k++) {
            size_t r, c;
            param_dims(ctx, src[i].p[k], &r, &c, &ndim);
            total_rows += r;
        }
        if (e->ndim != (size_t)ndim || e->shape[0] != total_rows || (ndim == 2 && e->shape[1] != cols))
            st = MHA_ERR_TENSOR_SHAPE;
    }
    if (st != MHA_OK)
        goto done;
    stage = malloc(ctx->params_total * sizeof(float) + 1);
    if (!stage) {
        st = MHA_ERR_NO_MEMORY;
        goto done;
    }
    for (size_t i = 0; i < n_src; i++) {
        if (!found[i] || (is_bias_param(src[i].p[0]) && !ctx->bias))
            continue;
        size_t row = 0;
        for (size_t k = 0; k < src[i].n_split; k++) {
            size_t r, c;
            int nd;
            param_dims(ctx, src[i].p[k], &r, &c, &nd);
            convert(&f, found[i], stage + ctx->param_off[src[i].p[k]], row, r, c);
            row += r;
        }
    }
    /* all checks passed: commit */
    for (size_t i = 0; i < n_src; i++) {
        if (!found[i] || (is_bias_param(src[i].p[0]) && !ctx->bias))
            continue;
        for (size_t k = 0; k < src[i].n_split; k++) {
            mha_param p = src[i].p[k];
            memcpy(mha__p(ctx, p), stage + ctx->param_off[p], ctx->param_n[p] * sizeof(float));
            ctx->param_set[p] = 1;
        }
    }
    ctx->params_gen++;
done:
    free(stage);
    file_close(&f);
    return st;
}
