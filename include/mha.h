/*
 * mha.h - libmha: transformer multi-head attention and feed-forward layers on
 * the CPU, with every heavy operation on cblas_sgemm.
 *
 * This header is the reference documentation of the library. It is C11 and
 * C++ compatible and never includes cblas.h.
 *
 * Conventions (all functions)
 * ---------------------------
 * - Activations are row-major float32, batch first: [batch, seq, d_model].
 * - Weights follow nn.Linear: [out_features, in_features], so a PyTorch or
 *   safetensors state dict is copied without transposing. Per-head tensors
 *   are batched and contiguous per head (see mha_param).
 * - Every function that can fail returns an mha_status. Nothing reachable
 *   from this API aborts, exits, asserts or prints. A failed call leaves the
 *   context usable and its weights unchanged, and writes no output unless
 *   stated otherwise.
 * - Ownership: the library copies weights in mha_set_param; input arrays
 *   are only read during the call; outputs are written only during the call.
 *   An output that overlaps an input or another output is rejected with
 *   MHA_ERR_ALIAS.
 * - Thread safety: a context is used by one thread at a time (calls on one
 *   context must be serialised by the caller, e.g. with a mutex when handing
 *   it between threads). Different contexts may be used from different
 *   threads at the same time. Functions without a context argument
 *   (mha_strerror, mha_version, ...) are always thread-safe. There is no
 *   global mutable state in libmha and no init function.
 *
 * Threads and BLAS
 * ----------------
 * Each context owns a pool of mha_config.n_threads threads (the calling
 * thread included; 0 means one per core in the process's CPU affinity mask)
 * and splits work itself: projections by rows, attention by (batch, head,
 * query block). It calls sgemm single-threaded from those threads. Because
 * OpenBLAS's own thread count is global to the process, mha_create calls
 * openblas_set_num_threads(1) when the CBLAS in use is OpenBLAS; if your
 * program relies on multithreaded OpenBLAS elsewhere, set it back after
 * creating contexts, knowing that libmha calls will then oversubscribe
 * the cores (results stay correct). OpenBLAS's idle workers also keep
 * spinning for about 2^28 cycles after each multithreaded call, taking
 * cores from a libmha call made meanwhile; OPENBLAS_THREAD_TIMEOUT=4 in the
 * environment makes them sleep at once. libmha's own idle workers spin at
 * most 2 ms, then sleep. Results are bitwise identical for every value of
 * n_threads: work is never split along a reduction.
 *
 * Numerics
 * --------
 * - Scores are Q.K^T / sqrt(d_head); softmax is computed stably (online
 *   softmax with running max), so scores thousands apart are fine. Max abs
 *   error against a float64 reference is at most 1e-4 for inputs and
 *   weights of order 1 at d_model <= 1024 (gradients: relative 1e-3).
 * - A query row whose keys are all masked gives a zero attention vector
 *   before W_o (that row's output is b_o) and zero attention weights; its
 *   gradients are zero too. -1e30 in attn_bias works like -INFINITY.
 * - NaN or +-Inf in inputs or weights propagates to the outputs it touches
 *   (a NaN key reaches every query that attends to it); it never crashes.
 *   +INFINITY or NaN in attn_bias may give NaN.
 * - Everything is float32: products that exceed its range (e.g. inputs of
 *   1e30 fed straight into attention, whose scores would be 1e60) give
 *   Inf/NaN, as in PyTorch. LayerNorm statistics are accumulated in double,
 *   so rows of 1e30 are normalised correctly (a pre-norm layer on 1e30
 *   inputs stays finite) and constant rows (variance 0) give the LN bias.
 * - Subnormal inputs are computed with, not flushed.
 * - With grouped-query attention, query head h reads key/value head
 *   h / (n_heads / n_kv_heads) (PyTorch's repeat_interleave order).
 * - exp, erf and tanh are vectorised polynomial/rational approximations
 *   (about 1e-7 absolute), not libm calls.
 */
#ifndef MHA_H
#define MHA_H

#include <stddef.h>
#include <stdint.h>

#define MHA_VERSION_MAJOR 1
#define MHA_VERSION_MINOR 2
#define MHA_VERSION_PATCH 2
#define MHA_VERSION_NUMBER \
    (MHA_VERSION_MAJOR * 10000 + MHA_VERSION_MINOR * 100 + MHA_VERSION_PATCH)
#define MHA__STR_(x) #x
#define MHA__STR(x) MHA__STR_(x)
#define MHA_VERSION_STRING \
    MHA__STR(MHA_VERSION_MAJOR) "." MHA__STR(MHA_VERSION_MINOR) "." MHA__STR(MHA_VERSION_PATCH)

#if defined(MHA_BUILDING_LIBRARY) && defined(__GNUC__)
#define MHA_API __attribute__((visibility("default")))
#else
#define MHA_API
#endif

/* Size of a struct up to the end of `field`: trailing padding never hides a
 * field added later (as in PJRT's C API). */
#define MHA_STRUCT_SIZE(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. The values are pinned: they never change between versions,
 * new codes are only appended. X(name, value, message). */
#define MHA_STATUS_LIST(X)                                                                    \
    X(MHA_OK, 0, "success")                                                                   \
    X(MHA_ERR_NULL_ARG, 1, "a required pointer argument is NULL")                             \
    X(MHA_ERR_STRUCT_SIZE, 2, "struct_size is smaller than the oldest supported struct")      \
    X(MHA_ERR_BAD_CONFIG, 3, "invalid dimensions in mha_config")                              \
    X(MHA_ERR_BAD_ACTIVATION, 4, "unknown activation")                                        \
    X(MHA_ERR_BAD_FLAG, 5, "a flag (causal, norm_first, bias) is not 0 or 1")                 \
    X(MHA_ERR_BAD_EPS, 6, "ln_eps must be finite and > 0")                                    \
    X(MHA_ERR_BAD_THREADS, 7, "n_threads must be in 0..256")                                       \
    X(MHA_ERR_BAD_PARAM, 8, "unknown mha_param value")                                        \
    X(MHA_ERR_PARAM_UNUSED, 9, "this parameter is not used by the context's configuration")   \
    X(MHA_ERR_COUNT_MISMATCH, 10, "element count does not match the parameter's size")        \
    X(MHA_ERR_PARAM_NOT_SET, 11, "a weight this call reads has not been set")                 \
    X(MHA_ERR_BAD_SHAPE, 12, "inconsistent shapes (seq_kv or key/value arguments)")           \
    X(MHA_ERR_BAD_KV_LENGTH, 13, "a kv_lengths entry is negative or larger than seq_kv")      \
    X(MHA_ERR_OVERFLOW, 14, "a size computation overflows size_t")                            \
    X(MHA_ERR_ALIAS, 15, "an output overlaps an input or another output")                     \
    X(MHA_ERR_NO_MEMORY, 16, "out of memory")                                                 \
    X(MHA_ERR_THREAD, 17, "could not start worker threads")                                   \
    X(MHA_ERR_UNSUPPORTED, 18, "this call does not support the requested mode")             \
    X(MHA_ERR_IO, 19, "cannot open, stat or map the file")                                   \
    X(MHA_ERR_TRUNCATED, 20, "the file is shorter than its header says")                      \
    X(MHA_ERR_HEADER, 21, "malformed safetensors header (JSON, fields, duplicate names)")    \
    X(MHA_ERR_HEADER_TOO_LARGE, 22, "safetensors header larger than 100 MiB")                 \
    X(MHA_ERR_OFFSETS, 23, "tensor data_offsets disagree with shape and dtype, or leave holes") \
    X(MHA_ERR_DTYPE, 24, "unknown tensor dtype, or one that cannot be loaded (F32/F16/BF16)") \
    X(MHA_ERR_TENSOR_MISSING, 25, "a tensor the configuration needs is not in the file")      \
    X(MHA_ERR_TENSOR_SHAPE, 26, "a tensor's shape differs from the configuration's")          \
    X(MHA_ERR_BAD_NAMING, 27, "unknown naming scheme")                                        \
    X(MHA_ERR_NAMING_MISMATCH, 28,                                                            \
      "the naming scheme cannot fill this configuration (SwiGLU, GQA, d_head, biases)")

#define MHA__STATUS_ENUM(name, value, msg) name = value,
typedef enum mha_status { MHA_STATUS_LIST(MHA__STATUS_ENUM) } mha_status;
#undef MHA__STATUS_ENUM

/* Message for a status. Static storage, never NULL, for any int value
 * (unknown values give "unknown status"). Thread-safe. */
MHA_API const char *mha_strerror(int status);

/* MHA_VERSION_NUMBER of the library actually loaded (compare with the
 * header's macro to detect a mismatch). Thread-safe. */
MHA_API unsigned mha_version(void);
/* "major.minor.patch" of the loaded library. Static storage. Thread-safe. */
MHA_API const char *mha_version_string(void);

/* Activations of the FFN. GELU is the exact erf form (PyTorch "gelu"),
 * GELU_TANH the tanh approximation (approximate="tanh"). SWIGLU computes
 * W2 (silu(W1 x + b1) * (W3 x)) + b2. */
#define MHA_ACT_RELU 0
#define MHA_ACT_GELU 1
#define MHA_ACT_GELU_TANH 2
#define MHA_ACT_SWIGLU 3

typedef struct mha_config {
    size_t struct_size; /* set by mha_config_init */
    size_t d_model;     /* > 0 */
    size_t n_heads;     /* > 0 */
    size_t n_kv_heads;  /* 0: n_heads; else must divide n_heads (GQA/MQA) */
    size_t d_head;      /* 0: d_model / n_heads (must then divide evenly) */
    size_t d_ff;        /* 0: 4 * d_model */
    int activation;     /* MHA_ACT_*; default MHA_ACT_RELU (PyTorch's default) */
    int norm_first;     /* 0 (default): post-norm; 1: pre-norm */
    int bias;           /* 1 (default): Q, K, V, O, W1, W2 have biases; W3 never;
                           LayerNorm always has weight and bias */
    float ln_eps;       /* default 1e-5; finite and > 0 */
    int n_threads;      /* 0 (default): one per available core (at most 256); 0..256 */
} mha_config;           /* new fields only ever go at the end */

/* Zeroes *cfg, sets the defaults above and struct_size. The caller then sets
 * at least d_model and n_heads. */
static inline void mha_config_init(mha_config *cfg)
{
    size_t i;
    for (i = 0; i < sizeof *cfg; i++) /* no memset: the header includes no <string.h> */
        ((unsigned char *)cfg)[i] = 0;
    cfg->struct_size = MHA_STRUCT_SIZE(mha_config, n_threads);
    cfg->activation = MHA_ACT_RELU;
    cfg->norm_first = 0;
    cfg->bias = 1;
    cfg->ln_eps = 1e-5f;
    cfg->n_threads = 0;
}

typedef struct mha_ctx mha_ctx; /* opaque */

/* Creates a context for cfg: validates it, allocates the weights (unset),
 * starts n_threads - 1 worker threads. Buffers of 2 MiB and more (weights,
 * gradients, workspace) are 2 MiB-aligned and advised for transparent huge
 * pages (Linux madvise; a hint, nothing fails without it).
 * On success *out is the new context; on any error *out is NULL (when out is
 * not NULL).
 * Statuses: MHA_OK, MHA_ERR_NULL_ARG (cfg or out), MHA_ERR_STRUCT_SIZE,
 * MHA_ERR_BAD_CONFIG (d_model or n_heads 0, n_kv_heads not dividing n_heads,
 * d_head 0 with d_model % n_heads != 0), MHA_ERR_BAD_ACTIVATION,
 * MHA_ERR_BAD_FLAG, MHA_ERR_BAD_EPS, MHA_ERR_BAD_THREADS, MHA_ERR_OVERFLOW,
 * MHA_ERR_NO_MEMORY, MHA_ERR_THREAD. Thread-safe. */
MHA_API mha_status mha_create(const mha_config *cfg, mha_ctx **out);

/* Stops the context's threads and frees everything it owns. NULL is a
 * no-op. Must not run concurrently with another call on the same context. */
MHA_API void mha_destroy(mha_ctx *ctx);

/* The weights. Shapes, with H = n_heads, Hkv = n_kv_heads, dh = d_head:
 *   WQ [H, dh, d_model]        WK, WV [Hkv, dh, d_model]
 *   WO [d_model, H * dh]
 *   BQ [H * dh]  BK, BV [Hkv * dh]  BO [d_model]          (bias = 1 only)
 *   W1 [d_ff, d_model]  B1 [d_ff]  W2 [d_model, d_ff]  B2 [d_model]
 *   W3 [d_ff, d_model]                                    (SwiGLU only)
 *   LN1_WEIGHT, LN1_BIAS, LN2_WEIGHT, LN2_BIAS [d_model]
 * A weight whose count is 0 for the configuration is unused. */
typedef enum mha_param {
    MHA_PARAM_WQ, MHA_PARAM_WK, MHA_PARAM_WV, MHA_PARAM_WO,
    MHA_PARAM_BQ, MHA_PARAM_BK, MHA_PARAM_BV, MHA_PARAM_BO,
    MHA_PARAM_W1, MHA_PARAM_B1, MHA_PARAM_W2, MHA_PARAM_B2, MHA_PARAM_W3,
    MHA_PARAM_LN1_WEIGHT, MHA_PARAM_LN1_BIAS, MHA_PARAM_LN2_WEIGHT, MHA_PARAM_LN2_BIAS,
    MHA_PARAM_COUNT
} mha_param;

/* Number of floats of parameter p in this context; 0 when the configuration
 * does not use it, when p is out of range or ctx is NULL. */
MHA_API size_t mha_param_count(const mha_ctx *ctx, mha_param p);

/* Copies count floats from src into parameter p (count must equal
 * mha_param_count). src is only read during the call and may be freed after.
 * Statuses: MHA_OK, MHA_ERR_NULL_ARG, MHA_ERR_BAD_PARAM, MHA_ERR_PARAM_UNUSED,
 * MHA_ERR_COUNT_MISMATCH. */
MHA_API mha_status mha_set_param(mha_ctx *ctx, mha_param p, const float *src, size_t count);

/* Copies parameter p into dst (count must equal mha_param_count).
 * Statuses: as mha_set_param, plus MHA_ERR_PARAM_NOT_SET if it was never set. */
MHA_API mha_status mha_get_param(const mha_ctx *ctx, mha_param p, float *dst, size_t count);

typedef struct mha_attn_args {
    size_t struct_size;          /* set by mha_attn_args_init */
    size_t batch, seq_q, seq_kv;
    const float *query;          /* [batch, seq_q, d_model] */
    const float *key, *value;    /* [batch, seq_kv, d_model]; both NULL: self-attention,
                                    where seq_kv must be 0 or seq_q */
    const int32_t *kv_lengths;   /* [batch] or NULL: keys at j >= len[b] are masked;
                                    each 0 <= len[b] <= seq_kv */
    const float *attn_bias;      /* [seq_q, seq_kv] additive (-INFINITY allowed) or NULL;
                                    the same for every batch and head */
    int causal;                  /* 0 or 1; bottom-right aligned: key j is masked for
                                    query i when j > i + seq_kv - seq_q */
    float *out;                  /* [batch, seq_q, d_model] */
    float *attn_weights;         /* NULL, or [batch, n_heads, seq_q, seq_kv] probabilities */
} mha_attn_args;

/* Zeroes *a and sets struct_size. */
static inline void mha_attn_args_init(mha_attn_args *a)
{
    size_t i;
    for (i = 0; i < sizeof *a; i++)
        ((unsigned char *)a)[i] = 0;
    a->struct_size = MHA_STRUCT_SIZE(mha_attn_args, attn_weights);
}

/* Multi-head attention including the output projection:
 *   out = concat_h softmax(Q_h K_g^T / sqrt(dh) + bias + masks) V_g  WO^T + BO
 * with Q = query WQ^T + BQ, K = key WK^T + BK, V = value WV^T + BV (key =
 * value = query for self-attention). Uses WQ, WK, WV, WO (+ biases).
 * batch or seq_q of 0 is a valid empty call (nothing written). Cross-attention
 * with seq_kv 0 masks every row (out rows = BO).
 * Statuses: MHA_OK, MHA_ERR_NULL_ARG (ctx, a, query, out; key xor value),
 * MHA_ERR_STRUCT_SIZE, MHA_ERR_BAD_SHAPE, MHA_ERR_BAD_FLAG (causal),
 * MHA_ERR_BAD_KV_LENGTH, MHA_ERR_PARAM_NOT_SET, MHA_ERR_OVERFLOW,
 * MHA_ERR_ALIAS, MHA_ERR_NO_MEMORY (workspace). Extra memory is O(seq) per
 * (batch, head): scores are never materialised beyond one tile unless
 * attn_weights is requested. The workspace is kept in the context: repeated
 * calls with a shape already seen do not allocate. Calls with attn_weights or
 * attn_bias tile the scores query-major, the others key-major, so out can
 * differ between the two in the last bits (never with n_threads). */
MHA_API mha_status mha_attention_forward(mha_ctx *ctx, const mha_attn_args *a);

/* Feed-forward network on n_tokens rows: out = W2 act(W1 x + B1) + B2
 * (SwiGLU: W2 (silu(W1 x + B1) * (W3 x)) + B2). x, out: [n_tokens, d_model].
 * n_tokens 0 is a valid empty call.
 * Statuses: MHA_OK, MHA_ERR_NULL_ARG, MHA_ERR_PARAM_NOT_SET, MHA_ERR_OVERFLOW,
 * MHA_ERR_ALIAS, MHA_ERR_NO_MEMORY. */
MHA_API mha_status mha_ffn_forward(mha_ctx *ctx, float *out, const float *x, size_t n_tokens);

/* Encoder layer = PyTorch nn.TransformerEncoderLayer with dropout 0, on
 * x = a->query, writing y = a->out:
 *   post-norm (norm_first 0): h = LN1(x + MHA(x));  y = LN2(h + FFN(h))
 *   pre-norm  (norm_first 1): h = x + MHA(LN1(x));  y = h + FFN(LN2(h))
 * Self-attention only (key and value must be NULL: else MHA_ERR_UNSUPPORTED).
 * Masks and attn_weights as in mha_attention_forward. Uses every weight of
 * the configuration. Statuses: those of mha_attention_forward plus
 * MHA_ERR_UNSUPPORTED. */
MHA_API mha_status mha_layer_forward(mha_ctx *ctx, const mha_attn_args *a);

/* ---- Backward (since 1.1) ----------------------------------------------
 * Gradients of a loss L with respect to inputs and parameters, given
 * d_out = dL/d(out). The backward calls recompute what they need from their
 * inputs (they never reuse activations of an earlier forward call), so `a`
 * must carry the same inputs, masks and flags as the forward call it
 * differentiates; a->out and a->attn_weights are neither read nor written
 * and may be NULL.
 * Input gradients (d_query, d_key, d_value, d_x) are overwritten. Parameter
 * gradients accumulate in the context across backward calls until
 * mha_zero_grad; they start at zero. Outputs must not overlap inputs or each
 * other (MHA_ERR_ALIAS). Memory stays O(seq): attention is differentiated
 * tile by tile from the saved per-row log-sum-exp (FlashAttention's
 * backward). Results are bitwise identical for every n_threads.
 * A failed call changes neither the outputs nor the accumulated gradients. */
typedef struct mha_grad_args {
    size_t struct_size;     /* set by mha_grad_args_init */
    const float *d_out;     /* [batch, seq_q, d_model] */
    float *d_query;         /* [batch, seq_q, d_model]; for the layer: d_x */
    float *d_key, *d_value; /* cross-attention: [batch, seq_kv, d_model], both required;
                               self-attention and the layer: both NULL */
} mha_grad_args;

/* Zeroes *g and sets struct_size. */
static inline void mha_grad_args_init(mha_grad_args *g)
{
    size_t i;
    for (i = 0; i < sizeof *g; i++)
        ((unsigned char *)g)[i] = 0;
    g->struct_size = MHA_STRUCT_SIZE(mha_grad_args, d_value);
}

/* Backward of mha_attention_forward: writes d_query (and d_key, d_value
 * for cross-attention) and accumulates the gradients of WQ, WK, WV, WO and
 * their biases. Statuses: those of mha_attention_forward, plus
 * MHA_ERR_NULL_ARG (g, d_out, d_query; cross without d_key/d_value) and
 * MHA_ERR_BAD_SHAPE (d_key/d_value given for self-attention). */
MHA_API mha_status mha_attention_backward(mha_ctx *ctx, const mha_attn_args *a,
                                          const mha_grad_args *g);

/* Backward of mha_layer_forward (self-attention, both norm orders): writes
 * d_x = g->d_query and accumulates the gradients of every weight. Statuses:
 * those of mha_attention_backward plus MHA_ERR_UNSUPPORTED (cross). */
MHA_API mha_status mha_layer_backward(mha_ctx *ctx, const mha_attn_args *a,
                                      const mha_grad_args *g);

/* Backward of mha_ffn_forward on n_tokens rows of x: writes d_x and
 * accumulates the gradients of W1, B1, W2, B2 (and W3). x, d_x, d_out:
 * [n_tokens, d_model]. Statuses: those of mha_ffn_forward. */
MHA_API mha_status mha_ffn_backward(mha_ctx *ctx, float *d_x, const float *d_out, const float *x,
                                    size_t n_tokens);

/* Copies the accumulated gradient of parameter p into dst (count must equal
 * mha_param_count); zeros before any backward call. Statuses: MHA_OK,
 * MHA_ERR_NULL_ARG, MHA_ERR_BAD_PARAM, MHA_ERR_PARAM_UNUSED,
 * MHA_ERR_COUNT_MISMATCH. */
MHA_API mha_status mha_get_grad(const mha_ctx *ctx, mha_param p, float *dst, size_t count);

/* Sets every accumulated parameter gradient to zero. Statuses: MHA_OK,
 * MHA_ERR_NULL_ARG. */
MHA_API mha_status mha_zero_grad(mha_ctx *ctx);

/* ---- Loading weights (since 1.2) -------------------------------------- */

/* Tensor names of one encoder layer in a safetensors file. */
#define MHA_NAMING_TORCH 0 /* nn.TransformerEncoderLayer state dict: self_attn.in_proj_weight,
                              self_attn.in_proj_bias, self_attn.out_proj.{weight,bias},
                              linear1/linear2.{weight,bias}, norm1/norm2.{weight,bias} */
#define MHA_NAMING_BERT 1  /* Hugging Face BertLayer: attention.self.{query,key,value}.*,
                              attention.output.dense.*, attention.output.LayerNorm.*,
                              intermediate.dense.*, output.dense.*, output.LayerNorm.*
                              (LayerNorm gamma/beta accepted for weight/bias) */

/* Sets the layer's weights from the safetensors file at path, reading the
 * tensors named prefix + <name> (e.g. prefix "encoder.layer.3."; NULL means
 * ""). F32 tensors are copied; F16 and BF16 are converted exactly (subnormals,
 * infinities, NaN). Shapes must match the configuration exactly (a
 * transposed matrix is an error). The whole header is validated, not only
 * the tensors used: dtype, shape, data_offsets in range, spanning exactly
 * shape x dtype bytes and tiling the data without holes or overlaps; header
 * at most 100 MiB. Other tensors in the file are ignored. On any error no
 * weight changes. The file is mapped read-only during the call.
 * The naming schemes describe standard layers: they cannot fill SwiGLU,
 * GQA/MQA or d_head * n_heads != d_model (MHA_ERR_NAMING_MISMATCH), nor a
 * bias = 0 config from a file with biases (MHA_ERR_NAMING_MISMATCH); with
 * bias = 1 the biases must be present (MHA_ERR_TENSOR_MISSING).
 * Statuses: MHA_OK, MHA_ERR_NULL_ARG (ctx, path), MHA_ERR_BAD_NAMING,
 * MHA_ERR_NAMING_MISMATCH, MHA_ERR_IO, MHA_ERR_TRUNCATED, MHA_ERR_HEADER,
 * MHA_ERR_HEADER_TOO_LARGE, MHA_ERR_OFFSETS, MHA_ERR_DTYPE,
 * MHA_ERR_TENSOR_MISSING, MHA_ERR_TENSOR_SHAPE, MHA_ERR_NO_MEMORY. */
MHA_API mha_status mha_load_safetensors(mha_ctx *ctx, const char *path, const char *prefix,
                                        int naming);

#ifdef __cplusplus
}
#endif

#endif /* MHA_H */
