"""safetensors files written from numpy (the format is simple), loaded by the
C loader through the binding, checked against PyTorch."""
import json
import struct

import numpy as np
import pytest
import torch
import torch.nn as nn

import libmha


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: np.ndarray (float32/float16) or (dtype_str, raw bytes, shape)}."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        if isinstance(t, tuple):
            dtype, raw, shape = t
        else:
            dtype = {np.float32: "F32", np.float16: "F16"}[t.dtype.type]
            raw, shape = np.ascontiguousarray(t).tobytes(), list(t.shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def to_bf16(a):
    return ("BF16", (np.ascontiguousarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes(),
            list(a.shape))


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_torch_state_dict_file(tmp_path, dtype, norm_first):
    D, H, F = 32, 4, 64
    tl = nn.TransformerEncoderLayer(D, H, F, dropout=0.0, activation="gelu", batch_first=True,
                                    norm_first=norm_first).eval()
    sd = {k: v.detach().numpy() for k, v in tl.state_dict().items()}
    conv = {"F32": lambda a: a, "F16": lambda a: a.astype(np.float16), "BF16": to_bf16}[dtype]
    back = {"F32": lambda a: a, "F16": lambda a: a.astype(np.float16).astype(np.float32),
            "BF16": lambda a: ((a.view(np.uint32) >> 16) << 16).view(np.float32)}[dtype]
    tensors = {f"encoder.layers.2.{k}": conv(v) for k, v in sd.items()}
    tensors["encoder.layers.1.linear1.weight"] = conv(np.zeros((F, D), np.float32))  # other layer
    path = tmp_path / "layer.safetensors"
    write_safetensors(path, tensors, {"format": "pt"})
    ll = libmha.EncoderLayer(libmha.Config(D, H, d_ff=F, activation="gelu", norm_first=norm_first))
    ll.load_safetensors(path, "encoder.layers.2.", "torch")
    # reference: the same (rounded) weights in PyTorch
    with torch.no_grad():
        for k, p in tl.state_dict().items():
            p.copy_(torch.from_numpy(back(sd[k].copy())))
    x = np.random.default_rng(1).standard_normal((2, 9, D)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_()  # grad on: PyTorch's reference path
    np.testing.assert_allclose(ll.forward(x), tl(tx).detach().numpy(), atol=1e-4)


def test_bert_names_and_errors(tmp_path):
    D, F = 16, 24
    rng = np.random.default_rng(2)
    names = {"attention.self.query": (D, D), "attention.self.key": (D, D),
             "attention.self.value": (D, D), "attention.output.dense": (D, D),
             "intermediate.dense": (F, D), "output.dense": (D, F)}
    t = {}
    for n, shape in names.items():
        t[f"bert.encoder.layer.0.{n}.weight"] = rng.standard_normal(shape).astype(np.float32)
        t[f"bert.encoder.layer.0.{n}.bias"] = rng.standard_normal(shape[0]).astype(np.float32)
    for n in ["attention.output.LayerNorm", "output.LayerNorm"]:
        t[f"bert.encoder.layer.0.{n}.weight"] = np.ones(D, np.float32)
        t[f"bert.encoder.layer.0.{n}.bias"] = np.zeros(D, np.float32)
    path = tmp_path / "bert.safetensors"
    write_safetensors(path, t)
    ll = libmha.EncoderLayer(libmha.Config(D, 2, d_ff=F, activation="gelu"))
    ll.load_safetensors(path, "bert.encoder.layer.0.", "bert")
    np.testing.assert_array_equal(ll.get_param("w1"), t["bert.encoder.layer.0.intermediate.dense.weight"].ravel())
    # transposed matrix: a shape error, weights unchanged
    t2 = dict(t)
    t2["bert.encoder.layer.0.output.dense.weight"] = t["bert.encoder.layer.0.output.dense.weight"].T.copy()
    write_safetensors(path, t2)
    with pytest.raises(libmha.MhaError) as e:
        ll.load_safetensors(path, "bert.encoder.layer.0.", "bert")
    assert "shape" in str(e.value)
    np.testing.assert_array_equal(ll.get_param("w1"), t["bert.encoder.layer.0.intermediate.dense.weight"].ravel())
    with pytest.raises(libmha.MhaError) as e:
        ll.load_safetensors(tmp_path / "missing.safetensors")
    assert e.value.status == 19
