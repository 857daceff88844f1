-- dp.nn.bert: BERT (BertModel and BertForSequenceClassification) from a Hugging Face config,
-- with Hugging Face's module names so that parameter names equal its state-dict keys. Built for
-- the DP engine: every parameter is used through dp.linear / dp.embedding / dp.layer_norm, the
-- position ids are a (B, T) tensor and padding is an additive mask, so dim 1 is the example.
local raise = require("dp.ffi").raise
local dp = require "dp"
local module = require "dp.nn.module"
local config_mod = require "dp.nn.bert_config"
local attention = require "dp.nn.attention"
local Embedding = require "dp.nn.embedding"
local LayerNorm = require "dp.nn.layer_norm"
local Dropout = require "dp.nn.dropout"

local M = {}
local linear = attention.linear

-- The shared construction options from (config, opts): opts = { dtype = "f32", seed = 0 }.
-- Weights draw from one generator in creation order; dropout draws from another.
local function build_opts(config, opts)
  opts = opts or {}
  local seed = opts.seed or 0
  return { config = config_mod.check(config), dtype = opts.dtype or "f32", rng = dp.rng(seed),
           dropout_rng = opts.dropout_rng or dp.rng(seed + 1) }
end

local Embeddings = module.class("BertEmbeddings")

function Embeddings:init(o)
  local cfg = o.config
  local H, std = cfg.hidden_size, cfg.initializer_range
  local e = { dtype = o.dtype, rng = o.rng, std = std }
  self:add_module("word_embeddings", Embedding.new(cfg.vocab_size, H, e))
  self:add_module("position_embeddings", Embedding.new(cfg.max_position_embeddings, H, e))
  self:add_module("token_type_embeddings", Embedding.new(cfg.type_vocab_size, H, e))
  self:add_module("LayerNorm", LayerNorm.new(H, { eps = cfg.layer_norm_eps, dtype = o.dtype }))
  self:add_module("dropout", Dropout.new(cfg.hidden_dropout_prob, { rng = o.dropout_rng }))
  self.position_cache = {}
end

-- Position ids (B, T) i64, 0..T-1 in every row: one row per example, because the embedding's
-- per-sample gradient reads dim 1 of its indices as the example. One cached tensor per T, as tall
-- as the largest batch seen (Poisson batches vary in size), cut to B rows (still contiguous).
function Embeddings:position_ids(B, T)
  local ids = self.position_cache[T]
  if not ids or ids:size(1) < B then
    ids = dp.arange(T):reshape { 1, T }:expand { B, T }:contiguous()
    self.position_cache[T] = ids
  end
  return ids:size(1) == B and ids or ids:narrow(1, 1, B)
end

function Embeddings:forward(input_ids, token_type_ids)
  local B, T = input_ids:size(1), input_ids:size(2)
  local x = self.word_embeddings(input_ids) + self.position_embeddings(self:position_ids(B, T))
            + self.token_type_embeddings(token_type_ids)
  return self.dropout(self.LayerNorm(x))
end

local Intermediate = module.class("BertIntermediate")

function Intermediate:init(o)
  self:add_module("dense", linear(o, o.config.hidden_size, o.config.intermediate_size))
  self.act = config_mod.activations[o.config.hidden_act]
end

-- Through the dense layer's fused form (bias and activation in one op) where it has one; it falls
-- back to dp[act] on the output itself under fp8 or with LoRA adapters.
function Intermediate:forward(x)
  local dense = self.dense
  if dense.forward_act then return dense:forward_act(x, self.act) end
  return dp[self.act](dense(x))
end

-- BertOutput is BertSelfOutput's shape with the intermediate size as input.
local Output = module.class("BertOutput", attention.BertSelfOutput)

local Layer = module.class("BertLayer")

function Layer:init(o)
  self:add_module("attention", attention.BertAttention.new(o))
  self:add_module("intermediate", Intermediate.new(o))
  self:add_module("output", Output.new(o, o.config.intermediate_size))
end

function Layer:forward(x, mask_bias)
  local a = self.attention(x, mask_bias)
  return self.output(self.intermediate(a), a)
end

local Encoder = module.class("BertEncoder")

function Encoder:init(o)
  self:add_module("layer", module.ModuleList.new())
  for _ = 1, o.config.num_hidden_layers do self.layer:append(Layer.new(o)) end
end

function Encoder:forward(x, mask_bias)
  for i = 1, self.layer.n do x = self.layer[i](x, mask_bias) end
  return x
end

local Pooler = module.class("BertPooler")

function Pooler:init(o) self:add_module("dense", linear(o, o.config.hidden_size, o.config.hidden_size)) end

-- The [CLS] (first) token's hidden state through dense and tanh: (B, T, H) -> (B, H).
function Pooler:forward(x) return dp.tanh(self.dense(x:select(2, 1))) end

-- Checks batch = { input_ids (B, T) i64, token_type_ids?, attention_mask? } against the config;
-- returns the three tensors with the optional ones filled (zeros, ones).
local function check_batch(cfg, batch, who, dtype)
  if type(batch) ~= "table" then raise(who .. ": batch must be a table with input_ids") end
  local ids = batch.input_ids
  if not dp.is_tensor(ids) or ids:dim() ~= 2 or ids:dtype() ~= "i64" then
    raise(("%s: batch.input_ids must be a (B, T) i64 tensor, got %s"):format(who,
          dp.is_tensor(ids) and ids:desc() or tostring(ids)))
  end
  local B, T = ids:size(1), ids:size(2)
  if T > cfg.max_position_embeddings then
    raise(("%s: input_ids has %d positions, more than max_position_embeddings (%d)")
          :format(who, T, cfg.max_position_embeddings))
  end
  if T < 1 then raise(who .. ": input_ids has no positions") end
  local out = { input_ids = ids }
  for key, fill in pairs { token_type_ids = dp.zeros, attention_mask = dp.ones } do
    local t = batch[key]
    if t == nil then
      t = fill({ B, T }, { dtype = key == "attention_mask" and dtype or "i64" })
    elseif not dp.is_tensor(t) or t:dim() ~= 2 or t:size(1) ~= B or t:size(2) ~= T then
      raise(("%s: batch.%s must be a (%d, %d) tensor like input_ids, got %s"):format(who, key, B, T,
            dp.is_tensor(t) and t:desc() or tostring(t)))
    end
    out[key] = t
  end
  if out.token_type_ids:dtype() ~= "i64" then
    raise(("%s: batch.token_type_ids must be i64, got %s"):format(who, out.token_type_ids:desc()))
  end
  return out
end

local Model = module.class("BertModel")

-- BertModel.new(config, opts): opts = { dtype = "f32", seed = 0 } (or the shared options table
-- that BertForSequenceClassification passes down).
function Model:init(config, opts)
  local o = (opts and opts.config) and opts or build_opts(config, opts)
  self.config = o.config
  self.dtype = o.dtype
  self:add_module("embeddings", Embeddings.new(o))
  self:add_module("encoder", Encoder.new(o))
  self:add_module("pooler", Pooler.new(o))
end

-- batch -> last hidden state (B, T, H), pooled (B, H)
function Model:forward(batch)
  local b = check_batch(self.config, batch, self.__name .. ".forward", self.dtype)
  local x = self.embeddings(b.input_ids, b.token_type_ids)
  local hidden = self.encoder(x, attention.additive_mask(b.attention_mask, self.dtype))
  return hidden, self.pooler(hidden)
end

local Classifier = module.class("BertForSequenceClassification")

function Classifier:init(config, opts)
  local o = build_opts(config, opts)
  local cfg = o.config
  self.config, self.dtype = cfg, o.dtype
  self:add_module("bert", Model.new(nil, o))
  self:add_module("dropout", Dropout.new(cfg.classifier_dropout or cfg.hidden_dropout_prob, { rng = o.dropout_rng }))
  self:add_module("classifier", linear(o, cfg.hidden_size, cfg.num_labels))
end

-- batch -> logits (B, num_labels)
function Classifier:forward(batch)
  local _, pooled = self.bert(batch)
  return self.classifier(self.dropout(pooled))
end

-- Cross-entropy of each example (B), for DP-SGD's per-example losses; batch.labels (B) i64 of
-- 0-based classes.
function Classifier:per_sample_loss(batch)
  local who = self.__name .. ".per_sample_loss"
  if self.config.num_labels < 2 then
    raise(who .. ": num_labels = 1 (regression) is not supported; cross-entropy needs 2 or more")
  end
  local labels = type(batch) == "table" and batch.labels
  if not dp.is_tensor(labels) or labels:dim() ~= 1 or labels:dtype() ~= "i64" then
    raise(who .. ": batch.labels must be a (B) i64 tensor")
  end
  local logits = self:forward(batch)
  if labels:size(1) ~= logits:size(1) then
    raise(("%s: batch.labels has %d entries for %d examples"):format(who, labels:size(1), logits:size(1)))
  end
  return dp.cross_entropy(logits, labels, { reduction = "none" })
end

M.BertEmbeddings, M.BertIntermediate, M.BertOutput, M.BertLayer = Embeddings, Intermediate, Output, Layer
M.BertEncoder, M.BertPooler, M.BertModel = Encoder, Pooler, Model
M.BertForSequenceClassification = Classifier
M.BertSelfAttention, M.BertSelfOutput, M.BertAttention =
  attention.BertSelfAttention, attention.BertSelfOutput, attention.BertAttention
M.check_config = config_mod.check

return M
