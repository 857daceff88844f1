-- Specs for dp.hf.checkpoint: BertModel and BertForSequenceClassification checkpoints (plain,
-- legacy gamma/beta, sharded) load into a model's parameters value by value; bad ones fail
-- before any parameter changes; save writes names transformers expects.
local dp = require "dp"
local st = require "dp.hf.safetensors"
local ckpt = require "dp.hf.checkpoint"
local config = require "dp.hf.config"
local atomic = require "dp.util.atomic"
local json = require "dp.util.json"

local base = os.tmpname()
os.remove(base)
local dir = base .. "_ckpt"
atomic.ensure_dir(dir)

-- A tiny BERT's parameter names and shapes (hidden 4, vocab 6, one layer, 3 labels).
local layout = {
  { "bert.embeddings.word_embeddings.weight", { 6, 4 } },
  { "bert.embeddings.position_embeddings.weight", { 5, 4 } },
  { "bert.embeddings.LayerNorm.weight", { 4 } },
  { "bert.embeddings.LayerNorm.bias", { 4 } },
  { "bert.encoder.layer.0.attention.self.query.weight", { 4, 4 } },
  { "bert.encoder.layer.0.output.LayerNorm.weight", { 4 } },
  { "bert.pooler.dense.weight", { 4, 4 } },
  { "classifier.weight", { 3, 4 } },
  { "classifier.bias", { 3 } },
}

-- Distinct known values for tensor number k: element i is k + i / 64 (exact in f16 too).
local function values(k, shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  for i = 1, n do v[i] = k + (i - 1) / 64 end
  return v
end

local function model(dtype)
  local params = {}
  for _, e in ipairs(layout) do
    params[#params + 1] = { name = e[1], tensor = dp.zeros(e[2], { dtype = dtype, requires_grad = true }) }
  end
  return params
end

-- Checkpoint tensors named by rename(HF name) (nil drops it), values(k) in dtype.
local function checkpoint_tensors(rename, dtype)
  local tensors = {}
  for k, e in ipairs(layout) do
    local name = rename(e[1])
    if name then tensors[name] = dp.from_f64(values(k, e[2]), e[2], { dtype = dtype }) end
  end
  return tensors
end

local function flat(t)
  local out = {}
  local function walk(x)
    if type(x) == "table" then for _, v in ipairs(x) do walk(v) end else out[#out + 1] = x end
  end
  walk(t:totable())
  return out
end

-- Every parameter holds its checkpoint values; those matching skip (a fresh head) stay zero.
local function assert_loaded(params, skip)
  for k, p in ipairs(params) do
    local got, want = flat(p.tensor), values(k, layout[k][2])
    local fresh = skip and p.name:find(skip)
    assert.equal(#want, #got)
    for i = 1, #want do assert.equal(fresh and 0 or want[i], got[i], p.name .. "[" .. i .. "]") end
  end
end

describe("dp.hf.checkpoint", function()
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("loads a BertForSequenceClassification checkpoint (bert. prefix, classifier)", function()
    st.write(dir .. "/model.safetensors", checkpoint_tensors(function(n) return n end))
    local params = model()
    local r = ckpt.load_into(params, dir)
    assert.equal(#layout, r.loaded)
    assert.same({}, r.missing)
    assert.same({}, r.unexpected)
    assert_loaded(params)
  end)

  it("takes a module (anything with named_parameters) and is reachable as dp.hf.checkpoint", function()
    assert.equal(ckpt, dp.hf.checkpoint)
    st.write(dir .. "/model.safetensors", checkpoint_tensors(function(n) return n end))
    local params = model()
    local module = { named_parameters = function() return params end }
    assert.equal(#layout, ckpt.load_into(module, dir).loaded)
    assert_loaded(params)
    assert.is_true(params[1].tensor:requires_grad())   -- still a trainable leaf
  end)

  it("loads a BertModel checkpoint: no prefix, legacy gamma/beta, no head, extra tensors", function()
    local path = dir .. "/base.safetensors"
    local tensors = checkpoint_tensors(function(n)
      if n:find("^classifier") then return nil end
      return (n:gsub("^bert%.", ""):gsub("LayerNorm%.weight$", "LayerNorm.gamma"):gsub("LayerNorm%.bias$", "LayerNorm.beta"))
    end, "f16")   -- converted to the parameters' f32 on the way
    tensors["cls.predictions.bias"] = dp.zeros(6)
    st.write(path, tensors)
    local params = model()
    local r = ckpt.load_into(params, path)
    assert.equal(#layout - 2, r.loaded)
    assert.same({ "classifier.weight", "classifier.bias" }, r.missing)
    assert.same({ "cls.predictions.bias" }, r.unexpected)
    assert_loaded(params, "^classifier")
    assert.error_matches(function() ckpt.load_into(model(), path, { strict = true }) end,
      path .. " has tensors the model does not: cls.predictions.bias", nil, true)
  end)

  it("loads a sharded checkpoint through its index", function()
    local sub = dir .. "/sharded"
    atomic.ensure_dir(sub)
    local all = checkpoint_tensors(function(n) return n end)
    local a, b, map = {}, {}, json.object({})
    for k, e in ipairs(layout) do
      local shard = k % 2 == 0 and "model-00001-of-00002.safetensors" or "model-00002-of-00002.safetensors"
      ;(k % 2 == 0 and a or b)[e[1]] = all[e[1]]
      map[e[1]] = shard
    end
    st.write(sub .. "/model-00001-of-00002.safetensors", a)
    st.write(sub .. "/model-00002-of-00002.safetensors", b)
    local index = sub .. "/model.safetensors.index.json"
    local f = assert(io.open(index, "wb"))
    f:write(json.encode({ metadata = { total_size = 0 }, weight_map = map }))
    f:close()
    local params = model("f64")
    assert.equal(#layout, ckpt.load_into(params, sub).loaded)
    assert_loaded(params)
    -- An index naming a tensor its shard lacks.
    map["bert.pooler.dense.bias"] = "model-00001-of-00002.safetensors"
    f = assert(io.open(index, "wb"))
    f:write(json.encode({ weight_map = map }))
    f:close()
    assert.error_matches(function() ckpt.load_into(model(), sub) end,
      index .. ': the index puts tensor "bert.pooler.dense.bias" in ' .. sub ..
      "/model-00001-of-00002.safetensors, which has no such tensor", nil, true)
  end)

  it("a shape mismatch names the tensor, the file and both shapes, and changes nothing", function()
    local path = dir .. "/wrong.safetensors"
    local tensors = checkpoint_tensors(function(n) return n end)
    tensors["bert.pooler.dense.weight"] = dp.zeros(4, 5)
    st.write(path, tensors)
    local params = model()
    assert.error_matches(function() ckpt.load_into(params, path) end,
      'checkpoint: tensor "bert.pooler.dense.weight" in ' .. path ..
      " has shape [4, 5], but the model's bert.pooler.dense.weight has shape [4, 4]", nil, true)
    for _, p in ipairs(params) do
      for _, v in ipairs(flat(p.tensor)) do assert.equal(0, v) end
    end
  end)

  it("missing encoder tensors and ambiguous spellings are errors", function()
    local path = dir .. "/missing.safetensors"
    st.write(path, checkpoint_tensors(function(n) return not n:find("query") and n or nil end))
    assert.error_matches(function() ckpt.load_into(model(), path) end,
      path .. " lacks 1 of the model's tensors: bert.encoder.layer.0.attention.self.query.weight", nil, true)
    local both = checkpoint_tensors(function(n) return n end)
    both["bert.embeddings.LayerNorm.gamma"] = dp.zeros(4)
    st.write(path, both)
    assert.error_matches(function() ckpt.load_into(model(), path) end,
      'are both the model\'s "embeddings.LayerNorm.weight"', nil, true)
    assert.error_matches(function() ckpt.load_into(model(), dir .. "/nothing") end,
      "has neither model.safetensors nor model.safetensors.index.json", nil, true)
  end)

  it("saves with the same names, format pt metadata and config.json; loads back", function()
    local src = model()
    for k, p in ipairs(src) do p.tensor:copy(dp.from_f64(values(k, layout[k][2]), layout[k][2])) end
    local out = dir .. "/saved"
    local cfg = { hidden_size = 4, num_attention_heads = 2, vocab_size = 6, num_hidden_layers = 1,
                  intermediate_size = 8, max_position_embeddings = 5, num_labels = 3,
                  architectures = { "BertForSequenceClassification" } }
    ckpt.save(src, out, { config = cfg })
    local r = st.read(out .. "/model.safetensors")
    assert.equal("pt", r.metadata.format)
    local names = {}
    for _, e in ipairs(layout) do names[#names + 1] = e[1] end
    table.sort(names)
    assert.same(names, r.names)
    assert.equal(8, config.read_bert_config(out .. "/config.json").intermediate_size)
    local back = model()
    ckpt.load_into(back, out)
    assert_loaded(back)
    -- As bf16 on request.
    ckpt.save(src, out, { dtype = "bf16" })
    assert.equal("BF16", st.read_header(out .. "/model.safetensors").entries["classifier.bias"].dtype)
  end)
end)
