"""libmha: transformer multi-head attention, FFN and encoder layer on the CPU.

A pure-Python (ctypes + numpy) binding of libmha.so. Arrays are float32,
row-major, batch first: [batch, seq, d_model]. Weights use the nn.Linear
layout [out_features, in_features], so PyTorch state dicts copy over
unchanged (see from_torch).

    import numpy as np, libmha
    layer = libmha.EncoderLayer(d_model=64, n_heads=4, activation="gelu")
    layer.load_state_dict({...})            # or libmha.from_torch(torch_layer)
    y = layer.forward(np.random.rand(2, 10, 64).astype(np.float32), causal=True)
    dx = layer.backward(np.ones_like(y), x)  # gradients: layer.grad("w1")

The library is found through $LIBMHA_PATH (the file or its directory), then
the build tree next to this package (../../build), then the system loader.
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["Config", "MultiHeadAttention", "FFN", "EncoderLayer", "MhaError", "from_torch",
           "PARAM_NAMES", "ACTIVATIONS", "version", "library_path"]

#: The libmha version this binding was written for (major must match, minor >=).
WRITTEN_FOR = (1, 1)

PARAM_NAMES = ["wq", "wk", "wv", "wo", "bq", "bk", "bv", "bo", "w1", "b1", "w2", "b2", "w3",
               "ln1_weight", "ln1_bias", "ln2_weight", "ln2_bias"]
ACTIVATIONS = {"relu": 0, "gelu": 1, "gelu_tanh": 2, "swiglu": 3}


class MhaError(RuntimeError):
    """A libmha call failed; .status is the mha_status, str() its message."""

    def __init__(self, status, message, call):
        super().__init__(f"{call}: {message} (status {status})")
        self.status = status
        self.message = message


class _Config(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("d_model", ctypes.c_size_t),
                ("n_heads", ctypes.c_size_t), ("n_kv_heads", ctypes.c_size_t),
                ("d_head", ctypes.c_size_t), ("d_ff", ctypes.c_size_t),
                ("activation", ctypes.c_int), ("norm_first", ctypes.c_int),
                ("bias", ctypes.c_int), ("ln_eps", ctypes.c_float), ("n_threads", ctypes.c_int)]


_fp = ctypes.POINTER(ctypes.c_float)


class _AttnArgs(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("batch", ctypes.c_size_t),
                ("seq_q", ctypes.c_size_t), ("seq_kv", ctypes.c_size_t),
                ("query", _fp), ("key", _fp), ("value", _fp),
                ("kv_lengths", ctypes.POINTER(ctypes.c_int32)), ("attn_bias", _fp),
                ("causal", ctypes.c_int), ("out", _fp), ("attn_weights", _fp)]


class _GradArgs(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("d_out", _fp), ("d_query", _fp),
                ("d_key", _fp), ("d_value", _fp)]


def _struct_size(cls, last):
    f = getattr(cls, last)
    return f.offset + f.size


def _candidates():
    env = os.environ.get("LIBMHA_PATH")
    if env:
        yield os.path.join(env, "libmha.so") if os.path.isdir(env) else env
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.normpath(os.path.join(here, "..", "..", "build", "libmha.so"))
    found = ctypes.util.find_library("mha")
    if found:
        yield found
    yield "libmha.so.1"


def _load():
    errors = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            errors.append(f"{path}: not found")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("libmha.so not found; set LIBMHA_PATH. Tried:\n  " + "\n  ".join(errors))


_lib, library_path = _load()
_lib.mha_version.restype = ctypes.c_uint
_lib.mha_version_string.restype = ctypes.c_char_p
_lib.mha_strerror.restype = ctypes.c_char_p
_lib.mha_strerror.argtypes = [ctypes.c_int]
_lib.mha_create.argtypes = [ctypes.POINTER(_Config), ctypes.POINTER(ctypes.c_void_p)]
_lib.mha_destroy.argtypes = [ctypes.c_void_p]
_lib.mha_destroy.restype = None
_lib.mha_param_count.argtypes = [ctypes.c_void_p, ctypes.c_int]
_lib.mha_param_count.restype = ctypes.c_size_t
for _name in ("mha_set_param", "mha_get_param", "mha_get_grad"):
    getattr(_lib, _name).argtypes = [ctypes.c_void_p, ctypes.c_int, _fp, ctypes.c_size_t]
_lib.mha_attention_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(_AttnArgs)]
_lib.mha_layer_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(_AttnArgs)]
_lib.mha_ffn_forward.argtypes = [ctypes.c_void_p, _fp, _fp, ctypes.c_size_t]
_lib.mha_zero_grad.argtypes = [ctypes.c_void_p]


def version():
    """(major, minor, patch) of the loaded library."""
    v = _lib.mha_version()
    return v // 10000, v // 100 % 100, v % 100


_v = version()
if _v[0] != WRITTEN_FOR[0] or _v[1] < WRITTEN_FOR[1]:
    raise ImportError(f"{library_path} is libmha {'.'.join(map(str, _v))}; this binding "
                      f"needs {WRITTEN_FOR[0]}.x with x >= {WRITTEN_FOR[1]}")
_lib.mha_attention_backward.argtypes = [ctypes.c_void_p, ctypes.POINTER(_AttnArgs),
                                        ctypes.POINTER(_GradArgs)]
_lib.mha_layer_backward.argtypes = [ctypes.c_void_p, ctypes.POINTER(_AttnArgs),
                                    ctypes.POINTER(_GradArgs)]
_lib.mha_ffn_backward.argtypes = [ctypes.c_void_p, _fp, _fp, _fp, ctypes.c_size_t]
_lib.mha_load_safetensors.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]

NAMING = {"torch": 0, "bert": 1}


def _check(status, call):
    if status != 0:
        raise MhaError(status, _lib.mha_strerror(status).decode(), call)


def _f32(a, name):
    if a is None:
        return None
    a = np.ascontiguousarray(a, dtype=np.float32)
    return a


def _ptr(a):
    return None if a is None else a.ctypes.data_as(_fp)


class Config:
    """The mha_config fields, with libmha's defaults."""

    def __init__(self, d_model, n_heads, n_kv_heads=0, d_head=0, d_ff=0, activation="relu",
                 norm_first=False, bias=True, ln_eps=1e-5, n_threads=0):
        if isinstance(activation, str):
            if activation not in ACTIVATIONS:
                raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
            activation = ACTIVATIONS[activation]
        self.d_model, self.n_heads, self.n_kv_heads = d_model, n_heads, n_kv_heads
        self.d_head, self.d_ff, self.activation = d_head, d_ff, activation
        self.norm_first, self.bias, self.ln_eps, self.n_threads = norm_first, bias, ln_eps, n_threads

    def _c(self):
        c = _Config()
        c.struct_size = _struct_size(_Config, "n_threads")
        c.d_model, c.n_heads, c.n_kv_heads = self.d_model, self.n_heads, self.n_kv_heads
        c.d_head, c.d_ff, c.activation = self.d_head, self.d_ff, int(self.activation)
        c.norm_first, c.bias = int(self.norm_first), int(self.bias)
        c.ln_eps, c.n_threads = self.ln_eps, self.n_threads
        return c


class _Module:
    """Owns one mha_ctx. Not thread-safe: use one module per thread."""

    def __init__(self, config=None, **kw):
        self.config = config if config is not None else Config(**kw)
        c = self.config._c()
        h = ctypes.c_void_p()
        _check(_lib.mha_create(ctypes.byref(c), ctypes.byref(h)), "mha_create")
        self._h = h
        self.d_model = self.config.d_model

    def __del__(self):
        h = getattr(self, "_h", None)
        if h:
            _lib.mha_destroy(h)
            self._h = None

    # ---- parameters
    def _pid(self, name):
        try:
            return PARAM_NAMES.index(name)
        except ValueError:
            raise KeyError(f"unknown parameter {name!r}; names: {PARAM_NAMES}") from None

    def param_count(self, name):
        return _lib.mha_param_count(self._h, self._pid(name))

    def param_names(self):
        """Parameters this configuration uses (all of them, not only this module's)."""
        return [n for n in PARAM_NAMES if self.param_count(n)]

    def set_param(self, name, value):
        a = _f32(value, name).reshape(-1)
        _check(_lib.mha_set_param(self._h, self._pid(name), _ptr(a), a.size), f"set_param({name})")

    def get_param(self, name):
        a = np.empty(self.param_count(name), dtype=np.float32)
        _check(_lib.mha_get_param(self._h, self._pid(name), _ptr(a), a.size), f"get_param({name})")
        return a

    def grad(self, name):
        """Accumulated gradient of a parameter (flat, the parameter's layout)."""
        a = np.empty(self.param_count(name), dtype=np.float32)
        _check(_lib.mha_get_grad(self._h, self._pid(name), _ptr(a), a.size), f"grad({name})")
        return a

    def zero_grad(self):
        _check(_lib.mha_zero_grad(self._h), "zero_grad")

    def state_dict(self):
        """{name: flat float32 array} of every set parameter."""
        out = {}
        for n in self.param_names():
            try:
                out[n] = self.get_param(n)
            except MhaError:
                pass
        return out

    def load_state_dict(self, d):
        for n, v in d.items():
            self.set_param(n, v)

    def load_safetensors(self, path, prefix="", naming="torch"):
        """Weights of one layer from a .safetensors file (mha_load_safetensors);
        naming "torch" (TransformerEncoderLayer names) or "bert" (Hugging Face)."""
        _check(_lib.mha_load_safetensors(self._h, os.fsencode(path), prefix.encode(),
                                         NAMING[naming]), "mha_load_safetensors")

    # ---- calls
    def _attn_args(self, query, key, value, kv_lengths, attn_bias, causal):
        q = _f32(query, "query")
        if q.ndim == 2:
            q = q[None]
        if q.ndim != 3 or q.shape[2] != self.d_model:
            raise ValueError(f"query must be [batch, seq, {self.d_model}]")
        if (key is None) != (value is None):
            raise ValueError("key and value go together")
        k = v = None
        seq_kv = 0
        if key is not None:
            k, v = _f32(key, "key"), _f32(value, "value")
            k, v = (k[None], v[None]) if k.ndim == 2 else (k, v)
            if k.shape != v.shape or k.ndim != 3 or k.shape[0] != q.shape[0] or k.shape[2] != self.d_model:
                raise ValueError(f"key, value must be [batch, seq_kv, {self.d_model}]")
            seq_kv = k.shape[1]
        a = _AttnArgs()
        a.struct_size = _struct_size(_AttnArgs, "attn_weights")
        a.batch, a.seq_q, a.seq_kv = q.shape[0], q.shape[1], seq_kv
        keep = [q, k, v]
        a.query, a.key, a.value = _ptr(q), _ptr(k), _ptr(v)
        if kv_lengths is not None:
            lens = np.ascontiguousarray(kv_lengths, dtype=np.int32)
            if lens.shape != (q.shape[0],):
                raise ValueError("kv_lengths must be [batch]")
            keep.append(lens)
            a.kv_lengths = lens.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        if attn_bias is not None:
            b = _f32(attn_bias, "attn_bias")
            if b.shape != (q.shape[1], seq_kv or q.shape[1]):
                raise ValueError("attn_bias must be [seq_q, seq_kv]")
            keep.append(b)
            a.attn_bias = _ptr(b)
        a.causal = int(bool(causal))
        return a, keep

    def _forward(self, fn, query, key=None, value=None, kv_lengths=None, attn_bias=None,
                 causal=False, need_weights=False):
        a, keep = self._attn_args(query, key, value, kv_lengths, attn_bias, causal)
        out = np.empty((a.batch, a.seq_q, self.d_model), dtype=np.float32)
        a.out = _ptr(out)
        w = None
        if need_weights:
            w = np.empty((a.batch, self.config.n_heads, a.seq_q, a.seq_kv or a.seq_q), dtype=np.float32)
            a.attn_weights = _ptr(w)
        _check(fn(self._h, ctypes.byref(a)), fn.__name__)
        del keep
        return (out, w) if need_weights else out

    def _backward(self, fn, d_out, query, key=None, value=None, kv_lengths=None, attn_bias=None,
                  causal=False):
        a, keep = self._attn_args(query, key, value, kv_lengths, attn_bias, causal)
        dy = _f32(d_out, "d_out").reshape(a.batch, a.seq_q, self.d_model)
        g = _GradArgs()
        g.struct_size = _struct_size(_GradArgs, "d_value")
        dq = np.empty((a.batch, a.seq_q, self.d_model), dtype=np.float32)
        g.d_out, g.d_query = _ptr(dy), _ptr(dq)
        dk = dv = None
        if key is not None:
            dk = np.empty((a.batch, a.seq_kv, self.d_model), dtype=np.float32)
            dv = np.empty_like(dk)
            g.d_key, g.d_value = _ptr(dk), _ptr(dv)
        _check(fn(self._h, ctypes.byref(a), ctypes.byref(g)), fn.__name__)
        del keep
        return dq if key is None else (dq, dk, dv)


class MultiHeadAttention(_Module):
    """mha_attention_forward / _backward: attention including W_o."""

    def forward(self, query, key=None, value=None, kv_lengths=None, attn_bias=None,
                causal=False, need_weights=False):
        """out [batch, seq_q, d_model] (and per-head weights [batch, heads, seq_q, seq_kv])."""
        return self._forward(_lib.mha_attention_forward, query, key, value, kv_lengths,
                             attn_bias, causal, need_weights)

    def backward(self, d_out, query, key=None, value=None, kv_lengths=None, attn_bias=None,
                 causal=False):
        """d_query (self-attention) or (d_query, d_key, d_value); parameter gradients accumulate."""
        return self._backward(_lib.mha_attention_backward, d_out, query, key, value, kv_lengths,
                              attn_bias, causal)


class EncoderLayer(_Module):
    """mha_layer_forward / _backward: PyTorch's TransformerEncoderLayer (dropout 0)."""

    def forward(self, x, kv_lengths=None, attn_bias=None, causal=False, need_weights=False):
        return self._forward(_lib.mha_layer_forward, x, None, None, kv_lengths, attn_bias,
                             causal, need_weights)

    def backward(self, d_out, x, kv_lengths=None, attn_bias=None, causal=False):
        """d_x; parameter gradients accumulate (see grad, zero_grad)."""
        return self._backward(_lib.mha_layer_backward, d_out, x, None, None, kv_lengths,
                              attn_bias, causal)


class FFN(_Module):
    """mha_ffn_forward / _backward on rows of d_model (any leading shape)."""

    def __init__(self, config=None, **kw):
        kw.setdefault("n_heads", 1)
        super().__init__(config, **kw)

    def forward(self, x):
        x = _f32(x, "x")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x must end in {self.d_model}")
        out = np.empty_like(x)
        _check(_lib.mha_ffn_forward(self._h, _ptr(out), _ptr(x), x.size // self.d_model),
               "mha_ffn_forward")
        return out

    def backward(self, d_out, x):
        x = _f32(x, "x")
        dy = _f32(d_out, "d_out").reshape(x.shape)
        dx = np.empty_like(x)
        _check(_lib.mha_ffn_backward(self._h, _ptr(dx), _ptr(dy), _ptr(x), x.size // self.d_model),
               "mha_ffn_backward")
        return dx


def _activation_of(module):
    import torch.nn.functional as F
    import torch.nn as nn
    act = getattr(module, "activation", F.relu)
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu:
        return "gelu"
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    raise ValueError(f"activation {act!r} has no libmha equivalent")


def _mha_weights(m, prefix=""):
    if not m._qkv_same_embed_dim:
        raise ValueError("only kdim = vdim = embed_dim is supported")
    D = m.embed_dim
    w = m.in_proj_weight.detach().cpu().numpy()
    d = {"wq": w[:D], "wk": w[D:2 * D], "wv": w[2 * D:], "wo": m.out_proj.weight.detach().cpu().numpy()}
    if m.in_proj_bias is not None:
        b = m.in_proj_bias.detach().cpu().numpy()
        d.update(bq=b[:D], bk=b[D:2 * D], bv=b[2 * D:], bo=m.out_proj.bias.detach().cpu().numpy())
    return d


def from_torch(module, n_threads=0):
    """A libmha module with the weights of an nn.MultiheadAttention or
    nn.TransformerEncoderLayer (in_proj_weight is split into WQ, WK, WV)."""
    import torch.nn as nn
    if isinstance(module, nn.MultiheadAttention):
        cfg = Config(module.embed_dim, module.num_heads, bias=module.in_proj_bias is not None,
                     n_threads=n_threads)
        out = MultiHeadAttention(cfg)
        out.load_state_dict(_mha_weights(module))
        return out
    if isinstance(module, nn.TransformerEncoderLayer):
        sa = module.self_attn
        t = lambda p: p.detach().cpu().numpy()
        cfg = Config(sa.embed_dim, sa.num_heads, d_ff=module.linear1.out_features,
                     activation=_activation_of(module), norm_first=module.norm_first,
                     bias=sa.in_proj_bias is not None, ln_eps=module.norm1.eps, n_threads=n_threads)
        out = EncoderLayer(cfg)
        d = _mha_weights(sa)
        d.update(w1=t(module.linear1.weight), w2=t(module.linear2.weight),
                 ln1_weight=t(module.norm1.weight), ln1_bias=t(module.norm1.bias),
                 ln2_weight=t(module.norm2.weight), ln2_bias=t(module.norm2.bias))
        if module.linear1.bias is not None:
            d.update(b1=t(module.linear1.bias), b2=t(module.linear2.bias))
        out.load_state_dict(d)
        return out
    raise TypeError("from_torch takes nn.MultiheadAttention or nn.TransformerEncoderLayer")
