-- dp.nn.bert_config: checks a Hugging Face BertConfig table (as read from config.json) and fills
local raise = require("dp.ffi").raise
-- missing fields with BertConfig's defaults; an error names the field and what was expected.
local M = {}

-- transformers' BertConfig defaults (num_labels is PretrainedConfig's).
M.defaults = {
  vocab_size = 30522, hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12,
  intermediate_size = 3072, hidden_act = "gelu", hidden_dropout_prob = 0.1,
  attention_probs_dropout_prob = 0.1, max_position_embeddings = 512, type_vocab_size = 2,
  initializer_range = 0.02, layer_norm_eps = 1e-12, num_labels = 2,
  position_embedding_type = "absolute",
}

-- The activations the intermediate layer supports, by HF's hidden_act names ("gelu" is the exact
-- erf form, as dp.gelu).
M.activations = { gelu = "gelu", relu = "relu", tanh = "tanh" }

local function fail(field, expected, got)
  raise(("bert config: %s must be %s, got %s"):format(field, expected,
        type(got) == "string" and ("%q"):format(got) or tostring(got)))
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- M.check(config) -> a new table with every field set and checked; unknown fields (model_type,
-- architectures, ...) are copied through untouched.
function M.check(config)
  if type(config) ~= "table" then fail("config", "a table", config) end
  local cfg = {}
  for k, v in pairs(config) do cfg[k] = v end
  -- HF derives num_labels from id2label when only that is given.
  if cfg.num_labels == nil and type(cfg.id2label) == "table" then cfg.num_labels = count_keys(cfg.id2label) end
  for k, v in pairs(M.defaults) do if cfg[k] == nil then cfg[k] = v end end
  for _, f in ipairs { "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                       "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels" } do
    local v = cfg[f]
    if type(v) ~= "number" or v < 1 or v % 1 ~= 0 then fail(f, "a positive integer", v) end
  end
  for _, f in ipairs { "hidden_dropout_prob", "attention_probs_dropout_prob" } do
    local v = cfg[f]
    if type(v) ~= "number" or v < 0 or v >= 1 then fail(f, "a probability in [0, 1)", v) end
  end
  if cfg.classifier_dropout ~= nil then
    local v = cfg.classifier_dropout
    if type(v) ~= "number" or v < 0 or v >= 1 then fail("classifier_dropout", "a probability in [0, 1) or null", v) end
  end
  for _, f in ipairs { "initializer_range", "layer_norm_eps" } do
    local v = cfg[f]
    if type(v) ~= "number" or v <= 0 then fail(f, "a positive number", v) end
  end
  if not M.activations[cfg.hidden_act] then fail("hidden_act", "one of \"gelu\", \"relu\", \"tanh\"", cfg.hidden_act) end
  if cfg.position_embedding_type ~= "absolute" then
    fail("position_embedding_type", "\"absolute\" (the only kind supported)", cfg.position_embedding_type)
  end
  if cfg.hidden_size % cfg.num_attention_heads ~= 0 then
    fail("hidden_size", ("a multiple of num_attention_heads (%d)"):format(cfg.num_attention_heads), cfg.hidden_size)
  end
  return cfg
end

return M
