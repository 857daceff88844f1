#!/usr/bin/env python3
"""tools/bert_reference.py: an independent float64 numpy forward pass of a Hugging Face BertModel,
the reference that tests/lua/dp/hf/minilm_spec.lua checks dp.nn.BertModel against.

It shares nothing with the engine: it reads config.json and model.safetensors itself (header via
json + struct, tensors via numpy.frombuffer; no torch, transformers or safetensors package) and
follows transformers' BertModel: embeddings (word + position + token type) and LayerNorm, then per
layer self-attention, dense + residual + LayerNorm, GELU (erf) FFN, dense + residual + LayerNorm;
the pooler is tanh(dense(first token)). Padding is handled by leaving masked keys out of each
softmax outright (not by a large negative bias), so it also checks the engine's additive mask.

Usage: bert_reference.py MODEL_DIR [INPUT_JSON [OUTPUT_JSON]]   (default stdin / stdout)
Input:  {"input_ids": [[...], ...], "token_type_ids": [[...]], "attention_mask": [[...]]}
        (B rows of T ints; token_type_ids and attention_mask optional: zeros / ones)
Output: {"last_hidden_state": B x T x H, "pooler_output": B x H}
"""
import json
import math
import os
import struct
import sys

# numpy's bundled OpenBLAS starts a thread per core; on small matrices those threads spin against
# each other (5x slower on a 2-core machine), so the reference runs single-threaded.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings, which it reads on import)

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "BOOL": "u1"}


def read_safetensors(path):
    """{name: float64 / int array} from a safetensors file."""
    with open(path, "rb") as fh:
        blob = fh.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        raw = data[begin:end]
        if e["dtype"] == "BF16":   # the high half of an f32
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] in DTYPES:
            a = np.frombuffer(raw, dtype=DTYPES[e["dtype"]])
        else:
            raise SystemExit("bert_reference: %s: tensor %s has dtype %s, not read here" % (path, name, e["dtype"]))
        a = a.reshape(e["shape"])
        out[name] = a.astype(np.float64) if a.dtype.kind == "f" else a
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.frompyfunc(math.erf, 1, 1)


def activation(name, x):
    if name == "gelu":   # exact: x * Phi(x)
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "tanh":
        return np.tanh(x)
    raise SystemExit("bert_reference: hidden_act %r not implemented" % name)


class Bert:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as fh:
            self.cfg = json.load(fh)
        w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        # BertForSequenceClassification keys carry a "bert." prefix; BertModel's do not.
        self.w = {(k[5:] if k.startswith("bert.") else k): v for k, v in w.items()}
        self.eps = self.cfg.get("layer_norm_eps", 1e-12)

    def p(self, name):
        return self.w[name]

    def dense(self, x, name):   # HF Linear: x @ W^T + b, W is (out, in)
        return x @ self.p(name + ".weight").T + self.p(name + ".bias")

    def ln(self, x, name):
        return layer_norm(x, self.p(name + ".weight"), self.p(name + ".bias"), self.eps)

    def forward_one(self, ids, types, mask):
        """One example: ids, types, mask (T,) -> hidden (T, H)."""
        cfg = self.cfg
        T = len(ids)
        H = cfg["hidden_size"]
        heads = cfg["num_attention_heads"]
        hd = H // heads
        x = (self.p("embeddings.word_embeddings.weight")[ids]
             + self.p("embeddings.position_embeddings.weight")[np.arange(T)]
             + self.p("embeddings.token_type_embeddings.weight")[types])
        x = self.ln(x, "embeddings.LayerNorm")
        keys = np.nonzero(mask)[0]   # the positions every query may attend to
        for i in range(cfg["num_hidden_layers"]):
            pre = "encoder.layer.%d." % i
            q = self.dense(x, pre + "attention.self.query").reshape(T, heads, hd).transpose(1, 0, 2)
            k = self.dense(x, pre + "attention.self.key").reshape(T, heads, hd).transpose(1, 0, 2)[:, keys]
            v = self.dense(x, pre + "attention.self.value").reshape(T, heads, hd).transpose(1, 0, 2)[:, keys]
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)                 # (heads, T, len(keys))
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            probs = s / s.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(T, H)
            a = self.ln(self.dense(ctx, pre + "attention.output.dense") + x, pre + "attention.output.LayerNorm")
            h = activation(cfg.get("hidden_act", "gelu"), self.dense(a, pre + "intermediate.dense"))
            x = self.ln(self.dense(h, pre + "output.dense") + a, pre + "output.LayerNorm")
        return x

    def forward(self, batch):
        ids = np.asarray(batch["input_ids"], dtype=np.int64)
        B, T = ids.shape
        types = np.asarray(batch.get("token_type_ids") or np.zeros((B, T)), dtype=np.int64)
        mask = np.asarray(batch.get("attention_mask") or np.ones((B, T)), dtype=np.int64)
        hidden = np.stack([self.forward_one(ids[b], types[b], mask[b]) for b in range(B)])
        pooled = np.tanh(self.dense(hidden[:, 0], "pooler.dense")) if "pooler.dense.weight" in self.w else None
        return hidden, pooled


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    src = open(argv[2]) if len(argv) > 2 and argv[2] != "-" else sys.stdin
    batch = json.load(src)
    hidden, pooled = Bert(argv[1]).forward(batch)
    out = {"last_hidden_state": hidden.tolist(),
           "pooler_output": pooled.tolist() if pooled is not None else None}
    dst = open(argv[3], "w") if len(argv) > 3 else sys.stdout
    json.dump(out, dst)
    dst.write("\n")
    dst.close()


if __name__ == "__main__":
    main(sys.argv)
