-- Specs for dp.hf.config: BertConfig's config.json read with transformers' defaults, errors that
-- name the file and the field, and atomic writes.
local config = require "dp.hf.config"
local atomic = require "dp.util.atomic"
local json = require "dp.util.json"

local base = os.tmpname()
os.remove(base)
local dir = base .. "_cfg"
atomic.ensure_dir(dir)

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- bert-base-uncased's config.json as published, plus id2label from a fine-tuned SNLI model.
local bert_base = [[
{
  "architectures": ["BertForSequenceClassification"],
  "attention_probs_dropout_prob": 0.1,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "id2label": {"0": "entailment", "1": "neutral", "2": "contradiction"},
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "type_vocab_size": 2,
  "vocab_size": 30522
}
]]

describe("dp.hf.config", function()
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("reads bert-base's config with defaults and num_labels from id2label", function()
    local cfg = config.read_bert_config(spit(dir .. "/config.json", bert_base))
    assert.equal(30522, cfg.vocab_size)
    assert.equal(768, cfg.hidden_size)
    assert.equal(12, cfg.num_hidden_layers)
    assert.equal(12, cfg.num_attention_heads)
    assert.equal(3072, cfg.intermediate_size)
    assert.equal("gelu", cfg.hidden_act)
    assert.equal(0.1, cfg.hidden_dropout_prob)
    assert.equal(512, cfg.max_position_embeddings)
    assert.equal(2, cfg.type_vocab_size)
    assert.equal(1e-12, cfg.layer_norm_eps)          -- default: absent from the file
    assert.equal(0.02, cfg.initializer_range)
    assert.equal("bert", cfg.model_type)
    assert.same({ "BertForSequenceClassification" }, cfg.architectures)
    assert.equal(3, cfg.num_labels)
    assert.equal("entailment", cfg.id2label[0])
    assert.equal("contradiction", cfg.id2label[2])
  end)

  it("defaults num_labels to 2 and keeps fields it does not know", function()
    local cfg = config.read_bert_config(spit(dir .. "/small.json",
      '{"hidden_size": 8, "num_attention_heads": 2, "vocab_size": 50, "gradient_checkpointing": false}'))
    assert.equal(2, cfg.num_labels)
    assert.equal(8, cfg.hidden_size)
    assert.equal(12, cfg.num_hidden_layers)
    assert.is_false(cfg.gradient_checkpointing)
  end)

  it("names the file and field of bad input", function()
    local function bad(text, pattern)
      local path = spit(dir .. "/bad.json", text)
      assert.error_matches(function() config.read_bert_config(path) end, path .. pattern, nil, true)
    end
    assert.error_matches(function() config.read_bert_config(dir .. "/none.json") end,
      "bert config: cannot open " .. dir .. "/none.json", nil, true)
    bad('{\n  "hidden_size": 8,\n  "vocab_size" 5\n}', " is not valid JSON: json.decode: expected ':' after object key at line 3 column 16")
    bad("[1]", ": the config must be a JSON object")
    bad('{"hidden_size": 10, "num_attention_heads": 4}', ": hidden_size must be a multiple of num_attention_heads (4), got 10")
    bad('{"vocab_size": 0}', ": vocab_size must be a positive integer, got 0")
    bad('{"num_hidden_layers": -2}', ": num_hidden_layers must be a positive integer, got -2")
    bad('{"intermediate_size": "3072"}', ': intermediate_size must be a positive integer, got "3072"')
    bad('{"hidden_act": "gelu_new"}', ': hidden_act must be one of "gelu", "relu", "tanh" (the activations implemented), got "gelu_new"')
    bad('{"hidden_dropout_prob": 1.5}', ": hidden_dropout_prob must be a probability in [0, 1), got 1.5")
    bad('{"layer_norm_eps": 0}', ": layer_norm_eps must be a positive number, got 0")
    bad('{"model_type": "roberta"}', ': model_type must be "bert", got "roberta"')
    bad('{"position_embedding_type": "relative_key"}', ': position_embedding_type must be "absolute"')
    bad('{"id2label": {"0": "a", "2": "b"}}', ": id2label must be ids 0..1 without gaps")
    bad('{"id2label": {"0": "a"}, "num_labels": 3}', ": num_labels must be 1, the size of id2label, got 3")
  end)

  it("writes a config that reads back the same, as transformers lays it out", function()
    local cfg = config.read_bert_config(spit(dir .. "/in.json", bert_base))
    cfg.hidden_size, cfg.num_attention_heads = 64, 4
    local path = dir .. "/out.json"
    config.write_bert_config(path, cfg)
    local raw = json.decode(slurp(path))
    assert.same({ ["0"] = "entailment", ["1"] = "neutral", ["2"] = "contradiction" }, raw.id2label)
    assert.same({ entailment = 0, neutral = 1, contradiction = 2 }, raw.label2id)
    assert.is_nil(raw.num_labels)
    local back = config.read_bert_config(path)
    for k, v in pairs(cfg) do assert.same(v, back[k], k) end
    -- Without id2label: transformers' LABEL_<i> names.
    config.write_bert_config(path, { hidden_size = 8, num_attention_heads = 2, num_labels = 3 })
    assert.same({ ["0"] = "LABEL_0", ["1"] = "LABEL_1", ["2"] = "LABEL_2" }, json.decode(slurp(path)).id2label)
  end)

  it("a failed write leaves the old file byte-identical and no temp file", function()
    local path = dir .. "/keep.json"
    config.write_bert_config(path, { hidden_size = 8, num_attention_heads = 2 })
    local before = slurp(path)
    assert.error_matches(function() config.write_bert_config(path, { hidden_size = 9, num_attention_heads = 2 }) end,
      path .. ": hidden_size must be a multiple", nil, true)
    assert.error_matches(function() config.write_bert_config(path, { vocab_size = 5, pad_token_id = 7 }) end,
      path .. ": pad_token_id must be an integer in [0, vocab_size = 5)", nil, true)
    assert.equal(before, slurp(path))
    assert.is_nil(slurp(atomic.temp_name(path)))
    assert.error_matches(function() config.write_bert_config(dir .. "/missing/config.json", {}) end,
      "cannot create " .. dir .. "/missing/config.json.tmp-", nil, true)
  end)
end)
