/* fuzz_safetensors - file bytes into mha_load_safetensors, for a fixed
 * small layer (d_model 8, 2 heads, d_ff 12), both naming schemes, biases on
 * or off. Invariants: statuses have messages; a failed load changes no
 * weight; a successful one sets every weight of the layer. The seed corpus
 * holds valid files for these shapes. */
#include "fuzz_common.h"

#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    mha_config cfg;
    mha_config_init(&cfg);
    cfg.d_model = 8;
    cfg.n_heads = 2;
    cfg.d_ff = 12;
    cfg.bias = mode & 2 ? 0 : 1;
    cfg.n_threads = 1;
    mha_ctx *ctx = fuzz_create(&cfg);
    if (!ctx)
        return 0;
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_st_%d.safetensors", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) {
        mha_destroy(ctx);
        return 0;
    }
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    const char *prefix = mode & 4 ? "encoder.layer.0." : (mode & 8 ? NULL : "");
    size_t np, n2;
    float *before = snapshot_params(ctx, &np, 0);
    mha_status st = mha_load_safetensors(ctx, path, prefix, mode & 1 ? MHA_NAMING_BERT : MHA_NAMING_TORCH);
    check_status(st);
    float *after = snapshot_params(ctx, &n2, 0);
    if (st != MHA_OK) {
        FUZZ_CHECK(!memcmp(before, after, np * sizeof(float)), "failed load (%d) changed weights", st);
    } else {
        float x[16] = {0}, y[16];
        mha_attn_args a;
        mha_attn_args_init(&a);
        a.batch = 1;
        a.seq_q = 2;
        a.query = x;
        a.out = y;
        FUZZ_CHECK(mha_layer_forward(ctx, &a) == MHA_OK, "weights missing after a successful load");
    }
    free(before);
    free(after);
    unlink(path);
    mha_destroy(ctx);
    return 0;
}
