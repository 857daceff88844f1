-- Specs for the fused linear + activation path: dp.linear_act, Linear:forward_act (against
-- dp[act] of the layer's own output, and its fallbacks under fp8 and LoRA), and BERT's
-- intermediate layer through it: output, LoRA on intermediate.dense, and per-example norms under
-- the DP engine against the unfused path.
local dp = require "dp"
local nn = require "dp.nn"
local precision = require "dp.precision"
local engine_mod = require "dp.privacy.engine"

local function max_rel_diff(a, b)
  local fa, fb = a:cast("f64"):reshape({ -1 }):totable(), b:cast("f64"):reshape({ -1 }):totable()
  assert.are.equal(#fb, #fa)
  local m = 0
  for i = 1, #fa do m = math.max(m, math.abs(fa[i] - fb[i]) / (1 + math.abs(fb[i]))) end
  return m
end

local function apply_act(y, act) return act == "none" and y or dp[act](y) end

local tiny = { vocab_size = 23, hidden_size = 8, num_hidden_layers = 2, num_attention_heads = 2,
               intermediate_size = 12, max_position_embeddings = 9, type_vocab_size = 2, num_labels = 3,
               hidden_dropout_prob = 0, attention_probs_dropout_prob = 0, initializer_range = 0.3 }

local batch = require("support.bert_batch").batch   -- a padded batch of 4 examples, T = 6

local function intermediates(m)
  local out, list = {}, m:get("bert.encoder.layer")
  for i = 1, list.n do out[i] = list[i].intermediate end
  return out
end

describe("dp.linear_act", function()
  it("equals dp[act](dp.linear(x, w, b)) and rejects an unknown act by name", function()
    local x = dp.randn({ 3, 4, 5 }, { seed = 1, dtype = "f64" })
    local w = dp.randn({ 6, 5 }, { seed = 2, dtype = "f64" })
    local b = dp.randn({ 6 }, { seed = 3, dtype = "f64" })
    for _, act in ipairs { "gelu", "relu", "tanh", "none" } do
      assert.is_true(max_rel_diff(dp.linear_act(x, w, b, act), apply_act(dp.linear(x, w, b), act)) < 1e-12, act)
      assert.is_true(max_rel_diff(dp.linear_act(x, w, nil, act), apply_act(dp.linear(x, w), act)) < 1e-12, act)
    end
    assert.error_matches(function() dp.linear_act(x, w, b, "swish") end,
      'linear_act: act must be "gelu", "relu", "tanh" or "none", got "swish"', nil, true)
    assert.error_matches(function() dp.linear_act(x, w, b) end, "act must be", nil, true)
    assert.error_matches(function() dp.linear_act(x, w:narrow(2, 1, 4), b, "gelu") end,
      "dp_linear_act: expected input width 4, got 5", nil, true)
  end)
end)

describe("dp.nn.Linear:forward_act", function()
  it("equals dp[act](Linear(x)) as one linear_act node, gradients included", function()
    for _, dt in ipairs { "f32", "f64" } do
      local tol = dt == "f64" and 1e-12 or 1e-6
      local l = nn.Linear(5, 7, { rng = dp.rng(3), std = 0.7, dtype = dt })
      dp.no_grad(function() l.bias:copy(dp.randn({ 7 }, { seed = 4, dtype = dt })) end)
      local x = dp.randn({ 2, 3, 5 }, { seed = 5, dtype = dt })
      for _, act in ipairs { "gelu", "relu", "tanh" } do
        local y = l:forward_act(x, act)
        assert.are.equal("linear_act", y:op_name())
        local want = apply_act(l(x), act)
        assert.is_true(max_rel_diff(y, want) < tol, dt .. " " .. act)
        local r = dp.randn({ 2, 3, 7 }, { seed = 6, dtype = dt })
        local g1 = dp.grad((y * r):sum(), { l.weight, l.bias })
        local g2 = dp.grad((want * r):sum(), { l.weight, l.bias })
        for k = 1, 2 do assert.is_true(max_rel_diff(g1[k], g2[k]) < 10 * tol, dt .. " " .. act .. " grad " .. k) end
      end
    end
    local l = nn.Linear(2, 3)
    assert.error_matches(function() l:forward_act(dp.zeros({ 1, 2 }), "swish") end,
      'Linear.forward_act: act must be "gelu", "relu", "tanh" or "none", got "swish"', nil, true)
  end)

  it("casts x under a bf16 policy like a call, and falls back to dp[act] of the output under fp8", function()
    local l = nn.Linear(6, 3, { rng = dp.rng(11), std = 0.8 })
    precision.apply(l, "bf16")
    local x = dp.randn({ 4, 6 }, { seed = 7 })
    local y = l:forward_act(x, "gelu")
    assert.are.equal("bf16", y:dtype())
    assert.are.equal("linear_act", y:op_name())
    assert.is_true(max_rel_diff(y, dp.gelu(l(x))) < 1e-2)
    local f = nn.Linear(6, 3, { rng = dp.rng(11), std = 0.8 })
    precision.apply(f, precision.policy({ preset = "fp8", fp8 = { scaling = "per_example" } }))
    local yf = f:forward_act(x, "gelu")
    assert.are.equal("gelu", yf:op_name())
    assert.are.same(dp.gelu(f(x)):cast("f64"):totable(), yf:cast("f64"):totable())
  end)
end)

describe("dp.nn.bert intermediate through linear_act", function()
  it("uses the fused op and gives the unfused output", function()
    local m = nn.BertForSequenceClassification(tiny, { dtype = "f64", seed = 2 })
    local x = dp.randn({ 4, 6, 8 }, { seed = 8, dtype = "f64" })
    for _, inter in ipairs(intermediates(m)) do
      local y = inter(x)
      assert.are.equal("linear_act", y:op_name())
      assert.is_true(max_rel_diff(y, dp.gelu(inter.dense(x))) < 1e-12)
    end
  end)

  it("still works with LoRA targets including intermediate.dense (unfused, adapter included)", function()
    local m = nn.BertForSequenceClassification(tiny, { dtype = "f64", seed = 3 })
    nn.lora.apply(m, { rank = 2, alpha = 4, targets = { "query", "value", "dense" } })
    local x = dp.randn({ 4, 6, 8 }, { seed = 9, dtype = "f64" })
    for _, inter in ipairs(intermediates(m)) do
      local d = inter.dense
      assert.is_not_nil(d.lora_A)
      dp.no_grad(function() d.lora_B.weight:copy(dp.randn({ 12, 2 }, { seed = 10, dtype = "f64" })) end)
      local W = d.weight + dp.matmul(d.lora_B.weight, d.lora_A.weight) * 2
      assert.is_true(max_rel_diff(inter(x), dp.gelu(dp.linear(x, W, d.bias))) < 1e-12)
    end
    local b = batch()
    local loss = m:per_sample_loss(b):sum()
    loss:backward()
    assert.is_not_nil(m:get("bert.encoder.layer.0.intermediate.dense.lora_B.weight"):get_grad())
    assert.is_nil(m:get("bert.encoder.layer.0.intermediate.dense.weight"):get_grad())
  end)

  it("gives per-example norms under the DP engine equal to the unfused path (f32, 1e-5 relative)", function()
    local m = nn.BertForSequenceClassification(tiny, { seed = 4 })
    local b = batch()
    local function norms()
      local eng = engine_mod.new(m:named_parameters())
      eng:begin(b.n)
      eng:active(function() m:per_sample_loss(b):backward(dp.ones({ b.n })) end)
      eng:compute_norms()
      local all, inter = eng:sample_norms(), eng:sample_norms("bert.encoder.layer.1.intermediate.dense.weight")
      return all, inter, eng:sample_norms("bert.encoder.layer.0.intermediate.dense.bias")
    end
    local x = dp.randn({ 4, 6, 8 }, { seed = 11 })
    local inter1 = intermediates(m)[1]
    assert.are.equal("linear_act", inter1(x):op_name())
    local fused = { norms() }
    -- The unfused path: the dense layers without forward_act.
    for _, inter in ipairs(intermediates(m)) do inter.dense.forward_act = false end
    assert.are.equal("gelu", inter1(x):op_name())
    local plain = { norms() }
    for k = 1, 3 do
      for i = 1, b.n do
        local f, p = fused[k][i], plain[k][i]
        assert.is_true(p > 0 and math.abs(f - p) <= 1e-5 * p, ("norms %d example %d: %.9g vs %.9g"):format(k, i, f, p))
      end
    end
  end)
end)
