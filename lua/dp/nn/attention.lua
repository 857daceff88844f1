-- dp.nn.attention: BERT's multi-head self-attention with an additive padding mask
-- (BertSelfAttention{query, key, value}, BertSelfOutput{dense, LayerNorm, dropout},
-- BertAttention{self, output}), named as Hugging Face names them. Every op acts within one
-- example (dim 1), as DP-SGD's per-example clipping needs.
local dp = require "dp"
local module = require "dp.nn.module"
local Linear = require "dp.nn.linear"
local LayerNorm = require "dp.nn.layer_norm"
local Dropout = require "dp.nn.dropout"

local M = {}

-- Added to the attention scores of padded keys: large enough that softmax gives them 0 weight
-- (exp underflows), finite so that a row of all padding does not turn into NaN.
-- Under an f16 precision rule the boundary cast turns it into -inf: padded keys still get 0 weight,
-- but a row of only padding would give NaN (BERT's [CLS] is never padding).
M.MASK_NEGATIVE = -1e9

-- attention_mask (B, T) of 1 (token) / 0 (padding) -> (B, 1, 1, T) additive bias in dtype,
-- broadcast over heads and queries.
function M.additive_mask(attention_mask, dtype)
  local B, T = attention_mask:size(1), attention_mask:size(2)
  return attention_mask:cast(dtype):affine(-M.MASK_NEGATIVE, M.MASK_NEGATIVE):reshape { B, 1, 1, T }
end

-- opts shared by the BERT modules: { config =, dtype =, rng = (init), dropout_rng = }.
local function linear(opts, n_in, n_out)
  return Linear.new(n_in, n_out, { dtype = opts.dtype, rng = opts.rng, std = opts.config.initializer_range })
end
M.linear = linear

local SelfAttention = module.class("BertSelfAttention")

function SelfAttention:init(opts)
  local cfg = opts.config
  local H = cfg.hidden_size
  self.num_heads = cfg.num_attention_heads
  self.head_dim = H / self.num_heads
  self:add_module("query", linear(opts, H, H))
  self:add_module("key", linear(opts, H, H))
  self:add_module("value", linear(opts, H, H))
  self:add_module("dropout", Dropout.new(cfg.attention_probs_dropout_prob, { rng = opts.dropout_rng }))
end

-- x (B, T, H) -> (B, heads, T, head_dim)
local function split_heads(x, B, T, heads, head_dim)
  return x:reshape { B, T, heads, head_dim }:permute { 1, 3, 2, 4 }
end

-- x (B, T, H), mask_bias (B, 1, 1, T) additive (or nil) -> context (B, T, H)
function SelfAttention:forward(x, mask_bias)
  local B, T, H = x:size(1), x:size(2), x:size(3)
  local heads, hd = self.num_heads, self.head_dim
  -- Scaling q rather than the scores touches T*head_dim instead of T*T elements per head.
  -- The projections follow their own precision rules; the scores and the weighted sum are this
  -- module's ops, so they run in its compute dtype (a query kept in fp32 meets a bf16 key here).
  local dt = self:compute_dtype()
  local function own(t) return (dt and t:dtype() ~= dt) and t:cast(dt) or t end
  local q = split_heads(own(self.query(x)) * (1 / math.sqrt(hd)), B, T, heads, hd)
  local k = split_heads(own(self.key(x)), B, T, heads, hd)
  local v = split_heads(own(self.value(x)), B, T, heads, hd)
  local scores = q:matmul(k:transpose(3, 4))                    -- (B, heads, T, T)
  -- softmax(scores + mask_bias) as one fused op when the mask has the scores' dtype (built in
  -- the compute dtype, or cast to it at this module's boundary); otherwise the add promotes.
  local probs
  if mask_bias and mask_bias:dtype() == scores:dtype() then
    probs = scores:softmax_masked(mask_bias, 4)
  else
    probs = (mask_bias and scores + mask_bias or scores):softmax(4)
  end
  probs = self.dropout(probs)
  return probs:matmul(v):permute { 1, 3, 2, 4 }:reshape { B, T, H }
end

M.BertSelfAttention = SelfAttention

-- dense, dropout, then LayerNorm of the residual sum (shared shape with BertOutput).
local SelfOutput = module.class("BertSelfOutput")

function SelfOutput:init(opts, n_in)
  local cfg = opts.config
  self:add_module("dense", linear(opts, n_in or cfg.hidden_size, cfg.hidden_size))
  self:add_module("LayerNorm", LayerNorm.new(cfg.hidden_size, { eps = cfg.layer_norm_eps, dtype = opts.dtype }))
  self:add_module("dropout", Dropout.new(cfg.hidden_dropout_prob, { rng = opts.dropout_rng }))
end

function SelfOutput:forward(h, residual)
  return self.LayerNorm(self.dropout(self.dense(h)) + residual)
end

M.BertSelfOutput = SelfOutput

local Attention = module.class("BertAttention")

function Attention:init(opts)
  self:add_module("self", SelfAttention.new(opts))
  self:add_module("output", SelfOutput.new(opts))
end

function Attention:forward(x, mask_bias)
  return self.output(self.self(x, mask_bias), x)
end

M.BertAttention = Attention

return M
