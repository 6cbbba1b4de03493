// The public header used from C++: compiles with -pedantic, links, runs.
#include <mha.h>

#include <cstdio>
#include <cstring>

int main()
{
    mha_config cfg;
    mha_config_init(&cfg);
    cfg.d_model = 8;
    cfg.n_heads = 2;
    mha_ctx *ctx = nullptr;
    mha_status st = mha_create(&cfg, &ctx);
    if (st != MHA_OK || std::strlen(mha_strerror(st)) == 0)
        return 1;
    mha_attn_args a;
    mha_attn_args_init(&a);
    int rc = mha_version() == MHA_VERSION_NUMBER && a.struct_size > 0 ? 0 : 1;
    mha_destroy(ctx);
    std::printf("C++ header OK, libmha %s\n", mha_version_string());
    return rc;
}
