-- Specs for dp.train.bert: the seed model's config, loading a checkpoint whose head has another
-- label count (encoder loaded, head left fresh), and export with LoRA merged under HF names.
local dp = require "dp"
local bert = require "dp.train.bert"

local root = os.tmpname()
os.remove(root)
require("dp.train.nli").mkdirs(root)

local small = { vocab_size = 20, hidden_size = 8, layers = 1, heads = 2, max_length = 12 }

local function values(model)
  local out = {}
  for _, p in ipairs(model:named_parameters()) do out[p.name] = p.tensor:float():totable() end
  return out
end

describe("dp.train.bert", function()
  teardown(function() os.execute("rm -rf '" .. root .. "'") end)

  it("builds the seed model's config", function()
    local cfg, fits = bert.config(small, 3, { [0] = "a", "b", "c" })
    assert.is_false(fits)   -- no checkpoint: nothing to fit
    assert.equal(32, cfg.intermediate_size)
    assert.equal(12, cfg.max_position_embeddings)
    assert.equal(3, cfg.num_labels)
    assert.equal(0, cfg.hidden_dropout_prob)
  end)

  it("loads a 2-label checkpoint's encoder under a fresh 3-label head", function()
    local cfg2 = bert.config(small, 2)
    local src = dp.nn.BertForSequenceClassification(cfg2, { seed = 1 })
    local dir = root .. "/two"
    bert.export(src, dir, cfg2, (function()
      local p = root .. "/vocab.txt"
      local f = assert(io.open(p, "wb")); f:write("[PAD]\n[UNK]\n"); f:close()
      return p
    end)())
    local cfg3, fits = bert.config({ model = dir }, 3)
    assert.is_false(fits)
    assert.equal(3, cfg3.num_labels)
    local dst = dp.nn.BertForSequenceClassification(cfg3, { seed = 2 })
    local fresh = values(dst)
    bert.load(dst, dir, fits)
    local a, b = values(src), values(dst)
    for name, v in pairs(b) do
      if name:find("^classifier%.") then assert.same(fresh[name], v, name)
      else assert.same(a[name], v, name) end
    end
  end)

  it("exports a LoRA model merged, with the adapted output of the unmerged one", function()
    local cfg = bert.config(small, 3)
    local model = dp.nn.BertForSequenceClassification(cfg, { seed = 3 })
    dp.nn.lora.apply(model, { rank = 2, seed = 4 })
    -- give B nonzero values so that merging changes the weights
    dp.no_grad(function()
      for _, p in ipairs(model:named_parameters()) do
        if p.name:find("lora_B") then p.tensor:copy(dp.randn(p.tensor:size(), { seed = 9 })) end
      end
    end)
    local batch = { input_ids = dp.tensor({ { 2, 5, 7, 3 }, { 2, 9, 3, 0 } }, "i64") }
    model:eval()
    local before = dp.no_grad(function() return model:forward(batch):totable() end)
    local vocab = root .. "/v.txt"
    local f = assert(io.open(vocab, "wb")); f:write("[PAD]\n"); f:close()
    bert.export(model, root .. "/lora", cfg, vocab)
    local plain = dp.nn.BertForSequenceClassification(bert.config({ model = root .. "/lora" }, 3), { seed = 0 })
    dp.hf.checkpoint.load_into(plain, root .. "/lora", { allow_missing = {}, strict = true })
    plain:eval()
    local after = dp.no_grad(function() return plain:forward(batch):totable() end)
    require("testutil").assert_close(after, before, 1e-5)
  end)
end)
