-- Specs for dp.nn.bert: Hugging Face parameter names, parameter counts, config and input checks,
-- gradients against finite differences, and DP-SGD: per-example norms from the engine against one
-- example at a time through plain autograd (f64), and two dp.private steps.
local dp = require "dp"
local nn = require "dp.nn"
local engine = require "dp.privacy.engine"
local gradcheck = require "dp.testing.gradcheck"
local bert_batch = require "support.bert_batch"

local V, H, L, A, I, P, TV, C = 23, 8, 2, 2, 12, 9, 2, 3
local tiny = { vocab_size = V, hidden_size = H, num_hidden_layers = L, num_attention_heads = A,
               intermediate_size = I, max_position_embeddings = P, type_vocab_size = TV, num_labels = C,
               hidden_dropout_prob = 0, attention_probs_dropout_prob = 0 }

local function with(changes)
  local c = {}
  for k, v in pairs(tiny) do c[k] = v end
  for k, v in pairs(changes) do c[k] = v end
  for k, v in pairs(changes) do if v == false then c[k] = nil end end   -- false: drop the field
  return c
end

local ids, batch = bert_batch.ids, bert_batch.batch   -- a padded batch of 4 examples, T = 6

local function example(b, i)
  local out = {}
  for k, t in pairs(b) do if dp.is_tensor(t) then out[k] = t:narrow(1, i, 1) end end
  return out
end

-- The keys of transformers' BertForSequenceClassification state dict, in its order.
local function hf_keys()
  local keys = {}
  local function add(prefix, ...) for _, s in ipairs { ... } do keys[#keys + 1] = prefix .. s end end
  add("bert.embeddings.", "word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
      "LayerNorm.weight", "LayerNorm.bias")
  for l = 0, L - 1 do
    local p = "bert.encoder.layer." .. l .. "."
    add(p .. "attention.self.", "query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias")
    add(p .. "attention.output.", "dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias")
    add(p, "intermediate.dense.weight", "intermediate.dense.bias")
    add(p .. "output.", "dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias")
  end
  add("", "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias")
  return keys
end

describe("dp.nn.bert", function()
  it("names parameters exactly as Hugging Face's state dict, with its shapes", function()
    local m = nn.BertForSequenceClassification(tiny)
    local got = {}
    for k, e in ipairs(m:named_parameters()) do got[k] = e.name end
    assert.are.same(hf_keys(), got)
    assert.are.same({ V, H }, m:get("bert.embeddings.word_embeddings.weight"):size())
    assert.are.same({ I, H }, m:get("bert.encoder.layer.1.intermediate.dense.weight"):size())
    assert.are.same({ H, I }, m:get("bert.encoder.layer.1.output.dense.weight"):size())
    assert.are.same({ C, H }, m:get("classifier.weight"):size())
    local base = nn.BertModel(tiny)
    assert.are.equal("embeddings.word_embeddings.weight", base:named_parameters()[1].name)
  end)

  it("counts parameters as the closed form, and trainable ones after freezing", function()
    local layer = 3 * (H * H + H) + (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    local total = (V + P + TV) * H + 2 * H + L * layer + (H * H + H) + (H * C + C)
    local m = nn.BertForSequenceClassification(tiny)
    assert.are.equal(total, m:num_parameters())
    assert.are.equal(16 * L, m:freeze("^bert%.encoder%."))  -- 16 tensors per layer
    assert.are.equal(total - L * layer, m:num_parameters{ trainable_only = true })
    local rows = 0
    for l in m:summary():gmatch("[^\n]+") do if l:match("^%S+%s+%(") then rows = rows + 1 end end
    assert.are.equal(#hf_keys(), rows)  -- one row per parameter (name, then its shape)
  end)

  it("initialises weights N(0, initializer_range^2), biases 0 and LayerNorm 1/0, reproducibly by seed", function()
    local m = nn.BertForSequenceClassification(with{ initializer_range = 0.5 }, { seed = 7 })
    local w = m:get("bert.embeddings.word_embeddings.weight"):totable()
    local s2, n = 0, 0
    for _, row in ipairs(w) do for _, v in ipairs(row) do s2, n = s2 + v * v, n + 1 end end
    assert.is_true(math.abs(math.sqrt(s2 / n) - 0.5) < 0.1)  -- 184 draws
    assert.are.same({ 1, 1, 1, 1, 1, 1, 1, 1 }, m:get("bert.encoder.layer.0.output.LayerNorm.weight"):totable())
    assert.are.same({ 0, 0, 0 }, m:get("classifier.bias"):totable())
    local again = nn.BertForSequenceClassification(with{ initializer_range = 0.5 }, { seed = 7 })
    assert.are.same(w, again:get("bert.embeddings.word_embeddings.weight"):totable())
  end)

  it("rejects bad config fields, naming the field and what was expected", function()
    local B = nn.BertForSequenceClassification
    assert.error_matches(function() B(with{ hidden_size = 7 }) end, "hidden_size must be a multiple of num_attention_heads %(2%), got 7")
    assert.error_matches(function() B(with{ vocab_size = "30" }) end, "vocab_size must be a positive integer")
    assert.error_matches(function() B(with{ hidden_dropout_prob = 1.5 }) end, "hidden_dropout_prob must be a probability")
    assert.error_matches(function() B(with{ hidden_act = "swish" }) end, "hidden_act must be one of")
    assert.error_matches(function() B(with{ layer_norm_eps = -1 }) end, "layer_norm_eps must be a positive number")
    assert.error_matches(function() B(with{ position_embedding_type = "relative_key" }) end, "position_embedding_type")
    assert.error_matches(function() B(5) end, "config must be a table")
    local m = B(with{ num_labels = false, id2label = { ["0"] = "a", ["1"] = "b" } })
    assert.are.same({ 2, H }, m.classifier.weight:size())
  end)

  it("checks the batch: shapes, dtypes and length against max_position_embeddings", function()
    local m = nn.BertForSequenceClassification(tiny)
    local long = {}
    for t = 1, P + 1 do long[t] = 1 end
    assert.error_matches(function() m{ input_ids = ids{ long } } end, "10 positions, more than max_position_embeddings %(9%)")
    assert.error_matches(function() m{ input_ids = dp.ones{ 2, 3 } } end, "input_ids must be a %(B, T%) i64 tensor")
    assert.error_matches(function() m{ input_ids = ids{ { 1, 2 } }, attention_mask = ids{ { 1, 1, 1 } } } end,
      "attention_mask must be a %(1, 2%) tensor")
    assert.error_matches(function() m:per_sample_loss{ input_ids = ids{ { 1, 2 } } } end, "labels must be a %(B%) i64")
    -- optional token types and mask default to zeros and ones
    local b = batch()
    local full = m{ input_ids = b.input_ids, token_type_ids = dp.zeros({ 4, 6 }, "i64"), attention_mask = dp.ones({ 4, 6 }, "i64") }
    assert.are.same(full:totable(), m{ input_ids = b.input_ids }:totable())
    assert.are.same({ 4, C }, full:size())
  end)

  it("gives per-example cross-entropy equal to -log softmax(logits)[label]", function()
    local m = nn.BertForSequenceClassification(tiny, { dtype = "f64", seed = 2 })
    local b = batch()
    local logits, loss, labels = m(b):totable(), m:per_sample_loss(b):totable(), b.labels:totable()
    for i = 1, 4 do
      local z = 0
      for c = 1, C do z = z + math.exp(logits[i][c]) end
      assert.is_true(math.abs(loss[i] - (math.log(z) - logits[i][labels[i] + 1])) < 1e-12)
    end
  end)

  it("has gradients that match finite differences (f64, eval mode)", function()
    local m = nn.BertForSequenceClassification(with{ hidden_dropout_prob = 0.1, initializer_range = 0.3 },
                                               { dtype = "f64", seed = 4 }):eval()
    local b = batch()
    local inputs = {}
    for _, name in ipairs { "classifier.weight", "bert.pooler.dense.bias", "bert.encoder.layer.0.attention.self.query.weight",
                            "bert.encoder.layer.1.intermediate.dense.weight", "bert.embeddings.LayerNorm.weight",
                            "bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight" } do
      inputs[#inputs + 1] = m:get(name)
    end
    local ok, report = gradcheck.check(function() return m:per_sample_loss(b) end, inputs, { max_elements = 8 })
    assert.is_true(ok, report)
  end)

  describe("under DP-SGD", function()
    for _, form in ipairs { "ghost", "materialise" } do
    it("gives per-example norms equal to one example at a time through plain autograd (f64, " .. form .. ")", function()
      local m = nn.BertForSequenceClassification(with{ initializer_range = 0.3 }, { dtype = "f64", seed = 5 })
      m:freeze("^bert%.embeddings%.token_type")
      local b = batch()
      local trainable = m:trainable()
      local tensors = {}
      for k, e in ipairs(trainable) do tensors[k] = e.tensor end
      local ref = {}
      for i = 1, b.n do
        local grads = dp.grad(m:per_sample_loss(example(b, i)):sum(), tensors)
        local s = 0
        for _, g in ipairs(grads) do s = s + g:pow(2):sum():item() end
        ref[i] = math.sqrt(s)
      end
      local eng = engine.new(m:named_parameters())
      eng:set_form(nil, form)
      eng:begin(b.n)
      eng:active(function() m:per_sample_loss(b):backward(dp.ones({ b.n }, { dtype = "f64" })) end)
      eng:compute_norms()
      local norms = eng:sample_norms()
      for i = 1, b.n do
        assert.is_true(math.abs(norms[i] - ref[i]) <= 1e-9 * ref[i], ("example %d: %.17g vs %.17g"):format(i, norms[i], ref[i]))
      end
      for _, e in ipairs(m:named_parameters()) do e.tensor:set_grad(nil) end
    end)
    end

    it("trains two dp.private steps, changing trainable parameters and leaving frozen ones", function()
      local m = nn.BertForSequenceClassification(with{ hidden_dropout_prob = 0.1 }, { seed = 6 })
      m:freeze("^bert%.embeddings%.")
      local b = batch()
      local frozen = m:get("bert.embeddings.word_embeddings.weight"):totable()
      local head = m:get("classifier.weight"):totable()
      local priv = dp.private{
        params = m, optimizer = dp.optim.sgd(m:trainable(), { lr = 0.1 }),
        data = dp.data.tensors{ input_ids = b.input_ids, token_type_ids = b.token_type_ids,
                                attention_mask = b.attention_mask, labels = b.labels },
        loss = function(batch_) return m:per_sample_loss(batch_) end,
        sample_rate = 0.75, noise_multiplier = 1.0, max_grad_norm = 1.0, delta = 1e-5, seed = 3,
      }
      for _ = 1, 2 do
        local st = priv:step()
        assert.is_true(st.epsilon > 0)
      end
      assert.are.same(frozen, m:get("bert.embeddings.word_embeddings.weight"):totable())
      assert.are_not.same(head, m:get("classifier.weight"):totable())
      assert.is_true(priv:epsilon() > 0)
    end)
  end)
end)
