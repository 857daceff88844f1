-- Specs for dp.nn.lora: adapters start as the identity change, compute W + (alpha/r) B A, merge
-- for export under the base names, train under dp.private with the base frozen, and last-layers
-- fine-tuning freezes what it should.
local dp = require "dp"
local nn = require "dp.nn"

local tiny = { vocab_size = 23, hidden_size = 8, num_hidden_layers = 3, num_attention_heads = 2,
               intermediate_size = 12, max_position_embeddings = 9, type_vocab_size = 2, num_labels = 3,
               hidden_dropout_prob = 0, attention_probs_dropout_prob = 0 }

local function batch()
  local ids = function(r) return dp.tensor(r, "i64") end
  return {
    input_ids = ids{ { 2, 5, 7, 9, 3, 0 }, { 2, 11, 3, 0, 0, 0 }, { 2, 4, 4, 3, 8, 3 } },
    attention_mask = ids{ { 1, 1, 1, 1, 1, 0 }, { 1, 1, 1, 0, 0, 0 }, { 1, 1, 1, 1, 1, 1 } },
    labels = ids{ 0, 2, 1 },
  }
end

local function flat(t) return require("support.tiny_dp_model").flat(t) end

local function max_diff(a, b)
  local x, y, m = flat(a), flat(b), 0
  for i = 1, #x do m = math.max(m, math.abs(x[i] - y[i])) end
  return m
end

describe("dp.nn.lora", function()
  it("starts equal to the base model and trains only the adapters and the head", function()
    local m = nn.BertForSequenceClassification(tiny, { dtype = "f64", seed = 3 })
    local before = m(batch())
    local adapted = nn.lora.apply(m, { rank = 2, alpha = 4 })
    assert.are.equal(2 * tiny.num_hidden_layers, #adapted)   -- query and value of each layer
    assert.are.same(flat(before), flat(m(batch())))
    local names = {}
    for _, e in ipairs(m:trainable()) do names[#names + 1] = e.name end
    table.sort(names)
    local expect = { "classifier.bias", "classifier.weight" }
    for i = 0, tiny.num_hidden_layers - 1 do
      for _, w in ipairs{ "query", "value" } do
        for _, ab in ipairs{ "A", "B" } do
          expect[#expect + 1] = ("bert.encoder.layer.%d.attention.self.%s.lora_%s.weight"):format(i, w, ab)
        end
      end
    end
    table.sort(expect)
    assert.are.same(expect, names)
  end)

  it("computes x (W + alpha/r B A)^T + b, and merges into the base names", function()
    local m = nn.BertForSequenceClassification(tiny, { dtype = "f64", seed = 4 })
    nn.lora.apply(m, { rank = 2, alpha = 6, seed = 1 })
    local q = m:get("bert.encoder.layer.1.attention.self.query")
    dp.no_grad(function() q.lora_B.weight:copy(dp.randn({ 8, 2 }, { seed = 5, dtype = "f64" })) end)
    local x = dp.randn({ 3, 4, 8 }, { seed = 6, dtype = "f64" })
    local W = q.weight + dp.matmul(q.lora_B.weight, q.lora_A.weight) * 3
    assert.is_true(max_diff(q(x), dp.linear(x, W, q.bias)) < 1e-12)
    local out = m(batch())
    assert.are.equal(2 * tiny.num_hidden_layers, nn.lora.merge(m))
    assert.is_true(max_diff(out, m(batch())) < 1e-12)
    for _, e in ipairs(m:named_parameters()) do assert.is_nil(e.name:find("lora", 1, true), e.name) end
  end)

  it("trains under dp.private with the base frozen", function()
    local m = nn.BertForSequenceClassification(tiny, { dtype = "f32", seed = 5 })
    nn.lora.apply(m, { rank = 2, dropout = 0.1 })
    local snap = {}
    for _, e in ipairs(m:named_parameters()) do snap[e.name] = flat(e.tensor) end
    local b = batch()
    local priv = dp.private{
      params = m, optimizer = dp.optim.adam(m:trainable(), { lr = 1e-2 }), loss = function(x) return m:per_sample_loss(x) end,
      sample_rate = 0.01, noise_multiplier = 1.0, max_grad_norm = 1.0, delta = 1e-5, expected_batch_size = 3,
    }
    for _ = 1, 2 do priv:step_on(b) end
    for _, e in ipairs(m:named_parameters()) do
      local changed = not (table.concat(flat(e.tensor), ",") == table.concat(snap[e.name], ","))
      assert.are.equal(e.tensor:requires_grad(), changed, e.name)
    end
  end)

  it("last-layers fine-tuning leaves the last layers, the pooler and the head trainable", function()
    local m = nn.BertForSequenceClassification(tiny, { seed = 1 })
    nn.lora.last_layers(m, { layers = 1 })
    for _, e in ipairs(m:named_parameters()) do
      local want = e.name:find("^bert%.encoder%.layer%.2%.") or e.name:find("^bert%.pooler%.")
                   or e.name:find("^classifier%.")
      assert.are.equal(want ~= nil, e.tensor:requires_grad(), e.name)
    end
    assert.error_matches(function() nn.lora.last_layers(m, { layers = 4 }) end, "layers must be an integer in %[0, 3%]")
  end)

  it("names what it could not find", function()
    local m = nn.BertForSequenceClassification(tiny, { seed = 1 })
    assert.error_matches(function() nn.lora.apply(m, { targets = { "qkv" } }) end, "no Linear layer named qkv", nil, true)
  end)
end)
