"""libmha through the Python binding against PyTorch (forward and autograd)."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn

import libmha

torch.manual_seed(0)
RNG = np.random.default_rng(0)


def close(a, b, tol, what=""):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = np.max(np.abs(a - b)) if a.size else 0.0
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol}"


def grad_close(got, ref, what):
    """Gradients: max error relative to the tensor's largest entry, <= 1e-3."""
    got, ref = np.asarray(got, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    scale = max(np.max(np.abs(ref)), 1e-2)
    err = np.max(np.abs(got - ref))
    assert err <= 1e-3 * scale, f"{what}: error {err:.3g}, scale {scale:.3g}"


def masks_for(B, Sq, Skv, lengths, causal, bias):
    """PyTorch's key_padding_mask and float attn_mask for libmha's arguments."""
    kpm = None
    if lengths is not None:
        kpm = torch.arange(Skv)[None, :] >= torch.tensor(lengths)[:, None]
    am = None
    if causal or bias is not None:
        am = torch.zeros(Sq, Skv)
        if bias is not None:
            am = am + torch.from_numpy(bias)
        if causal:
            i = torch.arange(Sq)[:, None]
            j = torch.arange(Skv)[None, :]
            am = am.masked_fill(j > i + Skv - Sq, float("-inf"))
    return kpm, am


MHA_CASES = [
    # B, Sq, Skv (None: self), D, H, lengths, causal, bias
    (2, 5, None, 16, 4, None, False, False),
    (1, 1, None, 12, 3, None, False, False),
    (3, 7, None, 24, 2, [7, 3, 1], False, False),
    (2, 6, None, 20, 5, None, True, False),
    (2, 6, None, 16, 2, [6, 4], True, True),
    (2, 4, 9, 16, 4, None, False, False),
    (2, 5, 8, 16, 4, [8, 2], True, False),
    (1, 70, 300, 32, 4, [300], False, True),
    (2, 130, None, 32, 2, [130, 90], True, False),
]


def check_mha(B, Sq, Skv, D, H, lengths, causal, use_bias, n_threads, rng, nan_skips=False):
    """nn.MultiheadAttention vs libmha on one case: output, attention weights,
    the tiled path against the weights path, every gradient. Skv None: self.
    nan_skips: a case where PyTorch gives NaN (a fully masked row; libmha's
    zeros are tested on their own) is skipped instead of failing."""
    cross = Skv is not None
    Skv = Skv or Sq
    tm = nn.MultiheadAttention(D, H, batch_first=True)
    with torch.no_grad():
        tm.in_proj_bias.uniform_(-0.3, 0.3)
        tm.out_proj.bias.uniform_(-0.3, 0.3)
    lm = libmha.from_torch(tm, n_threads=n_threads)
    q = rng.standard_normal((B, Sq, D)).astype(np.float32)
    k = rng.standard_normal((B, Skv, D)).astype(np.float32) if cross else q
    v = rng.standard_normal((B, Skv, D)).astype(np.float32) if cross else q
    bias = rng.standard_normal((Sq, Skv)).astype(np.float32) if use_bias else None
    kpm, am = masks_for(B, Sq, Skv, lengths, causal, bias)

    tq = torch.tensor(q, requires_grad=True)
    tk = torch.tensor(k, requires_grad=True) if cross else tq
    tv = torch.tensor(v, requires_grad=True) if cross else tq
    ty, tw = tm(tq, tk, tv, key_padding_mask=kpm, attn_mask=am, need_weights=True,
                average_attn_weights=False)
    if nan_skips and torch.isnan(ty).any():
        pytest.skip("a fully masked row: PyTorch gives NaN")
    dy = rng.standard_normal(ty.shape).astype(np.float32)
    (ty * torch.from_numpy(dy)).sum().backward()

    kw = dict(kv_lengths=lengths, attn_bias=bias, causal=causal)
    kv = (k, v) if cross else (None, None)
    y, w = lm.forward(q, *kv, need_weights=True, **kw)
    close(y, ty.detach().numpy(), 1e-4, "out")
    close(w, tw.detach().numpy(), 1e-4, "attn weights")
    close(lm.forward(q, *kv, **kw), y, 1e-5, "out, tiled path vs weights path")

    grads = lm.backward(dy, q, *kv, **kw)
    if cross:
        grad_close(grads[0], tq.grad, "d_query")
        grad_close(grads[1], tk.grad, "d_key")
        grad_close(grads[2], tv.grad, "d_value")
    else:
        grad_close(grads, tq.grad, "d_query")
    gw = tm.in_proj_weight.grad.numpy()
    gb = tm.in_proj_bias.grad.numpy()
    for i, n in enumerate(["q", "k", "v"]):
        grad_close(lm.grad("w" + n), gw[i * D:(i + 1) * D], "w" + n)
        grad_close(lm.grad("b" + n), gb[i * D:(i + 1) * D], "b" + n)
    grad_close(lm.grad("wo"), tm.out_proj.weight.grad, "wo")
    grad_close(lm.grad("bo"), tm.out_proj.bias.grad, "bo")


@pytest.mark.parametrize("B,Sq,Skv,D,H,lengths,causal,use_bias", MHA_CASES)
def test_mha_matches_torch(B, Sq, Skv, D, H, lengths, causal, use_bias):
    check_mha(B, Sq, Skv, D, H, lengths, causal, use_bias, 2, RNG)


ACTS = {"relu": "relu", "gelu": "gelu", "gelu_tanh": nn.GELU(approximate="tanh")}


def check_layer(B, S, D, H, F, act, norm_first, lengths, causal, n_threads, rng,
                nan_skips=False):
    """nn.TransformerEncoderLayer vs libmha on one case: output, d_x and every
    parameter gradient (nan_skips as in check_mha)."""
    tl = nn.TransformerEncoderLayer(D, H, F, dropout=0.0, activation=ACTS[act],
                                    batch_first=True, norm_first=norm_first)
    with torch.no_grad():
        for p in (tl.norm1.weight, tl.norm2.weight):
            p.uniform_(0.7, 1.3)
        for p in (tl.norm1.bias, tl.norm2.bias, tl.self_attn.in_proj_bias, tl.linear1.bias):
            p.uniform_(-0.2, 0.2)
    tl.eval()
    ll = libmha.from_torch(tl, n_threads=n_threads)
    assert ll.config.activation == libmha.ACTIVATIONS[act]
    x = rng.standard_normal((B, S, D)).astype(np.float32)
    kpm, am = masks_for(B, S, S, lengths, causal, None)
    tx = torch.tensor(x, requires_grad=True)  # grad enabled: PyTorch's reference path
    ty = tl(tx, src_mask=am, src_key_padding_mask=kpm)
    if nan_skips and torch.isnan(ty).any():
        pytest.skip("a fully masked row: PyTorch gives NaN")
    dy = rng.standard_normal(ty.shape).astype(np.float32)
    (ty * torch.from_numpy(dy)).sum().backward()

    y = ll.forward(x, kv_lengths=lengths, causal=causal)
    close(y, ty.detach().numpy(), 1e-4, "layer out")
    dx = ll.backward(dy, x, kv_lengths=lengths, causal=causal)
    grad_close(dx, tx.grad, "d_x")
    sa = tl.self_attn
    gw, gb = sa.in_proj_weight.grad.numpy(), sa.in_proj_bias.grad.numpy()
    for i, n in enumerate(["q", "k", "v"]):
        grad_close(ll.grad("w" + n), gw[i * D:(i + 1) * D], "w" + n)
        grad_close(ll.grad("b" + n), gb[i * D:(i + 1) * D], "b" + n)
    for name, p in [("wo", sa.out_proj.weight), ("bo", sa.out_proj.bias),
                    ("w1", tl.linear1.weight), ("b1", tl.linear1.bias),
                    ("w2", tl.linear2.weight), ("b2", tl.linear2.bias),
                    ("ln1_weight", tl.norm1.weight), ("ln1_bias", tl.norm1.bias),
                    ("ln2_weight", tl.norm2.weight), ("ln2_bias", tl.norm2.bias)]:
        grad_close(ll.grad(name), p.grad, name)


@pytest.mark.parametrize("act,norm_first,shape", list(itertools.product(
    ["relu", "gelu", "gelu_tanh"], [False, True], [(2, 7, None), (3, 5, [5, 2, 1])])))
def test_encoder_layer_matches_torch(act, norm_first, shape):
    B, S, lengths = shape
    check_layer(B, S, 24, 4, 40, act, norm_first, lengths, lengths is not None, 1, RNG)


def test_ffn_swiglu_matches_numpy():
    D, F, N = 10, 14, 6
    ffn = libmha.FFN(d_model=D, d_ff=F, activation="swiglu")
    w = {n: RNG.standard_normal(ffn.param_count(n)).astype(np.float32) * 0.3
         for n in ["w1", "b1", "w2", "b2", "w3"]}
    ffn.load_state_dict(w)
    x = RNG.standard_normal((N, D)).astype(np.float32)
    u = x @ w["w1"].reshape(F, D).T + w["b1"]
    g = x @ w["w3"].reshape(F, D).T
    ref = (u / (1 + np.exp(-u)) * g) @ w["w2"].reshape(D, F).T + w["b2"]
    close(ffn.forward(x), ref, 1e-4, "swiglu")
    tx = torch.tensor(x, requires_grad=True)
    tw = {n: torch.tensor(v, requires_grad=True) for n, v in w.items()}
    tu = tx @ tw["w1"].view(F, D).T + tw["b1"]
    ty = (torch.nn.functional.silu(tu) * (tx @ tw["w3"].view(F, D).T)) @ tw["w2"].view(D, F).T + tw["b2"]
    dy = RNG.standard_normal(ty.shape).astype(np.float32)
    (ty * torch.from_numpy(dy)).sum().backward()
    grad_close(ffn.backward(dy, x), tx.grad, "d_x")
    for n in w:
        grad_close(ffn.grad(n), tw[n].grad, n)


def test_state_dict_roundtrip_and_zero_grad():
    tl = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    ll = libmha.from_torch(tl)
    sd = ll.state_dict()
    assert set(sd) == {"wq", "wk", "wv", "wo", "bq", "bk", "bv", "bo", "w1", "b1", "w2", "b2",
                       "ln1_weight", "ln1_bias", "ln2_weight", "ln2_bias"}
    np.testing.assert_array_equal(sd["w1"], tl.linear1.weight.detach().numpy().ravel())
    other = libmha.EncoderLayer(libmha.Config(16, 2, d_ff=32))
    other.load_state_dict(sd)
    x = RNG.standard_normal((1, 3, 16)).astype(np.float32)
    np.testing.assert_array_equal(other.forward(x), ll.forward(x))
    assert not other.grad("w1").any()
    other.backward(np.ones((1, 3, 16), np.float32), x)
    assert other.grad("w1").any()
    other.zero_grad()
    assert not other.grad("w1").any()


def test_fully_masked_rows_are_zero_not_nan():
    m = libmha.MultiHeadAttention(d_model=8, n_heads=2)
    m.load_state_dict({n: np.full(m.param_count(n), 0.1, np.float32) for n in m.param_names()})
    x = RNG.standard_normal((2, 3, 8)).astype(np.float32)
    y, w = m.forward(x, kv_lengths=[0, 3], need_weights=True)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y[0], np.full((3, 8), 0.1), atol=1e-6)  # b_o
    assert not w[0].any()


def test_errors_carry_strerror():
    m = libmha.MultiHeadAttention(d_model=8, n_heads=2)
    x = np.zeros((1, 2, 8), np.float32)
    with pytest.raises(libmha.MhaError) as e:
        m.forward(x)
    assert e.value.status == 11 and "has not been set" in str(e.value)
    with pytest.raises(libmha.MhaError) as e:
        m.set_param("wq", np.zeros(3))
    assert e.value.status == 10 and "count" in str(e.value)
    with pytest.raises(libmha.MhaError) as e:
        m.set_param("w3", np.zeros(3))
    assert e.value.status == 9
    with pytest.raises(libmha.MhaError) as e:
        libmha.MultiHeadAttention(d_model=10, n_heads=3)
    assert e.value.status == 3 and "mha_create" in str(e.value)
    with pytest.raises(libmha.MhaError):
        libmha.Config(8, 2, ln_eps=-1.0)._c() and libmha.EncoderLayer(libmha.Config(8, 2, ln_eps=-1.0))
    with pytest.raises(KeyError):
        m.get_param("nope")
    with pytest.raises(ValueError):
        m.forward(np.zeros((1, 2, 7), np.float32))
    with pytest.raises(ValueError):
        libmha.Config(8, 2, activation="tanh")
    m.load_state_dict({n: np.zeros(m.param_count(n), np.float32) for n in m.param_names()})
    with pytest.raises(libmha.MhaError) as e:
        m.forward(x, kv_lengths=[5])
    assert e.value.status == 13


def test_version_and_path():
    assert libmha.version()[:2] >= libmha.WRITTEN_FOR
    assert libmha.library_path


# Random shapes (seeded per case): multi-block attention tiles (seq_q and
# seq_kv up to 600 > the 512 x 512 forward tile, > the 128 x 128 backward
# tile), odd widths,
# masks in every combination, 1-4 threads (no GQA: PyTorch 1.13 has none).
def random_heads(rng):
    D = int(rng.choice([16, 24, 32, 64, 96]))
    return D, int(rng.choice([h for h in (1, 2, 3, 4, 8) if D % h == 0]))


@pytest.mark.parametrize("case", range(40))
def test_random_mha_matches_torch(case):
    rng = np.random.default_rng(1000 + case)
    torch.manual_seed(1000 + case)
    B, Sq = int(rng.integers(1, 4)), int(rng.integers(1, 600))
    Skv = int(rng.integers(1, 600)) if rng.integers(0, 2) else None
    D, H = random_heads(rng)
    lengths = ([int(rng.integers(1, (Skv or Sq) + 1)) for _ in range(B)]
               if rng.integers(0, 2) else None)
    causal, use_bias = bool(rng.integers(0, 2)), bool(rng.integers(0, 3) == 0)
    check_mha(B, Sq, Skv, D, H, lengths, causal, use_bias, int(rng.integers(1, 5)), rng,
              nan_skips=True)


@pytest.mark.parametrize("case", range(20))
def test_random_layer_matches_torch(case):
    rng = np.random.default_rng(2000 + case)
    torch.manual_seed(2000 + case)
    B, S = int(rng.integers(1, 4)), int(rng.integers(1, 300))
    D, H = random_heads(rng)
    F, act = D * int(rng.integers(1, 5)), str(rng.choice(["relu", "gelu", "gelu_tanh"]))
    lengths = [int(rng.integers(1, S + 1)) for _ in range(B)] if rng.integers(0, 2) else None
    check_layer(B, S, D, H, F, act, bool(rng.integers(0, 2)), lengths,
                bool(rng.integers(0, 2)), int(rng.integers(1, 5)), rng, nan_skips=True)
