-- Specs for dp.precision.apply on a tiny BERT: the dtypes each Linear, LayerNorm and Embedding
-- actually computed with under every preset and a mixed recipe (recorded at dp.linear,
-- dp.layer_norm and dp.embedding), where parameters are stored, gradients on the masters, the
-- pure preset's in-place optimizer step, a live policy change and the summary.
local dp = require "dp"
local nn = require "dp.nn"
local precision = require "dp.precision"

local tiny = { vocab_size = 20, hidden_size = 16, num_hidden_layers = 2, num_attention_heads = 2,
               intermediate_size = 24, max_position_embeddings = 8, type_vocab_size = 2, num_labels = 3,
               hidden_dropout_prob = 0, attention_probs_dropout_prob = 0 }

local function batch()
  return { input_ids = dp.tensor({ { 2, 5, 7, 9, 3 }, { 2, 11, 3, 0, 0 }, { 2, 4, 4, 3, 8 } }, "i64"),
           token_type_ids = dp.tensor({ { 0, 0, 0, 1, 1 }, { 0, 0, 1, 0, 0 }, { 0, 0, 0, 1, 1 } }, "i64"),
           attention_mask = dp.tensor({ { 1, 1, 1, 1, 1 }, { 1, 1, 1, 0, 0 }, { 1, 1, 1, 1, 1 } }, "i64"),
           labels = dp.tensor({ 0, 2, 1 }, "i64") }
end

local kinds = { Linear = "linear", LayerNorm = "layer_norm", Embedding = "embedding" }

-- Runs fn() recording, per Linear/LayerNorm/Embedding module name, the dtypes of the tensors its
-- op received (x, weight, bias) and whether the weight given was the parameter itself.
local function record(model, fn)
  local seen, current = {}, {}
  local saved = {}
  for _, e in ipairs(model:named_modules()) do
    local kind = kinds[e.module.__name]
    if kind then
      local m, f = e.module, e.module.forward
      saved[#saved + 1] = { m, rawget(m, "forward") }   -- LoRA sets forward on the instance
      m.forward = function(self, ...)
        current[#current + 1] = e.name
        local out = f(self, ...)
        current[#current] = nil
        return out
      end
    end
  end
  local function wrap(op, xi, wi, bi)
    local orig = dp[op]
    dp[op] = function(...)
      local a = { ... }
      local out = orig(...)
      local name = current[#current]
      local m = model:get(name)
      seen[name] = { x = a[xi]:dtype(), w = a[wi]:dtype(), b = a[bi] and a[bi]:dtype(),
                     same = a[wi] == m.weight, out = out:dtype() }
      return out
    end
    return orig
  end
  local ol, on, oe = wrap("linear", 1, 2, 3), wrap("layer_norm", 1, 2, 3), wrap("embedding", 2, 1, nil)
  local ok, err = pcall(fn)
  dp.linear, dp.layer_norm, dp.embedding = ol, on, oe
  for _, p in ipairs(saved) do p[1].forward = p[2] end
  assert(ok, err)
  return seen
end

local short = { fp32 = "f32", bf16 = "bf16", f16 = "f16", fp8 = "bf16" }

-- Checks every recorded op against (compute, params) that expect(name) gives.
local function check(model, seen, expect)
  local n = 0
  for _, e in ipairs(model:named_modules()) do
    local kind = kinds[e.module.__name]
    if kind then
      local compute, params = expect(e.name)
      local r = seen[e.name]
      assert.is_not_nil(r, e.name)
      local want = short[compute]
      if kind ~= "embedding" then assert.are.equal(want, r.x, e.name .. " input") end
      assert.are.equal(want, r.w, e.name .. " weight")
      if r.b then assert.are.equal(want, r.b, e.name .. " bias") end
      assert.are.equal(want, r.out, e.name .. " output")
      assert.are.equal(short[params], e.module.weight:dtype(), e.name .. " stored")
      -- the op gets the parameter itself exactly when storage and compute agree
      assert.are.equal(short[params] == want, r.same, e.name .. " copy")
      n = n + 1
    end
  end
  assert.are.equal(2 * 6 + 2 + 3 + 2 * 2 + 1, n)   -- linears + pooler/classifier + embeddings + norms
end

local function every(compute, params) return function() return compute, params end end

describe("dp.precision.apply", function()
  for preset, cp in pairs { fp32 = { "fp32", "fp32" }, bf16 = { "bf16", "bf16" },
                            ["mixed-bf16"] = { "bf16", "fp32" }, ["mixed-f16"] = { "f16", "fp32" } } do
    it("computes every layer as preset " .. preset .. " says", function()
      local m = precision.apply(nn.BertForSequenceClassification(tiny), preset)
      local seen = record(m, function()
        local loss = m:per_sample_loss(batch())
        assert.are.equal("f32", loss:dtype())
      end)
      check(m, seen, every(cp[1], cp[2]))
      for _, e in ipairs(m:named_parameters()) do
        assert.are.equal(short[cp[2]], e.tensor:dtype(), e.name)
        assert.are.equal(cp[2] == cp[1] and "parameters" or "master", e.tensor:mem_category(), e.name)
      end
    end)
  end

  it("computes 'mixed-bf16 but LayerNorm, embeddings and classifier fp32' as written", function()
    local m = nn.BertForSequenceClassification(tiny)
    precision.apply(m, precision.policy("mixed-bf16",
      { { "LayerNorm", "fp32" }, { "embeddings", "fp32" }, { "^classifier$", "fp32" } }))
    local seen = record(m, function() m:per_sample_loss(batch()) end)
    check(m, seen, function(name)
      if name:find("LayerNorm", 1, true) or name:find("embeddings", 1, true) or name == "classifier" then
        return "fp32", "fp32"
      end
      return "bf16", "fp32"
    end)
    assert.are.equal("fp32>bf16", precision.short(m:precision_of("bert.pooler.dense")))
    assert.are.equal("fp32", m:precision_of("classifier.weight").compute)
    assert.is_false(precision.needs_loss_scaling(m))
    assert.is_true(precision.needs_loss_scaling(precision.apply(m, "mixed-f16")))
  end)

  it("leaves an fp32 model's numbers and tensors untouched under the fp32 policy", function()
    local a, b = nn.BertForSequenceClassification(tiny), nn.BertForSequenceClassification(tiny)
    precision.apply(b, "fp32")
    assert.are.same(a:per_sample_loss(batch()):totable(), b:per_sample_loss(batch()):totable())
    assert.are.same({}, precision.copy_stats(b))
  end)

  it("puts gradients on f32 masters, within bf16 tolerance of the fp32 model's", function()
    -- initializer_range 0.2: with BERT's 0.02 this tiny model's logits are ~0.01 and nearly equal
    -- across examples, so gradients are sums of bf16-rounded terms that cancel to ~1% of their
    -- size, and the comparison would measure the cancellation, not the policy.
    local cfg = {}
    for k, v in pairs(tiny) do cfg[k] = v end
    cfg.initializer_range = 0.2
    local ref, m = nn.BertForSequenceClassification(cfg), nn.BertForSequenceClassification(cfg)
    precision.apply(m, "mixed-bf16")
    ref:per_sample_loss(batch()):sum():backward()
    m:per_sample_loss(batch()):sum():backward()
    local rp = ref:named_parameters()
    local function norm(t) return t:pow(2):sum():item() ^ 0.5 end
    for k, e in ipairs(m:named_parameters()) do
      local g, gr = e.tensor:get_grad(), rp[k].tensor:get_grad()
      assert.are.equal("f32", g:dtype(), e.name)
      -- bf16 keeps 8 significant bits (unit roundoff 2^-9); about a dozen rounded ops lie on each
      -- gradient's path, and LayerNorm's backward cancels, so we allow 2^-4 of the gradient's norm
      -- (the largest seen is about 2^-5). key.bias has gradient 0 (softmax ignores the per-query
      -- shift q.b it adds to all scores): its rounding noise is measured against key.weight's.
      local scale = norm(gr)
      if e.name:find("key%.bias$") then scale = norm(m:get(e.name:gsub("bias$", "weight")):get_grad()) end
      local diff = norm(g - gr)
      assert.is_true(diff <= 2 ^ -4 * scale, ("%s: |g - g_fp32| = %g, scale %g"):format(e.name, diff, scale))
    end
  end)

  it("stores pure bf16 parameters in bf16 and lets the optimizer update them in place", function()
    local m = precision.apply(nn.BertForSequenceClassification(tiny), "bf16")
    local w = m.classifier.weight
    assert.are.equal("bf16", w:dtype())
    m:per_sample_loss(batch()):sum():backward()
    -- The optimizers take f32 gradients, as the DP engine's finish writes them (clipped sums and
    -- noise in f32); plain autograd gives bf16 ones, so convert them here.
    for _, e in ipairs(m:trainable()) do e.tensor:set_grad(e.tensor:get_grad():cast("f32")) end
    local before, g = w:cast("f64"):totable(), w:get_grad():cast("f64"):totable()
    local opt = dp.optim.sgd(m:trainable(), { lr = 0.5 })
    opt:step()
    assert.are.equal("bf16", w:dtype())
    local after = w:cast("f64"):totable()
    -- Round to nearest even at 8 significant bits, by hand.
    local function bf16(v)
      if v == 0 then return 0 end
      local mnt, ex = math.frexp(v)          -- v = mnt * 2^ex, 0.5 <= |mnt| < 1
      local s = mnt * 256
      local r = math.floor(s + 0.5)
      if r - s == 0.5 and r % 2 == 1 then r = r - 1 end
      return r / 256 * 2 ^ ex
    end
    for i = 1, #before do
      for j = 1, #before[i] do
        assert.are.equal(bf16(before[i][j] - 0.5 * g[i][j]), after[i][j])
      end
    end
  end)

  it("follows a policy change at the next forward, with no rebuild", function()
    local m = nn.BertForSequenceClassification(tiny)
    local pol = precision.policy("mixed-bf16")
    precision.apply(m, pol)
    local name = "bert.encoder.layer.1.intermediate.dense"
    local seen = record(m, function() m:per_sample_loss(batch()) end)
    assert.are.equal("bf16", seen[name].x)
    pol:add("layer%.1%.intermediate", "fp32")         -- as from the REPL: no apply() call
    seen = record(m, function() m:per_sample_loss(batch()) end)
    assert.are.same({ "f32", "f32", true }, { seen[name].x, seen[name].w, seen[name].same })
    assert.are.equal("bf16", seen["bert.encoder.layer.1.output.dense"].x)
    precision.apply(m, "bf16")                          -- or a new policy from a recipe callback
    seen = record(m, function() m:per_sample_loss(batch()) end)
    assert.are.same({ "bf16", "bf16", true }, { seen[name].x, seen[name].w, seen[name].same })
    assert.are.equal("bf16", m:get(name).weight:dtype())
  end)

  it("puts LoRA adapters added later under the model's policy", function()
    local m = precision.apply(nn.BertForSequenceClassification(tiny),
                              precision.policy("mixed-bf16", { { "^classifier$", "fp32" } }))
    nn.lora.apply(m, { rank = 2, targets = { "query" } })
    local seen = record(m, function() m:per_sample_loss(batch()) end)
    for _, l in ipairs { 0, 1 } do
      for _, ab in ipairs { "lora_A", "lora_B" } do
        local name = ("bert.encoder.layer.%d.attention.self.query.%s"):format(l, ab)
        assert.are.same({ "bf16", "bf16", false }, { seen[name].x, seen[name].w, seen[name].same }, name)
        assert.are.equal("f32", m:get(name).weight:dtype())
      end
    end
  end)

  it("takes a preset name, a rule table or { default =, rules = }, and rejects anything else", function()
    local lin = nn.Linear(3, 2)
    assert.are.equal("bf16", precision.apply(lin, { compute = "bf16" }):precision_of("").compute)
    precision.apply(lin, { default = "fp32", rules = { { "", "mixed-f16" } } })
    assert.are.equal("f16", lin:precision_of("").compute)
    assert.error_matches(function() precision.apply(lin, { default = "bf16", f32 = { "x" } }) end,
      "precision.apply: unknown key 'f32' beside default/rules", nil, true)
    assert.error_matches(function() precision.apply({}, "fp32") end, "argument 1 must be a dp.nn module", nil, true)
  end)

  it("gives every parameter's rule for the optimizer", function()
    local m = nn.BertForSequenceClassification(tiny)
    precision.apply(m, precision.policy("bf16", { { "^classifier$", { stochastic_rounding = true } } }))
    local rules = precision.param_rules(m)
    assert.are.equal(#m:named_parameters(), #rules)
    for _, r in ipairs(rules) do
      assert.are.equal(r.name:find("^classifier%.") ~= nil, r.rule.stochastic_rounding, r.name)
      assert.are.equal(m:get(r.name), r.tensor)
    end
  end)

  it("shows precision, copies and memory by category in summary()", function()
    local m = precision.apply(nn.BertForSequenceClassification(tiny), "mixed-bf16")
    m:per_sample_loss(batch())
    local s = m:summary()
    local row = s:match("\n(bert%.pooler%.dense%.weight[^\n]*)")
    local prec, b, bc = row:match("^%S+%s+%b()%s+f32%s+(%S+)%s+trainable%s+%d+%s+(%d+)%s+(%d+)$")
    assert.are.equal("fp32>bf16", prec)
    assert.are.equal(16 * 16 * 4, tonumber(b))
    assert.are.equal(16 * 16 * (4 + 2), tonumber(bc))
    assert.matches("\nlayer bert%.encoder%.layer%.0: %d+ bytes %(%d+ stored, %d+ in copies%)", s)
    assert.matches("\nmemory: [^\n]*params", s)
  end)
end)
