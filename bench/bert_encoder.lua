-- bench/bert_encoder.lua: the BERT-style classifier of the DP-SGD benchmarks (dp.nn's
-- BertForSequenceClassification under the benchmark's short option names) and a synthetic padded
-- batch maker. Every parameter goes through an op the per-sample engine taps, and every op acts
-- within one example, as DP-SGD's per-example clipping needs.
local ffi = require "ffi"
local dp = require "dp"
local nn = require "dp.nn"

local M = {}

local defaults = {
  vocab = 8192, hidden = 256, layers = 4, heads = 4, ffn = 1024, max_pos = 128, types = 2,
  classes = 3, seed = 0, dropout = 0.1, eps = 1e-12,
}

-- M.new{ vocab=, hidden=, layers=, heads=, ffn=, max_pos=, types=, classes=, seed=, dropout= }:
-- a dp.nn module with :named_parameters(), :forward(batch), :per_sample_loss(batch) and
-- :set_train(flag) (dropout on or off).
function M.new(opts)
  local cfg = {}
  for k, v in pairs(defaults) do cfg[k] = v end
  for k, v in pairs(opts or {}) do cfg[k] = v end
  local model = nn.BertForSequenceClassification({
    vocab_size = cfg.vocab, hidden_size = cfg.hidden, num_hidden_layers = cfg.layers,
    num_attention_heads = cfg.heads, intermediate_size = cfg.ffn, max_position_embeddings = cfg.max_pos,
    type_vocab_size = cfg.types, num_labels = cfg.classes, layer_norm_eps = cfg.eps,
    hidden_dropout_prob = cfg.dropout, attention_probs_dropout_prob = cfg.dropout,
  }, { seed = cfg.seed })
  model.config_short = cfg
  function model:set_train(flag) return self:train(flag) end
  return model
end

-- M.synthetic_batch{ B=, T=, vocab=, classes=, types=, seed=, pad_fraction= }: uniform random
-- token ids in 1..vocab-1; each example's padded tail (id 0, type 0, mask 0) is a uniform
-- fraction in [0, pad_fraction] of T, keeping at least one token; token type 1 from a random
-- split point after the first token (sentence pairs); labels uniform over classes.
function M.synthetic_batch(opts)
  opts = opts or {}
  local B, T = opts.B or 32, opts.T or 128
  local vocab, classes = opts.vocab or defaults.vocab, opts.classes or defaults.classes
  local types, pad_fraction = opts.types or defaults.types, opts.pad_fraction or 0.25
  local n = B * T
  local draws = n + 3 * B
  local u = ffi.new("double[?]", draws)
  dp.C.dp_tensor_to_f64(dp.rng(opts.seed or 0):rand({ draws }, "f64").ptr, u)
  local ids, tt, mask = ffi.new("double[?]", n), ffi.new("double[?]", n), ffi.new("double[?]", n)
  local labels = ffi.new("double[?]", B)
  for b = 0, B - 1 do
    local pad = math.floor(u[n + b] * pad_fraction * T)
    local len = math.max(1, T - pad)
    local split = types > 1 and 1 + math.floor(u[n + B + b] * (len - 1)) or len
    for t = 0, T - 1 do
      local i = b * T + t
      if t < len then
        ids[i] = 1 + math.floor(u[i] * (vocab - 1))
        tt[i], mask[i] = t >= split and 1 or 0, 1
      else
        ids[i], tt[i], mask[i] = 0, 0, 0
      end
    end
    labels[b] = math.floor(u[n + 2 * B + b] * classes)
  end
  return {
    input_ids = dp.from_f64(ids, { B, T }, "i64"),
    token_type_ids = dp.from_f64(tt, { B, T }, "i64"),
    attention_mask = dp.from_f64(mask, { B, T }, "i64"),
    labels = dp.from_f64(labels, { B }, "i64"),
  }
end

return M
