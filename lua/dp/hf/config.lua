-- dp.hf.config: reads and writes a Hugging Face BertConfig config.json, filling transformers'
-- defaults and checking every field; errors name the file, the field and what was expected.
local json = require "dp.util.json"
local atomic = require "dp.util.atomic"

local M = {}

-- transformers' BertConfig defaults (num_labels is PretrainedConfig's).
M.defaults = {
  vocab_size = 30522, hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12,
  intermediate_size = 3072, hidden_act = "gelu", hidden_dropout_prob = 0.1,
  attention_probs_dropout_prob = 0.1, max_position_embeddings = 512, type_vocab_size = 2,
  initializer_range = 0.02, layer_norm_eps = 1e-12, pad_token_id = 0,
  position_embedding_type = "absolute", model_type = "bert",
}

-- Activations the encoder implements, by HF's hidden_act name ("gelu" is the exact erf form).
-- "gelu_new" (tanh approximation) and others are refused rather than silently changed.
M.activations = { gelu = true, relu = true, tanh = true }

local function fail(path, field, expected, got)
  local shown = type(got) == "string" and ("%q"):format(got)
                or (type(got) == "table" and (got == json.null and "null" or json.encode(got)))
                or tostring(got)
  error(("bert config: %s: %s must be %s, got %s"):format(path, field, expected, shown), 0)
end

local positive_ints = { "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                        "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels" }

-- check(cfg, path) -> a new table with defaults filled in and every field checked. Fields this
-- module does not know are copied through (they are written back as they came).
function M.check(config, path)
  path = path or "(config table)"
  if type(config) ~= "table" or config == json.null then fail(path, "the config", "a JSON object", config) end
  local cfg = {}
  for k, v in pairs(config) do if v ~= json.null then cfg[k] = v end end
  -- id2label: {"0": "entailment", ...} in JSON; kept as a 0-based Lua table {[0] = ...}.
  if cfg.id2label ~= nil then
    if type(cfg.id2label) ~= "table" then fail(path, "id2label", "an object {\"0\": label, ...}", cfg.id2label) end
    local labels, n = {}, 0
    for k, v in pairs(cfg.id2label) do
      local id = tonumber(k)
      if not id or id < 0 or id % 1 ~= 0 or type(v) ~= "string" then
        fail(path, "id2label", "an object of \"<id>\": \"<label>\"", cfg.id2label)
      end
      labels[id], n = v, n + 1
    end
    for id = 0, n - 1 do
      if labels[id] == nil then fail(path, "id2label", ("ids 0..%d without gaps"):format(n - 1), cfg.id2label) end
    end
    if cfg.num_labels ~= nil and cfg.num_labels ~= n then
      fail(path, "num_labels", ("%d, the size of id2label"):format(n), cfg.num_labels)
    end
    cfg.id2label, cfg.num_labels = labels, n
    cfg.label2id = nil   -- derived from id2label when written
  end
  cfg.num_labels = cfg.num_labels or 2
  for k, v in pairs(M.defaults) do if cfg[k] == nil then cfg[k] = v end end
  for _, f in ipairs(positive_ints) do
    local v = cfg[f]
    if type(v) ~= "number" or v < 1 or v % 1 ~= 0 then fail(path, f, "a positive integer", v) end
  end
  for _, f in ipairs { "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout" } do
    local v = cfg[f]
    if v ~= nil and (type(v) ~= "number" or v < 0 or v >= 1) then fail(path, f, "a probability in [0, 1)", v) end
  end
  for _, f in ipairs { "initializer_range", "layer_norm_eps" } do
    local v = cfg[f]
    if type(v) ~= "number" or v <= 0 then fail(path, f, "a positive number", v) end
  end
  if type(cfg.pad_token_id) ~= "number" or cfg.pad_token_id < 0 or cfg.pad_token_id % 1 ~= 0
     or cfg.pad_token_id >= cfg.vocab_size then
    fail(path, "pad_token_id", ("an integer in [0, vocab_size = %d)"):format(cfg.vocab_size), cfg.pad_token_id)
  end
  if not M.activations[cfg.hidden_act] then
    fail(path, "hidden_act", "one of \"gelu\", \"relu\", \"tanh\" (the activations implemented)", cfg.hidden_act)
  end
  if cfg.position_embedding_type ~= "absolute" then
    fail(path, "position_embedding_type", "\"absolute\" (the only kind implemented)", cfg.position_embedding_type)
  end
  if cfg.model_type ~= "bert" then fail(path, "model_type", "\"bert\"", cfg.model_type) end
  if cfg.hidden_size % cfg.num_attention_heads ~= 0 then
    fail(path, "hidden_size", ("a multiple of num_attention_heads (%d)"):format(cfg.num_attention_heads), cfg.hidden_size)
  end
  if cfg.architectures ~= nil then
    local ok = type(cfg.architectures) == "table"
    for _, a in pairs(ok and cfg.architectures or {}) do ok = ok and type(a) == "string" end
    if not ok then fail(path, "architectures", "a list of class names", cfg.architectures) end
  end
  return cfg
end

-- read_bert_config(path) -> checked config table (see check).
function M.read_bert_config(path)
  local f, err = io.open(path, "rb")
  if not f then error(("bert config: cannot open %s: %s"):format(path, tostring(err)), 0) end
  local text = f:read("*a")
  f:close()
  local ok, value = pcall(json.decode, text)
  if not ok then error(("bert config: %s is not valid JSON: %s"):format(path, tostring(value)), 0) end
  if type(value) ~= "table" or value[1] ~= nil then fail(path, "the config", "a JSON object", value) end
  return M.check(value, path)
end

-- write_bert_config(path, cfg): checks cfg, then writes it atomically as HF's JSON (id2label
-- with string ids and the matching label2id).
function M.write_bert_config(path, config)
  local cfg = M.check(config, path)
  local out = json.object({})
  for k, v in pairs(cfg) do out[k] = v end
  -- As transformers saves it: id2label (LABEL_<i> by default) and label2id, not num_labels.
  local id2label, label2id = json.object({}), json.object({})
  for id = 0, cfg.num_labels - 1 do
    local label = cfg.id2label and cfg.id2label[id] or ("LABEL_%d"):format(id)
    id2label[tostring(id)] = label
    label2id[label] = id
  end
  out.id2label, out.label2id, out.num_labels = id2label, label2id, nil
  atomic.write_string(path, json.encode(out, { indent = "  " }) .. "\n", "bert config: write")
end

return M
