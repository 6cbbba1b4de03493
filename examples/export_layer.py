#!/usr/bin/python3
"""export_layer.py OUT.safetensors [--bert] - writes one encoder layer for
examples/bert_layer.c, using only numpy for the file format.

Default: a fresh nn.TransformerEncoderLayer(768, 12, 3072, gelu) under the
prefix "layers.0." (PyTorch names). --bert: a random layer with Hugging Face
BERT names under "encoder.layer.0.". With a real Hugging Face model, prefer
  model.save_pretrained(DIR, safe_serialization=True)
whose model.safetensors already holds "encoder.layer.N." tensors (sometimes
under "bert."), and pass that prefix to bert_layer.
"""
import json
import struct
import sys

import numpy as np


def save(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    out = sys.argv[1]
    if "--bert" in sys.argv:
        rng = np.random.default_rng(0)
        D, F = 768, 3072
        t = {}
        for n, shape in {"attention.self.query": (D, D), "attention.self.key": (D, D),
                         "attention.self.value": (D, D), "attention.output.dense": (D, D),
                         "intermediate.dense": (F, D), "output.dense": (D, F)}.items():
            t[f"encoder.layer.0.{n}.weight"] = rng.normal(0, 0.02, shape)
            t[f"encoder.layer.0.{n}.bias"] = np.zeros(shape[0])
        for n in ["attention.output.LayerNorm", "output.LayerNorm"]:
            t[f"encoder.layer.0.{n}.weight"] = np.ones(D)
            t[f"encoder.layer.0.{n}.bias"] = np.zeros(D)
        save(out, t)
    else:
        import torch
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.0, activation="gelu")
        save(out, {"layers.0." + k: v.detach().numpy() for k, v in layer.state_dict().items()})
    print("wrote", out)


if __name__ == "__main__":
    main()
