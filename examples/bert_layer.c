/* bert_layer - load one encoder layer from a .safetensors file and run it.
 *
 *   bert_layer FILE [PREFIX] [bert|torch] [D_MODEL HEADS D_FF]
 *
 * Defaults: Hugging Face BERT-base names under "encoder.layer.0." (d_model
 * 768, 12 heads, d_ff 3072, GELU, post-norm, LayerNorm eps 1e-12). With
 * "torch", the names of nn.TransformerEncoderLayer's state dict (eps 1e-5).
 * Runs the layer on a batch of 2 x 16 pseudo-random token vectors and prints
 * a summary of the output. See the README for producing such a file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mha.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [PREFIX] [bert|torch] [D_MODEL HEADS D_FF]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1], *prefix = argc > 2 ? argv[2] : "encoder.layer.0.";
    int naming = argc > 3 && !strcmp(argv[3], "torch") ? MHA_NAMING_TORCH : MHA_NAMING_BERT;
    mha_config cfg;
    mha_config_init(&cfg);
    cfg.d_model = argc > 6 ? strtoul(argv[4], NULL, 10) : 768;
    cfg.n_heads = argc > 6 ? strtoul(argv[5], NULL, 10) : 12;
    cfg.d_ff = argc > 6 ? strtoul(argv[6], NULL, 10) : 3072;
    cfg.activation = MHA_ACT_GELU;
    cfg.ln_eps = naming == MHA_NAMING_BERT ? 1e-12f : 1e-5f;

    mha_ctx *ctx;
    mha_status st = mha_create(&cfg, &ctx);
    if (st == MHA_OK)
        st = mha_load_safetensors(ctx, path, prefix, naming);
    if (st != MHA_OK) {
        fprintf(stderr, "%s: %s\n", path, mha_strerror(st));
        mha_destroy(ctx);
        return 1;
    }
    size_t B = 2, S = 16, n = B * S * cfg.d_model;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) /* a fixed pseudo-random input */
        x[i] = (float)sin(0.37 * (double)i) * 0.5f;
    int32_t lengths[2] = {16, 11}; /* the second sequence is padded */
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = B;
    a.seq_q = S;
    a.query = x;
    a.kv_lengths = lengths;
    a.out = y;
    st = mha_layer_forward(ctx, &a);
    if (st != MHA_OK) {
        fprintf(stderr, "forward: %s\n", mha_strerror(st));
        return 1;
    }
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
        sum += y[i];
        sq += (double)y[i] * y[i];
    }
    printf("libmha %s: layer %s%s loaded; output [%zu, %zu, %zu] mean %.6f std %.6f\n",
           mha_version_string(), prefix, naming == MHA_NAMING_BERT ? " (BERT names)" : "",
           B, S, (size_t)cfg.d_model, sum / (double)n, sqrt(sq / (double)n - (sum / (double)n) * (sum / (double)n)));
    printf("y[0, 0, :4] = %.6f %.6f %.6f %.6f\n", y[0], y[1], y[2], y[3]);
    free(x);
    free(y);
    mha_destroy(ctx);
    return 0;
}
