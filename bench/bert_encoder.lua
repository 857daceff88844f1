-- bench/bert_encoder.lua: a functional BERT-style encoder classifier for the DP-SGD benchmarks,
-- built only from ops whose parameter gradients the per-sample engine taps (dp.linear,
-- dp.embedding, dp.layer_norm) plus parameter-free ops, and a synthetic padded batch maker.
-- Every op acts within one example (dim 1 is the example), as DP-SGD's per-example clipping needs.
local ffi = require "ffi"
local dp = require "dp"

local M = {}

local defaults = {
  vocab = 8192, hidden = 256, layers = 4, heads = 4, ffn = 1024, max_pos = 128, types = 2,
  classes = 3, seed = 0, dropout = 0.1, eps = 1e-12,
}

-- Added to the attention scores of padded keys: large enough that softmax gives them ~0 weight,
-- finite so that no row turns into NaN.
local MASK_NEGATIVE = -1e9

local Model = {}
Model.__index = Model

local function param(model, name, tensor)
  tensor:requires_grad(true)
  tensor:is_param(true)
  model.params[#model.params + 1] = { name = name, tensor = tensor }
  model.by_name[name] = tensor
  return tensor
end

-- BERT's initialisation: weights N(0, 0.02^2), biases 0, LayerNorm weight 1 and bias 0.
local function normal(model, name, shape)
  return param(model, name, model.rng:randn(shape, { std = 0.02 }))
end
local function zeros(model, name, shape) return param(model, name, dp.zeros(shape)) end
local function ones(model, name, shape) return param(model, name, dp.ones(shape)) end

local function dense(model, prefix, n_out, n_in)
  return { weight = normal(model, prefix .. ".weight", { n_out, n_in }),
           bias = zeros(model, prefix .. ".bias", { n_out }) }
end

local function norm(model, prefix, n)
  return { weight = ones(model, prefix .. ".weight", { n }),
           bias = zeros(model, prefix .. ".bias", { n }) }
end

-- M.new{ vocab=, hidden=, layers=, heads=, ffn=, max_pos=, types=, classes=, seed=, dropout= }
function M.new(opts)
  local cfg = {}
  for k, v in pairs(defaults) do cfg[k] = v end
  for k, v in pairs(opts or {}) do
    if defaults[k] == nil then error(("bert_encoder.new: unknown option %s"):format(k), 2) end
    cfg[k] = v
  end
  if cfg.hidden % cfg.heads ~= 0 then
    error(("bert_encoder.new: hidden (%d) must be a multiple of heads (%d)")
          :format(cfg.hidden, cfg.heads), 2)
  end
  local H = cfg.hidden
  local model = setmetatable({ config = cfg, params = {}, by_name = {}, train = true,
                               rng = dp.rng(cfg.seed), position_cache = {} }, Model)
  model.dropout_rng = dp.rng(cfg.seed + 1)
  model.embeddings = {
    word = normal(model, "embeddings.word_embeddings.weight", { cfg.vocab, H }),
    position = normal(model, "embeddings.position_embeddings.weight", { cfg.max_pos, H }),
    token_type = normal(model, "embeddings.token_type_embeddings.weight", { cfg.types, H }),
    norm = norm(model, "embeddings.LayerNorm", H),
  }
  model.layers = {}
  for i = 0, cfg.layers - 1 do
    local p = "encoder.layer." .. i
    model.layers[i + 1] = {
      query = dense(model, p .. ".attention.self.query", H, H),
      key = dense(model, p .. ".attention.self.key", H, H),
      value = dense(model, p .. ".attention.self.value", H, H),
      attention_out = dense(model, p .. ".attention.output.dense", H, H),
      attention_norm = norm(model, p .. ".attention.output.LayerNorm", H),
      intermediate = dense(model, p .. ".intermediate.dense", cfg.ffn, H),
      output = dense(model, p .. ".output.dense", H, cfg.ffn),
      output_norm = norm(model, p .. ".output.LayerNorm", H),
    }
  end
  model.pooler = dense(model, "pooler.dense", H, H)
  model.classifier = dense(model, "classifier", cfg.classes, H)
  return model
end

-- Array of { name =, tensor = } in creation order (the order of BERT's state dict).
function Model:named_parameters() return self.params end

function Model:parameters()
  local out = {}
  for k, p in ipairs(self.params) do out[k] = p.tensor end
  return out
end

function Model:num_parameters()
  local n = 0
  for _, p in ipairs(self.params) do n = n + p.tensor:numel() end
  return n
end

-- Dropout is on while model.train is true (the default).
function Model:set_train(flag) self.train = flag and true or false; return self end

-- Position ids (B, T) i64, 0..T-1 in every row: one row per example, because the embedding's
-- per-sample gradient reads dim 1 of its indices as the example. One cached tensor per T, as tall
-- as the largest batch seen (Poisson batches vary in size), cut to B rows (still contiguous).
function Model:position_ids(B, T)
  local ids = self.position_cache[T]
  if not ids or ids:size(1) < B then
    ids = dp.arange(T):reshape { 1, T }:expand { B, T }:contiguous()
    self.position_cache[T] = ids
  end
  return ids:size(1) == B and ids or ids:narrow(1, 1, B)
end

local function linear(x, d) return dp.linear(x, d.weight, d.bias) end
local function layer_norm(x, n, eps) return dp.layer_norm(x, n.weight, n.bias, eps) end

function Model:dropout(x)
  local p = self.config.dropout
  if not self.train or p == 0 then return x end
  return dp.dropout(x, p, true, self.dropout_rng)
end

-- x (B, T, H) -> (B, heads, T, head_dim)
local function split_heads(x, B, T, heads, head_dim)
  return x:reshape { B, T, heads, head_dim }:permute { 1, 3, 2, 4 }
end

-- x (B, T, H), bias_mask (B, 1, 1, T) additive -> (B, T, H)
function Model:attention(layer, x, bias_mask)
  local cfg = self.config
  local B, T, H = x:size(1), x:size(2), cfg.hidden
  local head_dim = H / cfg.heads
  -- Scaling q rather than the scores touches T*head_dim instead of T*T elements per head.
  local scale = 1 / math.sqrt(head_dim)
  local q = split_heads(linear(x, layer.query) * scale, B, T, cfg.heads, head_dim)
  local k = split_heads(linear(x, layer.key), B, T, cfg.heads, head_dim)
  local v = split_heads(linear(x, layer.value), B, T, cfg.heads, head_dim)
  local scores = q:matmul(k:transpose(3, 4)) + bias_mask          -- (B, heads, T, T)
  local probs = self:dropout(scores:softmax(4))
  local context = probs:matmul(v):permute { 1, 3, 2, 4 }:reshape { B, T, H }
  local out = self:dropout(linear(context, layer.attention_out))
  return layer_norm(out + x, layer.attention_norm, cfg.eps)
end

function Model:feed_forward(layer, x)
  local h = linear(x, layer.intermediate):gelu()                 -- (B, T, ffn)
  local out = self:dropout(linear(h, layer.output))              -- (B, T, H)
  return layer_norm(out + x, layer.output_norm, self.config.eps)
end

local function check_batch(batch)
  for _, key in ipairs { "input_ids", "token_type_ids", "attention_mask" } do
    if not dp.is_tensor(batch[key]) then
      error(("bert_encoder.forward: batch.%s must be a (B, T) tensor"):format(key), 3)
    end
  end
end

-- batch = { input_ids (B, T) i64, token_type_ids (B, T) i64, attention_mask (B, T) 1/0 } ->
-- logits (B, classes)
function Model:forward(batch)
  check_batch(batch)
  local ids = batch.input_ids
  local B, T = ids:size(1), ids:size(2)
  local cfg, emb = self.config, self.embeddings
  if T > cfg.max_pos then
    error(("bert_encoder.forward: sequence length %d exceeds max_pos %d"):format(T, cfg.max_pos), 2)
  end
  local x = dp.embedding(emb.word, ids) + dp.embedding(emb.position, self:position_ids(B, T))
            + dp.embedding(emb.token_type, batch.token_type_ids)
  x = self:dropout(layer_norm(x, emb.norm, cfg.eps))             -- (B, T, H)
  -- 0 for tokens, MASK_NEGATIVE for padding, broadcast over heads and queries.
  local bias_mask = batch.attention_mask:cast(emb.word:dtype())
                    :affine(-MASK_NEGATIVE, MASK_NEGATIVE):reshape { B, 1, 1, T }
  for _, layer in ipairs(self.layers) do
    x = self:feed_forward(layer, self:attention(layer, x, bias_mask))
  end
  local pooled = linear(x:select(2, 1), self.pooler):tanh()      -- [CLS] token: (B, H)
  return linear(self:dropout(pooled), self.classifier)           -- (B, classes)
end

-- Cross-entropy of each example (B), for DP-SGD's per-example losses.
function Model:per_sample_loss(batch)
  if not dp.is_tensor(batch.labels) then
    error("bert_encoder.per_sample_loss: batch.labels must be a (B) i64 tensor", 2)
  end
  return dp.cross_entropy(self:forward(batch), batch.labels, { reduction = "none" })
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
