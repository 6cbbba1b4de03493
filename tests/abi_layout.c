/* abi_layout - prints the layout of every public struct: one line per field
 * "struct field offset size", then "struct (struct_size v1) N". The ABI test
 * compares it with abi/struct_layout.txt: every field keeps its offset and
 * size, new fields only appear past the old end. */
#include <stddef.h>
#include <stdio.h>

#include "mha.h"

#define F(type, field) \
    printf("%s %s %zu %zu\n", #type, #field, offsetof(type, field), sizeof(((type *)0)->field))

int main(void)
{
    F(mha_config, struct_size);
    F(mha_config, d_model);
    F(mha_config, n_heads);
    F(mha_config, n_kv_heads);
    F(mha_config, d_head);
    F(mha_config, d_ff);
    F(mha_config, activation);
    F(mha_config, norm_first);
    F(mha_config, bias);
    F(mha_config, ln_eps);
    F(mha_config, n_threads);
    F(mha_attn_args, struct_size);
    F(mha_attn_args, batch);
    F(mha_attn_args, seq_q);
    F(mha_attn_args, seq_kv);
    F(mha_attn_args, query);
    F(mha_attn_args, key);
    F(mha_attn_args, value);
    F(mha_attn_args, kv_lengths);
    F(mha_attn_args, attn_bias);
    F(mha_attn_args, causal);
    F(mha_attn_args, out);
    F(mha_attn_args, attn_weights);
    F(mha_grad_args, struct_size);
    F(mha_grad_args, d_out);
    F(mha_grad_args, d_query);
    F(mha_grad_args, d_key);
    F(mha_grad_args, d_value);
    /* enums and statuses are ABI too */
    printf("enum MHA_PARAM_COUNT %d\n", (int)MHA_PARAM_COUNT);
#define S(name, value, msg) printf("status %s %d\n", #name, value);
    MHA_STATUS_LIST(S)
#undef S
    printf("act MHA_ACT_SWIGLU %d\nnaming MHA_NAMING_BERT %d\n", MHA_ACT_SWIGLU, MHA_NAMING_BERT);
    return 0;
}
