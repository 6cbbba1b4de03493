// A C++ consumer of the installed package (find_package(mha), mha::mha).
#include <mha.h>

#include <cstdio>
#include <vector>

int main()
{
    mha_config cfg;
    mha_config_init(&cfg);
    cfg.d_model = 16;
    cfg.n_heads = 4;
    mha_ctx *ctx = nullptr;
    if (mha_create(&cfg, &ctx) != MHA_OK)
        return 1;
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        std::vector<float> w(mha_param_count(ctx, mha_param(p)), 0.01f);
        if (!w.empty() && mha_set_param(ctx, mha_param(p), w.data(), w.size()) != MHA_OK)
            return 1;
    }
    std::vector<float> x(3 * 16, 0.5f), y(x.size());
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = 1;
    a.seq_q = 3;
    a.query = x.data();
    a.out = y.data();
    mha_status st = mha_attention_forward(ctx, &a);
    std::printf("C++ consumer: %s, y[0] = %g\n", mha_strerror(st), y[0]);
    mha_destroy(ctx);
    return st == MHA_OK ? 0 : 1;
}
