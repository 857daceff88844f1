-- Specs for the fused end of a dp.private step (dp.privacy.fused_update: noise, scale and the
-- optimizer update per parameter in one pass, dp_psg_finish_update_param): two runs from the same
-- seeds, one fused (the default) and one with fused_update = false, must agree bit for bit in the
-- parameters, the optimizer state, the ledger and epsilon, and closely in the reported norms; the
-- fused path must really be the one taken; the ledger is written before any update; and the
-- composed path stays where fusing cannot give the same bits.
local dp = require "dp"
local tiny = require "support.tiny_dp_model"
local precision = require "dp.precision"

local flat = tiny.flat

local function snapshot(params)
  local out = {}
  for _, e in ipairs(params) do out[e.name] = flat(e.tensor) end
  return out
end

local function same_snapshots(a, b, what)
  for name, v in pairs(a) do assert.are.same(v, b[name], what .. ": " .. name) end
end

-- Sentence pairs for a two-layer BERT small enough for a spec.
local V, T, N = 20, 6, 32
local function bert_data()
  local u = dp.rand({ N, T + 1 }, { seed = 11, dtype = "f64" }):totable()
  local ids, types, mask, labels = {}, {}, {}, {}
  for i = 1, N do
    local len = 3 + math.floor(u[i][T + 1] * (T - 2))
    ids[i], types[i], mask[i] = {}, {}, {}
    for t = 1, T do
      ids[i][t] = t <= len and 1 + math.floor(u[i][t] * (V - 1)) or 0
      types[i][t], mask[i][t] = 0, t <= len and 1 or 0
    end
    labels[i] = ids[i][1] % 3
  end
  return dp.data.tensors{ input_ids = dp.tensor(ids, "i64"), token_type_ids = dp.tensor(types, "i64"),
                          attention_mask = dp.tensor(mask, "i64"), labels = dp.tensor(labels, "i64") }
end

local function bert(policy)
  local m = dp.nn.BertForSequenceClassification({
    vocab_size = V, hidden_size = 16, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 32,
    max_position_embeddings = T, type_vocab_size = 2, num_labels = 3, hidden_dropout_prob = 0,
    attention_probs_dropout_prob = 0 }, { seed = 3 })
  precision.apply(m, policy)
  return m
end

-- A run: make() -> params (list of {name, tensor}), the dp.private options for them.
local function tiny_run(dtype, make_opt)
  return function(fused)
    local m = tiny.new(dtype, 1)
    local b = m:batch(40, 5)
    local data = dp.data.tensors{ tokens = b.tokens, positions = b.positions, mask = b.mask, labels = b.labels }
    return m:named_parameters(), {
      params = m, optimizer = make_opt(m:trainable()), loss = function(x) return m:loss(x) end, data = data,
      sample_rate = 0.25, noise_multiplier = 1.0, max_grad_norm = 1.0, delta = 1e-5, seed = 3, fused_update = fused }
  end
end

local function bert_run(policy, make_opt)
  return function(fused)
    local m = bert(policy)
    return m:named_parameters(), {
      params = m, optimizer = make_opt(m:trainable()), loss = function(x) return m:per_sample_loss(x) end,
      data = bert_data(), sample_rate = 0.25, noise_multiplier = 0.8, max_grad_norm = 1.0, delta = 1e-5, seed = 5,
      fused_update = fused }
  end
end

-- Five steps fused and five composed from the same seeds: everything must match.
local function compare(make, steps)
  local out = {}
  for k, fused in ipairs{ true, false } do
    local params, opts = make(fused)
    local p = dp.private(opts)
    local finishes = 0
    local finish = p.engine.finish
    p.engine.finish = function(...) finishes = finishes + 1; return finish(...) end
    local stats = {}
    for s = 1, steps do stats[s] = p:step() end
    out[k] = { p = p, params = snapshot(params), stats = stats, finishes = finishes,
               state = p.optimizer:state_dict(), described = p.engine:describe() }
  end
  local f, c = out[1], out[2]
  assert.are.equal(0, f.finishes)          -- the fused path was taken ...
  assert.are.equal(steps, c.finishes)      -- ... and the other run composed
  same_snapshots(f.params, c.params, "parameters")
  assert.are.equal(c.p.ledger:to_json(), f.p.ledger:to_json())
  assert.are.equal(c.p:epsilon(), f.p:epsilon())
  assert.are.same(c.p:generator_state(), f.p:generator_state())
  assert.are.equal(c.state.step, f.state.step)
  assert.are.same(c.state.rounding, f.state.rounding)
  for name, s in pairs(c.state.state) do
    for key, v in pairs(s) do
      local w = f.state.state[name][key]
      if type(v) == "number" then assert.are.equal(v, w, name .. "." .. key)
      else assert.are.same(flat(v), flat(w), name .. "." .. key) end
    end
  end
  for s = 1, steps do
    for _, key in ipairs{ "loss", "batch_size", "clip_fraction", "grad_norm_mean", "grad_norm_max", "epsilon" } do
      assert.are.equal(c.stats[s][key], f.stats[s][key], ("step %d %s"):format(s, key))
    end
  end
  for i, d in ipairs(c.described) do
    local e = f.described[i]
    assert.are.equal(d.sum_norm == nil, e.sum_norm == nil, d.name)
    if d.sum_norm then
      assert.is_true(math.abs(d.sum_norm - e.sum_norm) <= 1e-12 * d.sum_norm, d.name .. " sum_norm")
      assert.is_true(math.abs(d.noise_norm - e.noise_norm) <= 1e-12 * d.noise_norm, d.name .. " noise_norm")
    end
  end
  return f
end

describe("dp.privacy.fused_update", function()
  describe("gives the composed path's bits over 5 steps", function()
    it("with SGD + momentum + nesterov on an f32 model", function()
      compare(tiny_run("f32", function(ps) return dp.optim.sgd(ps, { lr = 0.1, momentum = 0.9, nesterov = true,
                                                                     weight_decay = 1e-3 }) end), 5)
    end)

    it("with AdamW on an f64 model", function()
      compare(tiny_run("f64", function(ps) return dp.optim.adamw(ps, { lr = 1e-2 }) end), 5)
    end)

    it("with AdamW on a mixed-bf16 BERT (fp32 masters, bf16 compute)", function()
      local f = compare(bert_run("mixed-bf16", function(ps) return dp.optim.adamw(ps, { lr = 3e-3 }) end), 5)
      assert.are.equal("f32", f.p.params[1].tensor:dtype())
    end)

    it("with SGD + momentum on a bf16 BERT rounded stochastically", function()
      local f = compare(bert_run(precision.policy({ preset = "bf16", stochastic_rounding = true }),
                                 function(ps) return dp.optim.sgd(ps, { lr = 0.05, momentum = 0.9 }) end), 5)
      assert.are.equal("bf16", f.p.params[1].tensor:dtype())
      assert.is_true(f.state.rounding.counter > 0)   -- the rounding stream was used
    end)
  end)

  it("records the step in the ledger before any update, so a failing update still counts", function()
    local params, opts = tiny_run("f64", function(ps) return dp.optim.sgd(ps, { lr = 0.1 }) end)(true)
    local p = dp.private(opts)
    local before = snapshot(params)
    local args = p.optimizer.fused_update_args
    p.optimizer.fused_update_args = function(o, t)
      local rule, s0, s1, r, commit = args(o, t)
      rule.lr = -1
      return rule, s0, s1, r, commit
    end
    assert.error_matches(function() p:step() end, "lr must be finite and >= 0", nil, true)
    assert.are.equal(1, p:steps())
    assert.is_true(p:epsilon() > 0)
    same_snapshots(before, snapshot(params), "after a refused update")
    for _, e in ipairs(params) do assert.is_nil(e.tensor.grad, e.name) end
  end)

  it("keeps the composed path for an optimizer without a fused rule or with a wrapped step", function()
    for _, wrap in ipairs{ "no rule", "wrapped step" } do
      local _, opts = tiny_run("f64", function(ps) return dp.optim.sgd(ps, { lr = 0.1 }) end)(true)
      local p = dp.private(opts)
      local opt = p.optimizer
      if wrap == "no rule" then
        opt.fused_update_args = function() return nil end
      else
        local step = opt.step
        opt.step = function(o, ...) return step(o, ...) end
      end
      local finishes, finish = 0, p.engine.finish
      p.engine.finish = function(...) finishes = finishes + 1; return finish(...) end
      p:step()
      assert.are.equal(1, finishes, wrap)
      assert.are.equal(1, opt:step_count(), wrap)
    end
  end)

  it("counts noise blocks as finish draws them and checks the option", function()
    local params, opts = tiny_run("f64", function(ps) return dp.optim.sgd(ps, { lr = 0.1 }) end)(true)
    local p = dp.private(opts)
    local blocks = 0
    for _, e in ipairs(params) do
      if e.tensor:requires_grad() then blocks = blocks + math.ceil(e.tensor:numel() / 2) end
    end
    assert.are.equal(blocks, p.engine:noise_blocks())
    local c0 = p.noise:state().counter
    p:step()
    assert.are.equal(c0 + blocks, p.noise:state().counter)
    opts.fused_update = "yes"
    assert.error_matches(function() dp.private(opts) end, "fused_update must be true or false", nil, true)
  end)
end)
