#!/usr/bin/python3
"""make_seeds.py - writes the small seed corpora of the fuzz targets
(deterministic; run from anywhere). Fuzzing adds to copies of these, and
every input that ever found a bug is added here by hand."""
import json
import os
import random
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = random.Random(1234)


def put(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def config_bytes(d_model, heads, kv, dh, dff, act, flags, eps=0):
    return bytes([d_model, heads, kv, dh, dff, act + 1, flags, eps, 0])


# forward / backward: a config, weights (mode byte + values), shapes, data
for target in ("forward", "backward"):
    for i in range(24):
        d = rng.choice([4, 6, 8, 12, 13, 16])
        h = rng.choice([1, 2, 4])
        while d % h:
            h -= 1
        cfg = config_bytes(d, h, rng.choice([0, 1, h]), rng.choice([0, 0, 3]), rng.choice([0, 7, 16]),
                           rng.randrange(4), rng.choice([0, 1, 2, 3]) | (1 << 5))
        body = bytes(rng.randrange(6, 256) for _ in range(rng.randrange(200, 1500)))
        shapes = bytes([rng.randrange(1, 4), rng.randrange(1, 8), rng.randrange(1, 8),
                        rng.randrange(0, 32), rng.randrange(3), rng.randrange(4)])
        put(target, f"seed{i:02d}", cfg + body[:64] + shapes + body[64:])
    put(target, "empty", b"")

# params: config then random operations
for i in range(12):
    cfg = config_bytes(rng.choice([4, 8, 9]), 1, 0, 0, 5, rng.randrange(4), rng.randrange(4))
    put("params", f"seed{i:02d}", cfg + bytes(rng.randrange(256) for _ in range(400)))


# safetensors: valid layers (d_model 8, 2 heads, d_ff 12) in both namings
def safetensors(tensors, pad=True):
    header, blobs, off = {}, [], 0
    for name, (dtype, shape) in tensors.items():
        n = 1
        for s in shape:
            n *= s
        es = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
        raw = bytes(rng.randrange(0, 64) for _ in range(n * es))  # small finite values
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


D, F = 8, 12
torch_t = {"self_attn.in_proj_weight": [3 * D, D], "self_attn.in_proj_bias": [3 * D],
           "self_attn.out_proj.weight": [D, D], "self_attn.out_proj.bias": [D],
           "linear1.weight": [F, D], "linear1.bias": [F], "linear2.weight": [D, F],
           "linear2.bias": [D], "norm1.weight": [D], "norm1.bias": [D],
           "norm2.weight": [D], "norm2.bias": [D]}
bert_t = {}
for n, shape in {"attention.self.query": [D, D], "attention.self.key": [D, D],
                 "attention.self.value": [D, D], "attention.output.dense": [D, D],
                 "intermediate.dense": [F, D], "output.dense": [D, F]}.items():
    bert_t[f"{n}.weight"] = shape
    bert_t[f"{n}.bias"] = [shape[0]]
for n in ["attention.output.LayerNorm", "output.LayerNorm"]:
    bert_t[f"{n}.weight"] = [D]
    bert_t[f"{n}.bias"] = [D]
for dtype in ("F32", "F16", "BF16"):
    put("safetensors", f"torch_{dtype}", bytes([0]) + safetensors({k: (dtype, s) for k, s in torch_t.items()}))
    put("safetensors", f"bert_{dtype}", bytes([1 | 4]) + safetensors(
        {"encoder.layer.0." + k: (dtype, s) for k, s in bert_t.items()}))
nobias = {k: ("F32", s) for k, s in torch_t.items() if "bias" not in k or "norm" in k}
put("safetensors", "torch_nobias", bytes([2]) + safetensors(nobias))
put("safetensors", "metadata", bytes([0]) + safetensors({"x": ("F32", [2])})[:8] + b'{"__metadata__":{"a":"b"}}')
put("safetensors", "tiny", bytes([0, 1, 0]))
print("seeds written to", HERE)
