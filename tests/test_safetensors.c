/* test_safetensors.c - mha_load_safetensors on real files written here:
 * valid ones in both naming schemes and dtypes, and corrupted ones, each of
 * which must give its specific status and leave the weights unchanged. */
#define _GNU_SOURCE
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { D = 8, H = 2, F = 12 };

typedef struct tensor {
    char name[96];
    char dtype[12];
    size_t ndim, shape[2];
    unsigned char *data;
    size_t bytes;
} tensor;

typedef struct stfile {
    tensor t[40];
    size_t n;
    char extra_header[256]; /* appended inside the JSON object, e.g. metadata */
} stfile;

static void add(stfile *f, const char *name, const char *dtype, size_t ndim, size_t r, size_t c,
                const float *values)
{
    tensor *t = &f->t[f->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    t->shape[0] = r;
    t->shape[1] = c;
    size_t n = ndim == 2 ? r * c : r, es = !strcmp(dtype, "F32") ? 4 : 2;
    if (!strcmp(dtype, "I64"))
        es = 8;
    t->bytes = n * es;
    t->data = calloc(t->bytes + 1, 1);
    for (size_t i = 0; i < n && values; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], 4);
        if (es == 4)
            memcpy(t->data + 4 * i, &bits, 4);
        else if (!strcmp(dtype, "BF16")) {
            uint16_t h = (uint16_t)(bits >> 16); /* values are chosen exact in BF16 */
            memcpy(t->data + 2 * i, &h, 2);
        }
    }
}

static void free_file(stfile *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->t[i].data);
    f->n = 0;
}

/* Serialises f; `lie` edits the header text (offsets etc.) via a callback. */
static char *header_of(const stfile *f)
{
    char *h = calloc(1, 1 << 16);
    size_t at = 0;
    at += (size_t)sprintf(h + at, "{");
    size_t off = 0;
    for (size_t i = 0; i < f->n; i++) {
        const tensor *t = &f->t[i];
        at += (size_t)sprintf(h + at, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                              t->name, t->dtype);
        for (size_t d = 0; d < t->ndim; d++)
            at += (size_t)sprintf(h + at, "%s%zu", d ? "," : "", t->shape[d]);
        at += (size_t)sprintf(h + at, "],\"data_offsets\":[%zu,%zu]}", off, off + t->bytes);
        off += t->bytes;
    }
    at += (size_t)sprintf(h + at, "%s}", f->extra_header);
    return h;
}

static void write_raw(const char *path, const char *header, const stfile *f, long trim,
                      uint64_t fake_len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    size_t hl = strlen(header), pad = (8 - hl % 8) % 8;
    uint64_t n = fake_len ? fake_len : hl + pad;
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(n >> (8 * i));
    fwrite(le, 1, 8, fp);
    fwrite(header, 1, hl, fp);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', fp);
    for (size_t i = 0; i < f->n; i++)
        fwrite(f->t[i].data, 1, f->t[i].bytes, fp);
    fclose(fp);
    if (trim) {
        FILE *g = fopen(path, "rb+");
        fseek(g, 0, SEEK_END);
        long size = ftell(g);
        fclose(g);
        assert_int_equal(truncate(path, size - trim), 0);
    }
}

static void write_file(const char *path, const stfile *f)
{
    char *h = header_of(f);
    write_raw(path, h, f, 0, 0);
    free(h);
}

static float *vals(size_t n, uint64_t seed)
{
    rng_seed(seed);
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) /* multiples of 1/64 in [-2, 2]: exact in BF16 too */
        v[i] = (float)((int)(rng_uniform() * 128)) / 64.0f;
    return v;
}

/* A PyTorch TransformerEncoderLayer state dict under prefix. */
static void torch_layer(stfile *f, const char *prefix, const char *dtype, int with_bias,
                        float **w_in)
{
    char n[96];
    struct {
        const char *name;
        size_t r, c;
        int ndim, bias;
    } spec[] = {
        {"self_attn.in_proj_weight", 3 * D, D, 2, 0}, {"self_attn.in_proj_bias", 3 * D, 1, 1, 1},
        {"self_attn.out_proj.weight", D, D, 2, 0},    {"self_attn.out_proj.bias", D, 1, 1, 1},
        {"linear1.weight", F, D, 2, 0},               {"linear1.bias", F, 1, 1, 1},
        {"linear2.weight", D, F, 2, 0},               {"linear2.bias", D, 1, 1, 1},
        {"norm1.weight", D, 1, 1, 0},                 {"norm1.bias", D, 1, 1, 0},
        {"norm2.weight", D, 1, 1, 0},                 {"norm2.bias", D, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        if (spec[i].bias && !with_bias)
            continue;
        snprintf(n, sizeof n, "%s%s", prefix, spec[i].name);
        float *v = vals(spec[i].r * spec[i].c, 100 + i);
        add(f, n, dtype, (size_t)spec[i].ndim, spec[i].r, spec[i].c, v);
        if (w_in)
            w_in[i] = v;
        else
            free(v);
    }
}

static mha_ctx *make_ctx(int bias, int act, size_t kv_heads)
{
    mha_config c = make_cfg(D, H, kv_heads, 0, F);
    c.bias = bias;
    c.activation = act;
    mha_ctx *ctx;
    assert_int_equal(mha_create(&c, &ctx), MHA_OK);
    return ctx;
}

static const char *tmp_path(const char *tag)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/mha_st_%d_%s.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid(), tag);
    return p;
}

static void torch_names_load(void **s)
{
    (void)s;
    stfile f = {0};
    float *w[12] = {0};
    torch_layer(&f, "encoder.layers.3.", "F32", 1, w);
    add(&f, "encoder.layers.3.extra.position_ids", "I64", 2, 1, 5, NULL); /* ignored */
    snprintf(f.extra_header, sizeof f.extra_header, ",\"__metadata__\":{\"format\":\"pt\"}");
    const char *path = tmp_path("torch");
    write_file(path, &f);
    mha_ctx *ctx = make_ctx(1, MHA_ACT_RELU, 0);
    assert_int_equal(mha_load_safetensors(ctx, path, "encoder.layers.3.", MHA_NAMING_TORCH), MHA_OK);
    float got[3 * D * D];
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_WQ, got, D * D), MHA_OK);
    assert_memory_equal(got, w[0], D * D * sizeof(float));
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_WV, got, D * D), MHA_OK);
    assert_memory_equal(got, w[0] + 2 * D * D, D * D * sizeof(float));
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_BK, got, D), MHA_OK);
    assert_memory_equal(got, w[1] + D, D * sizeof(float));
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_W2, got, D * F), MHA_OK);
    assert_memory_equal(got, w[6], D * F * sizeof(float));
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_LN2_BIAS, got, D), MHA_OK);
    assert_memory_equal(got, w[11], D * sizeof(float));
    /* every weight is set: the layer runs */
    float x[2 * D] = {0.5f, -1.0f}, y[2 * D];
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = 1;
    a.seq_q = 2;
    a.query = x;
    a.out = y;
    assert_int_equal(mha_layer_forward(ctx, &a), MHA_OK);
    /* wrong prefix: nothing found */
    assert_int_equal(mha_load_safetensors(ctx, path, NULL, MHA_NAMING_TORCH), MHA_ERR_TENSOR_MISSING);
    assert_int_equal(mha_load_safetensors(ctx, path, "encoder.layers.3.", 7), MHA_ERR_BAD_NAMING);
    mha_destroy(ctx);
    for (int i = 0; i < 12; i++)
        free(w[i]);
    free_file(&f);
    unlink(path);
}

static void bert_names_bf16_f16(void **s)
{
    (void)s;
    struct {
        const char *name;
        size_t r, c;
        int ndim;
    } spec[] = {
        {"attention.self.query.weight", D, D, 2}, {"attention.self.query.bias", D, 1, 1},
        {"attention.self.key.weight", D, D, 2},   {"attention.self.key.bias", D, 1, 1},
        {"attention.self.value.weight", D, D, 2}, {"attention.self.value.bias", D, 1, 1},
        {"attention.output.dense.weight", D, D, 2}, {"attention.output.dense.bias", D, 1, 1},
        {"attention.output.LayerNorm.gamma", D, 1, 1}, {"attention.output.LayerNorm.beta", D, 1, 1},
        {"intermediate.dense.weight", F, D, 2},   {"intermediate.dense.bias", F, 1, 1},
        {"output.dense.weight", D, F, 2},         {"output.dense.bias", D, 1, 1},
        {"output.LayerNorm.weight", D, 1, 1},     {"output.LayerNorm.bias", D, 1, 1},
    };
    stfile f = {0};
    float *w[16];
    for (int i = 0; i < 16; i++) {
        w[i] = vals(spec[i].r * spec[i].c, 200 + (uint64_t)i);
        add(&f, spec[i].name, i == 15 ? "F16" : "BF16", (size_t)spec[i].ndim, spec[i].r,
            spec[i].c, w[i]);
    }
    /* F16 specials into output.LayerNorm.bias: subnormals, max, inf, NaN, -0 */
    const uint16_t h[D] = {0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3c00};
    memcpy(f.t[15].data, h, sizeof h);
    const char *path = tmp_path("bert");
    write_file(path, &f);
    mha_ctx *ctx = make_ctx(1, MHA_ACT_GELU, 0);
    assert_int_equal(mha_load_safetensors(ctx, path, "", MHA_NAMING_BERT), MHA_OK);
    float got[F * D];
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_W1, got, F * D), MHA_OK);
    assert_memory_equal(got, w[10], F * D * sizeof(float));
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_LN1_WEIGHT, got, D), MHA_OK);
    assert_memory_equal(got, w[8], D * sizeof(float));
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_LN2_BIAS, got, D), MHA_OK);
    assert_true(got[0] == ldexpf(1.0f, -24));
    assert_true(got[1] == ldexpf(1023.0f, -24));
    assert_true(got[2] == 65504.0f);
    assert_true(isinf(got[3]) && got[3] > 0);
    assert_true(isinf(got[4]) && got[4] < 0);
    assert_true(isnan(got[5]));
    assert_true(got[6] == 0.0f && signbit(got[6]));
    assert_true(got[7] == 1.0f);
    mha_destroy(ctx);
    for (int i = 0; i < 16; i++)
        free(w[i]);
    free_file(&f);
    unlink(path);
}

/* ---- corrupted files ---- */
static float snapshot[4096];

static void expect(mha_ctx *ctx, const char *path, mha_status want, const char *what)
{
    float before[D * D], after[D * D];
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_WQ, before, D * D), MHA_OK);
    mha_status st = mha_load_safetensors(ctx, path, "", MHA_NAMING_TORCH);
    if (st != want)
        fail_msg("%s: got %d (%s), want %d (%s)", what, st, mha_strerror(st), want,
                 mha_strerror(want));
    assert_int_equal(mha_get_param(ctx, MHA_PARAM_WQ, after, D * D), MHA_OK);
    if (memcmp(before, after, sizeof before))
        fail_msg("%s: weights changed on error", what);
}

static void corrupted_files(void **s)
{
    (void)s;
    (void)snapshot;
    const char *path = tmp_path("bad");
    mha_ctx *ctx = make_ctx(1, MHA_ACT_RELU, 0);
    stfile good = {0};
    torch_layer(&good, "", "F32", 1, NULL);
    write_file(path, &good);
    assert_int_equal(mha_load_safetensors(ctx, path, "", MHA_NAMING_TORCH), MHA_OK);
    char *h = header_of(&good);

    /* structural */
    write_raw(path, h, &good, 7, 0);
    expect(ctx, path, MHA_ERR_TRUNCATED, "truncated data");
    write_raw(path, h, &good, 0, strlen(h) + 1000000);
    expect(ctx, path, MHA_ERR_TRUNCATED, "header size beyond the file");
    write_raw(path, h, &good, 0, (uint64_t)200 << 20);
    expect(ctx, path, MHA_ERR_HEADER_TOO_LARGE, "oversized header");
    write_raw(path, h, &good, 0, ~(uint64_t)0);
    expect(ctx, path, MHA_ERR_HEADER_TOO_LARGE, "header size 2^64-1");
    FILE *fp = fopen(path, "wb");
    fwrite("\x02\0\0", 1, 3, fp);
    fclose(fp);
    expect(ctx, path, MHA_ERR_TRUNCATED, "3-byte file");
    expect(ctx, "/nonexistent/x.safetensors", MHA_ERR_IO, "missing file");
    expect(ctx, "/tmp", MHA_ERR_IO, "a directory");

    /* header text edits: each replaces the first occurrence of `from` */
    struct {
        const char *from, *to;
        mha_status want;
    } edits[] = {
        {"\"data_offsets\":[0,", "\"data_offsets\":[4,", MHA_ERR_OFFSETS},      /* size lie */
        {"[768,", "[760,", MHA_ERR_OFFSETS},                                   /* hole + size */
        {"\"F32\"", "\"Q4\"", MHA_ERR_DTYPE},                                  /* unknown dtype */
        {"\"F32\"", "\"I32\"", MHA_ERR_DTYPE},                                 /* unloadable */
        {"\"shape\":[24,8]", "\"shape\":[8,24]", MHA_ERR_TENSOR_SHAPE},         /* transposed */
        {"\"shape\":[24,8]", "\"shape\":[24,-8]", MHA_ERR_HEADER},
        {"\"shape\":[24,8]", "\"shape\":[24,8.5]", MHA_ERR_HEADER},
        {"\"shape\":[24,8]", "\"shape\":\"24x8\"", MHA_ERR_HEADER},
        {"\"shape\":[24,8]", "\"shape\":[24,1,1,1,1,1,1,1,8]", MHA_ERR_HEADER},
        {"\"shape\":[24,8]", "\"shape\":[99999999999,99999999999]", MHA_ERR_OFFSETS},
        {"\"data_offsets\":[0,768]", "\"data_offsets\":[0]", MHA_ERR_HEADER},
        {"{\"self_attn", "[\"self_attn", MHA_ERR_HEADER},                       /* not JSON */
        {"linear1.bias", "linear1.bias_x", MHA_ERR_TENSOR_MISSING},
        {"linear2.bias", "linear1.bias", MHA_ERR_HEADER},                      /* duplicate */
        {"\"dtype\":\"F32\",", "", MHA_ERR_HEADER},                             /* no dtype */
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *e = malloc(strlen(h) + 64);
        const char *at = strstr(h, edits[i].from);
        assert_non_null(at);
        size_t pre = (size_t)(at - h);
        memcpy(e, h, pre);
        strcpy(e + pre, edits[i].to);
        strcat(e, at + strlen(edits[i].from));
        write_raw(path, e, &good, 0, 0);
        char what[160];
        snprintf(what, sizeof what, "edit %s -> %s", edits[i].from, edits[i].to);
        expect(ctx, path, edits[i].want, what);
        free(e);
    }
    /* metadata must map strings to strings */
    stfile meta = good;
    snprintf(meta.extra_header, sizeof meta.extra_header, ",\"__metadata__\":{\"n\":3}");
    char *hm = header_of(&meta);
    write_raw(path, hm, &good, 0, 0);
    expect(ctx, path, MHA_ERR_HEADER, "metadata value not a string");
    free(hm);
    /* extra bytes after the last tensor are a hole too */
    stfile more = good;
    snprintf(more.extra_header, sizeof more.extra_header, "%s", "");
    char *hx = header_of(&more);
    write_raw(path, hx, &good, 0, 0);
    FILE *ap = fopen(path, "ab");
    fwrite("xxxx", 1, 4, ap);
    fclose(ap);
    expect(ctx, path, MHA_ERR_OFFSETS, "trailing bytes");
    free(hx);
    /* garbage header bytes */
    write_raw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}\xff}", &good, 0, 0);
    expect(ctx, path, MHA_ERR_HEADER, "invalid JSON");
    free(h);
    mha_destroy(ctx);
    free_file(&good);
    unlink(path);
}

static void naming_mismatches(void **s)
{
    (void)s;
    const char *path = tmp_path("naming");
    stfile with = {0}, without = {0};
    torch_layer(&with, "", "F32", 1, NULL);
    torch_layer(&without, "", "F32", 0, NULL);
    mha_ctx *swiglu = make_ctx(1, MHA_ACT_SWIGLU, 0), *gqa = make_ctx(1, MHA_ACT_RELU, 1),
            *nobias = make_ctx(0, MHA_ACT_RELU, 0), *bias = make_ctx(1, MHA_ACT_RELU, 0);
    write_file(path, &with);
    assert_int_equal(mha_load_safetensors(swiglu, path, "", MHA_NAMING_TORCH), MHA_ERR_NAMING_MISMATCH);
    assert_int_equal(mha_load_safetensors(gqa, path, "", MHA_NAMING_TORCH), MHA_ERR_NAMING_MISMATCH);
    assert_int_equal(mha_load_safetensors(nobias, path, "", MHA_NAMING_TORCH), MHA_ERR_NAMING_MISMATCH);
    write_file(path, &without);
    assert_int_equal(mha_load_safetensors(nobias, path, "", MHA_NAMING_TORCH), MHA_OK);
    assert_int_equal(mha_load_safetensors(bias, path, "", MHA_NAMING_TORCH), MHA_ERR_TENSOR_MISSING);
    assert_int_equal(mha_load_safetensors(NULL, path, "", MHA_NAMING_TORCH), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_load_safetensors(bias, NULL, "", MHA_NAMING_TORCH), MHA_ERR_NULL_ARG);
    mha_destroy(swiglu);
    mha_destroy(gqa);
    mha_destroy(nobias);
    mha_destroy(bias);
    free_file(&with);
    free_file(&without);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(torch_names_load),
        cmocka_unit_test(bert_names_bf16_f16),
        cmocka_unit_test(corrupted_files),
        cmocka_unit_test(naming_mismatches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
