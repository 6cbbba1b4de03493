/* train_toy - train a tiny transformer built from libmha layers, in C.
 *
 * Task (needs attention): a sequence of SEQ random letters contains one
 * marker '>' somewhere; the model must output, at the last position, the
 * letter that follows the marker. Nothing but attention can move that letter
 * to the last position.
 *
 * Model: token + position embeddings -> N_LAYERS libmha encoder layers
 * (pre-norm, GELU) -> linear readout of the last position -> softmax. The
 * embeddings, readout, cross-entropy and Adam live here; the layers'
 * forward and backward are libmha's (mha_layer_forward / _backward,
 * mha_get_grad, mha_set_param).
 *
 *   train_toy [STEPS] [OUT_DIR]     (defaults: 1500, .)
 *
 * Prints the loss as it falls and the final accuracy on fresh sequences, and
 * writes OUT_DIR/attention_layer<L>_head<H>.svg: each head's attention map
 * for one input (rows = queries, columns = keys, tokens on the axes) and
 * OUT_DIR/loss.svg, the loss curve. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mha.h>

enum { VOCAB = 9, MARKER = 8, SEQ = 12, D = 32, HEADS = 4, FF = 64, N_LAYERS = 2, BATCH = 32 };

static uint64_t rng = 88172645463325252ull;
static double urand(void) /* [0, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-12)) * cos(6.283185307 * urand()); }

/* One sample: tokens[SEQ] and the answer. */
static int make_sample(int *tok)
{
    for (int i = 0; i < SEQ; i++)
        tok[i] = (int)(urand() * 8);
    int p = (int)(urand() * (SEQ - 2)); /* marker not at the last two positions */
    tok[p] = MARKER;
    return tok[p + 1];
}

/* A parameter tensor with its Adam state. */
typedef struct tensor {
    float *w, *g, *m, *v;
    size_t n;
} tensor;

static void tensor_init(tensor *t, size_t n, double scale)
{
    t->n = n;
    t->w = malloc(n * sizeof(float));
    t->g = calloc(n, sizeof(float));
    t->m = calloc(n, sizeof(float));
    t->v = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++)
        t->w[i] = (float)(nrand() * scale);
}

static void tensor_free(tensor *t)
{
    free(t->w);
    free(t->g);
    free(t->m);
    free(t->v);
}

static void adam(tensor *t, int step, float lr)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
    for (size_t i = 0; i < t->n; i++) {
        t->m[i] = b1 * t->m[i] + (1 - b1) * t->g[i];
        t->v[i] = b2 * t->v[i] + (1 - b2) * t->g[i] * t->g[i];
        t->w[i] -= lr * (t->m[i] / c1) / (sqrtf(t->v[i] / c2) + eps);
        t->g[i] = 0.0f;
    }
}

static void check(mha_status st, const char *what)
{
    if (st != MHA_OK) {
        fprintf(stderr, "%s: %s\n", what, mha_strerror(st));
        exit(1);
    }
}

typedef struct model {
    mha_ctx *layer[N_LAYERS];
    tensor lw[N_LAYERS][MHA_PARAM_COUNT]; /* the layers' weights, mirrored for Adam */
    tensor emb, pos, out_w, out_b;
} model;

static void model_init(model *m)
{
    mha_config cfg;
    mha_config_init(&cfg);
    cfg.d_model = D;
    cfg.n_heads = HEADS;
    cfg.d_ff = FF;
    cfg.activation = MHA_ACT_GELU;
    cfg.norm_first = 1;
    cfg.n_threads = 0;
    for (int l = 0; l < N_LAYERS; l++) {
        check(mha_create(&cfg, &m->layer[l]), "mha_create");
        for (int p = 0; p < MHA_PARAM_COUNT; p++) {
            size_t n = mha_param_count(m->layer[l], (mha_param)p);
            if (!n)
                continue;
            int is_w = p == MHA_PARAM_WQ || p == MHA_PARAM_WK || p == MHA_PARAM_WV ||
                       p == MHA_PARAM_WO || p == MHA_PARAM_W1 || p == MHA_PARAM_W2;
            size_t fan_in = p == MHA_PARAM_W2 ? FF : D;
            tensor_init(&m->lw[l][p], n, is_w ? 1.0 / sqrt((double)fan_in) : 0.0);
            if (p == MHA_PARAM_LN1_WEIGHT || p == MHA_PARAM_LN2_WEIGHT)
                for (size_t i = 0; i < n; i++)
                    m->lw[l][p].w[i] = 1.0f;
            check(mha_set_param(m->layer[l], (mha_param)p, m->lw[l][p].w, n), "set_param");
        }
    }
    tensor_init(&m->emb, VOCAB * D, 1.0);
    tensor_init(&m->pos, SEQ * D, 0.5);
    tensor_init(&m->out_w, VOCAB * D, 1.0 / sqrt(D));
    tensor_init(&m->out_b, VOCAB, 0.0);
}

static void model_free(model *m)
{
    for (int l = 0; l < N_LAYERS; l++) {
        mha_destroy(m->layer[l]);
        for (int p = 0; p < MHA_PARAM_COUNT; p++)
            if (m->lw[l][p].n)
                tensor_free(&m->lw[l][p]);
    }
    tensor_free(&m->emb);
    tensor_free(&m->pos);
    tensor_free(&m->out_w);
    tensor_free(&m->out_b);
}

/* Forward of a batch; keeps every layer's input (acts[l], [B, SEQ, D]) for
 * the backward; returns the mean loss, fills logits [B, VOCAB]. */
static float forward(model *m, const int *tok, const int *ans, int B, float **acts, float *logits)
{
    for (int b = 0; b < B; b++)
        for (int i = 0; i < SEQ; i++)
            for (int d = 0; d < D; d++)
                acts[0][(b * SEQ + i) * D + d] =
                    m->emb.w[tok[b * SEQ + i] * D + d] + m->pos.w[i * D + d];
    for (int l = 0; l < N_LAYERS; l++) {
        mha_attn_args a;
        mha_attn_args_init(&a);
        a.batch = (size_t)B;
        a.seq_q = SEQ;
        a.query = acts[l];
        a.out = acts[l + 1];
        check(mha_layer_forward(m->layer[l], &a), "layer forward");
    }
    float loss = 0;
    for (int b = 0; b < B; b++) {
        const float *h = acts[N_LAYERS] + (b * SEQ + SEQ - 1) * D; /* last position */
        float mx = -INFINITY, sum = 0;
        for (int v = 0; v < VOCAB; v++) {
            float z = m->out_b.w[v];
            for (int d = 0; d < D; d++)
                z += m->out_w.w[v * D + d] * h[d];
            logits[b * VOCAB + v] = z;
            mx = fmaxf(mx, z);
        }
        for (int v = 0; v < VOCAB; v++)
            sum += expf(logits[b * VOCAB + v] - mx);
        if (ans)
            loss += -(logits[b * VOCAB + ans[b]] - mx - logf(sum));
    }
    return loss / (float)B;
}

static void train_step(model *m, const int *tok, const int *ans, float **acts, float *logits,
                       float *dh, float *dx, int step, float lr)
{
    const int B = BATCH;
    float loss = forward(m, tok, ans, B, acts, logits);
    (void)loss;
    /* softmax cross-entropy on the last position */
    memset(dh, 0, sizeof(float) * B * SEQ * D);
    for (int b = 0; b < B; b++) {
        float mx = -INFINITY, sum = 0, p[VOCAB];
        for (int v = 0; v < VOCAB; v++)
            mx = fmaxf(mx, logits[b * VOCAB + v]);
        for (int v = 0; v < VOCAB; v++)
            sum += p[v] = expf(logits[b * VOCAB + v] - mx);
        const float *h = acts[N_LAYERS] + (b * SEQ + SEQ - 1) * D;
        float *g = dh + (b * SEQ + SEQ - 1) * D;
        for (int v = 0; v < VOCAB; v++) {
            float dz = (p[v] / sum - (v == ans[b])) / (float)B;
            m->out_b.g[v] += dz;
            for (int d = 0; d < D; d++) {
                m->out_w.g[v * D + d] += dz * h[d];
                g[d] += dz * m->out_w.w[v * D + d];
            }
        }
    }
    /* through the layers, last first */
    for (int l = N_LAYERS - 1; l >= 0; l--) {
        mha_attn_args a;
        mha_attn_args_init(&a);
        a.batch = (size_t)B;
        a.seq_q = SEQ;
        a.query = acts[l];
        mha_grad_args g;
        mha_grad_args_init(&g);
        g.d_out = dh;
        g.d_query = dx;
        check(mha_zero_grad(m->layer[l]), "zero_grad");
        check(mha_layer_backward(m->layer[l], &a, &g), "layer backward");
        memcpy(dh, dx, sizeof(float) * B * SEQ * D);
    }
    for (int b = 0; b < B; b++)
        for (int i = 0; i < SEQ; i++)
            for (int d = 0; d < D; d++) {
                float gd = dh[(b * SEQ + i) * D + d];
                m->emb.g[tok[b * SEQ + i] * D + d] += gd;
                m->pos.g[i * D + d] += gd;
            }
    /* Adam on everything; the layers' weights go back through set_param */
    for (int l = 0; l < N_LAYERS; l++)
        for (int p = 0; p < MHA_PARAM_COUNT; p++) {
            tensor *t = &m->lw[l][p];
            if (!t->n)
                continue;
            check(mha_get_grad(m->layer[l], (mha_param)p, t->g, t->n), "get_grad");
            adam(t, step, lr);
            check(mha_set_param(m->layer[l], (mha_param)p, t->w, t->n), "set_param");
        }
    adam(&m->emb, step, lr);
    adam(&m->pos, step, lr);
    adam(&m->out_w, step, lr);
    adam(&m->out_b, step, lr);
}

static const char *label(int t)
{
    static const char *l[VOCAB] = {"a", "b", "c", "d", "e", "f", "g", "h", "&gt;"};
    return l[t];
}

/* Attention map of one head as an SVG heatmap. */
static void write_heatmap(const char *path, const float *w, const int *tok, int layer, int head)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    const int cell = 26, left = 40, top = 50, size = cell * SEQ;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
               "font-family='monospace' font-size='13'>\n", left + size + 10, top + size + 10);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
    fprintf(f, "<text x='%d' y='16'>layer %d, head %d (rows: queries, cols: keys)</text>\n", 4,
            layer, head);
    for (int i = 0; i < SEQ; i++) {
        fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>%s</text>\n",
                left + i * cell + cell / 2, top - 8, label(tok[i]));
        fprintf(f, "<text x='%d' y='%d' text-anchor='end'>%s</text>\n", left - 6,
                top + i * cell + cell / 2 + 4, label(tok[i]));
        for (int j = 0; j < SEQ; j++) {
            int shade = 255 - (int)lroundf(fminf(1.0f, w[i * SEQ + j]) * 255.0f);
            fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='rgb(%d,%d,255)'>"
                       "<title>%.3f</title></rect>\n",
                    left + j * cell, top + i * cell, cell - 1, cell - 1, shade, shade,
                    w[i * SEQ + j]);
        }
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

static void write_loss_curve(const char *path, const float *loss, int n)
{
    FILE *f = fopen(path, "w");
    if (!f || n < 2) {
        if (f)
            fclose(f);
        return;
    }
    const int W = 480, Hh = 240, pad = 40;
    float mx = 0;
    for (int i = 0; i < n; i++)
        mx = fmaxf(mx, loss[i]);
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
               "font-family='sans-serif' font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n",
            W + 2 * pad, Hh + 2 * pad);
    fprintf(f, "<text x='%d' y='20'>training loss (cross-entropy), %d steps</text>\n", pad, n * 10);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", pad, pad + Hh, pad + W, pad + Hh);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", pad, pad, pad, pad + Hh);
    fprintf(f, "<text x='4' y='%d'>%.1f</text><text x='4' y='%d'>0</text>\n", pad + 4, mx, pad + Hh);
    fprintf(f, "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='");
    for (int i = 0; i < n; i++)
        fprintf(f, "%.1f,%.1f ", pad + (double)i * W / (n - 1), pad + Hh - (double)loss[i] / mx * Hh);
    fprintf(f, "'/>\n</svg>\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 1500;
    const char *dir = argc > 2 ? argv[2] : ".";
    static model m; /* zeroed: unused parameters keep n = 0 */
    model_init(&m);
    float *acts[N_LAYERS + 1];
    for (int l = 0; l <= N_LAYERS; l++)
        acts[l] = malloc(sizeof(float) * BATCH * SEQ * D);
    float *dh = malloc(sizeof(float) * BATCH * SEQ * D), *dx = malloc(sizeof(float) * BATCH * SEQ * D);
    float logits[BATCH * VOCAB], *curve = malloc(sizeof(float) * (size_t)(steps / 10 + 1));
    int tok[BATCH * SEQ], ans[BATCH], n_curve = 0;
    float running = 0;
    printf("task: the letter after '>' in %d random letters; %d layers, d_model %d, %d heads\n",
           SEQ, N_LAYERS, D, HEADS);
    for (int step = 1; step <= steps; step++) {
        for (int b = 0; b < BATCH; b++)
            ans[b] = make_sample(tok + b * SEQ);
        float lr = step < 100 ? 3e-3f * step / 100 : 3e-3f;
        float loss = forward(&m, tok, ans, BATCH, acts, logits);
        running = step == 1 ? loss : 0.98f * running + 0.02f * loss;
        train_step(&m, tok, ans, acts, logits, dh, dx, step, lr);
        if (step % 10 == 0)
            curve[n_curve++] = loss;
        if (step % 100 == 0 || step == 1)
            printf("step %5d  loss %.4f\n", step, running);
    }
    /* accuracy on fresh sequences */
    int correct = 0, total = 0;
    for (int r = 0; r < 2000 / BATCH; r++) {
        for (int b = 0; b < BATCH; b++)
            ans[b] = make_sample(tok + b * SEQ);
        forward(&m, tok, NULL, BATCH, acts, logits);
        for (int b = 0; b < BATCH; b++) {
            int best = 0;
            for (int v = 1; v < VOCAB; v++)
                if (logits[b * VOCAB + v] > logits[b * VOCAB + best])
                    best = v;
            correct += best == ans[b];
            total++;
        }
    }
    printf("accuracy on %d fresh sequences: %.1f%% (chance: 12.5%%)\n", total,
           100.0 * correct / total);

    /* each head's attention map for one input */
    int one[SEQ];
    make_sample(one);
    for (int i = 0; i < SEQ; i++)
        for (int d = 0; d < D; d++)
            acts[0][i * D + d] = m.emb.w[one[i] * D + d] + m.pos.w[i * D + d];
    float weights[HEADS * SEQ * SEQ];
    char path[512];
    for (int l = 0; l < N_LAYERS; l++) {
        mha_attn_args a;
        mha_attn_args_init(&a);
        a.batch = 1;
        a.seq_q = SEQ;
        a.query = acts[l];
        a.out = acts[l + 1];
        a.attn_weights = weights;
        check(mha_layer_forward(m.layer[l], &a), "layer forward");
        for (int h = 0; h < HEADS; h++) {
            snprintf(path, sizeof path, "%s/attention_layer%d_head%d.svg", dir, l, h);
            write_heatmap(path, weights + h * SEQ * SEQ, one, l, h);
        }
    }
    snprintf(path, sizeof path, "%s/loss.svg", dir);
    write_loss_curve(path, curve, n_curve);
    printf("wrote %s/attention_layer*_head*.svg and %s/loss.svg\n", dir, dir);
    for (int l = 0; l <= N_LAYERS; l++)
        free(acts[l]);
    free(dh);
    free(dx);
    free(curve);
    model_free(&m);
    return correct * 10 >= total * 9 ? 0 : 3; /* fails below 90% */
}
