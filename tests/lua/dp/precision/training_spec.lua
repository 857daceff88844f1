-- Specs for training under precision policies: 50 DP-SGD steps of a small BERT under mixed-bf16
-- track the fp32 run's loss, and under every preset the DP invariants hold on the dtypes the
-- engine actually used (engine:describe()), not on the policy's text: norms and clipped sums in
-- f32 or wider, noise added into an f32 accumulator, the optimizer on f32 masters in the mixed
-- presets and on the bf16 parameters themselves (in place) in pure bf16.
local dp = require "dp"
local precision = require "dp.precision"

local V, T, N = 40, 12, 128

local flat = require("support.tiny_dp_model").flat   -- a tensor's values, row-major

-- Sentence pairs whose label is the first token's id mod 3 (learnable, so the loss moves).
local function dataset(seed)
  local u = dp.rand({ N, T + 1 }, { seed = seed, dtype = "f64" }):totable()
  local ids, types, mask, labels = {}, {}, {}, {}
  for i = 1, N do
    local len = 4 + math.floor(u[i][T + 1] * (T - 3))
    ids[i], types[i], mask[i] = {}, {}, {}
    for t = 1, T do
      ids[i][t] = t <= len and 1 + math.floor(u[i][t] * (V - 1)) or 0
      types[i][t] = (t > len / 2 and t <= len) and 1 or 0
      mask[i][t] = t <= len and 1 or 0
    end
    labels[i] = ids[i][1] % 3
  end
  return dp.data.tensors{ input_ids = dp.tensor(ids, "i64"), token_type_ids = dp.tensor(types, "i64"),
                          attention_mask = dp.tensor(mask, "i64"), labels = dp.tensor(labels, "i64") }
end

local function model(seed)
  return dp.nn.BertForSequenceClassification({
    vocab_size = V, hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 2, intermediate_size = 64,
    max_position_embeddings = T, type_vocab_size = 2, num_labels = 3, hidden_dropout_prob = 0,
    attention_probs_dropout_prob = 0 }, { seed = seed })
end

-- A DP-SGD run under preset: the model, its dp.private and optimizer.
local function run(preset, opts)
  opts = opts or {}
  local m = model(7)
  precision.apply(m, preset)
  local opt = dp.optim.adam(m:trainable(), { lr = 3e-3 })
  local p = dp.private{ params = m, optimizer = opt, data = opts.data or dataset(3),
                        loss = function(b) return m:per_sample_loss(b) end, sample_rate = 0.25,
                        noise_multiplier = opts.sigma or 0.05, max_grad_norm = 1.0, delta = 1e-5, seed = 5,
                        loss_scale = opts.loss_scale }
  return m, p, opt
end

describe("training under precision policies", function()
  it("mixed-bf16 tracks fp32's loss over 50 DP steps (each step within 0.02, 5-step average within 0.01)", function()
    -- Tolerance: bf16 keeps 8 significant bits (relative rounding 2^-9 per GEMM input, f32
    -- accumulation), which moves this model's loss by ~1e-3 a step; same seed, same batches and
    -- the same noise draws keep the trajectories together (measured: at most 5e-4 a step here).
    -- 0.02 a step (2% of the starting loss ln 3 = 1.10) leaves room for other GEMM engines, while a
    -- broken run (no update, the loss scale left in, noise rounded to bf16) misses it by far: the
    -- loss itself falls from 1.1 to below 0.1 in these 50 steps.
    local data = dataset(3)
    local losses = {}
    for k, preset in ipairs{ "fp32", "mixed-bf16" } do
      local _, p = run(preset, { data = data })
      losses[k] = {}
      for s = 1, 50 do losses[k][s] = p:step().loss or 0 end
    end
    for s = 1, 50 do
      local gap = math.abs(losses[1][s] - losses[2][s])
      assert.is_true(gap <= 0.02, ("step %d: fp32 %g, mixed-bf16 %g"):format(s, losses[1][s], losses[2][s]))
    end
    for s = 5, 50 do
      local a, b = 0, 0
      for j = s - 4, s do a, b = a + losses[1][j] / 5, b + losses[2][j] / 5 end
      assert.is_true(math.abs(a - b) <= 0.01, ("steps %d-%d: average gap %g"):format(s - 4, s, math.abs(a - b)))
    end
    -- and both learned: the last 10 steps' loss is well below the first 10 steps'
    for k = 1, 2 do
      local first, last = 0, 0
      for j = 1, 10 do first, last = first + losses[k][j], last + losses[k][40 + j] end
      assert.is_true(last < 0.2 * first, ("run %d: %g -> %g"):format(k, first / 10, last / 10))
    end
  end)

  it("under mixed-f16 skips a step whose loss scale overflows f16, counts it and backs off", function()
    local m, p = run("mixed-f16", { loss_scale = { init = 2 ^ 40, max_scale = 2 ^ 40, overflow_noise = 2 } })
    local before = {}
    for _, e in ipairs(m:named_parameters()) do before[e.name] = flat(e.tensor) end
    local st = p:step()
    assert.is_true(st.batch_size > 10 and st.nonfinite == st.batch_size, "every example overflowed in f16")
    assert.is_true(st.skipped)
    assert.are.equal(2 ^ 39, p:loss_scale())
    for _, e in ipairs(m:named_parameters()) do assert.are.same(before[e.name], flat(e.tensor), e.name) end
    local r = p.ledger:runs()[1]
    assert.are.equal(1, r.steps)
    assert.are.equal(1, r.skipped_steps)
    assert.is_true(p:epsilon() > 0)
  end)

  it("turns automatic loss scaling on when the policy switches to f16 mid-run", function()
    local m, p = run("mixed-bf16")
    p:step()
    assert.is_nil(p.scaler)
    local notes = {}
    p.log = function(line) notes[#notes + 1] = line end
    precision.apply(m, "mixed-f16")
    local st = p:step()
    assert.truthy(notes[1]:find("loss scaling on", 1, true))
    assert.are.equal(2 ^ 15, st.loss_scale)
    -- the second step released the noisy count too: a new run in the ledger, same effective sigma
    local runs = p.ledger:runs()
    assert.are.equal(2, #runs)
    assert.are.equal(0, runs[1].aux_sigma)
    assert.are.equal(p.scaler.overflow_noise, runs[2].aux_sigma)
    assert.are.equal(runs[1].sigma, runs[2].sigma)
  end)

  local compute = { fp32 = "f32", bf16 = "bf16", ["mixed-bf16"] = "bf16", ["mixed-f16"] = "f16", fp8 = "bf16" }
  for _, preset in ipairs{ "fp32", "bf16", "mixed-bf16", "mixed-f16", "fp8" } do
    it("keeps the DP invariants on the dtypes the engine used under " .. preset, function()
      local m, p, opt = run(preset)
      local q = "bert.encoder.layer.0.attention.self.query.weight"
      local before, ptr_before = {}, {}
      for _, e in ipairs(m:named_parameters()) do
        before[e.name], ptr_before[e.name] = e.tensor:clone():cast("f64"), tostring(e.tensor.ptr)
      end
      local st = p:step()
      assert.is_true(st.batch_size > 0)
      assert.are.equal(preset == "mixed-f16", p.scaler ~= nil)   -- loss scaling only for f16
      assert.is_true(st.nonfinite == 0 and not st.skipped, "nothing overflowed")
      local rows = {}
      for _, d in ipairs(p:norm_forms()) do rows[d.name] = d end
      for name, d in pairs(rows) do
        if d.trainable then
          assert.truthy(d.norm_dtype == "f32" or d.norm_dtype == "f64", name .. " norms in " .. tostring(d.norm_dtype))
          assert.truthy(d.accum_dtype == "f32" or d.accum_dtype == "f64", name .. " sum in " .. tostring(d.accum_dtype))
          assert.is_true(d.noise_norm > 0, name .. ": noise added")
        end
      end
      -- the query GEMM really ran in the compute dtype: its tapped input and output gradient
      assert.are.equal(compute[preset], rows[q].input_dtype)
      assert.are.equal(compute[preset], rows[q].grad_dtype)
      local want = preset == "bf16" and "bf16" or "f32"
      for _, e in ipairs(m:named_parameters()) do
        assert.are.equal(want, e.tensor:dtype(), e.name)
        assert.are.equal(ptr_before[e.name], tostring(e.tensor.ptr), e.name .. " updated in place")
      end
      for _, t in ipairs(opt:params()) do assert.are.equal(want, t:dtype()) end
      local qt
      for _, e in ipairs(m:named_parameters()) do if e.name == q then qt = e.tensor end end
      local now, was = flat(qt), flat(before[q])
      local moved = 0
      for i = 1, #now do moved = moved + math.abs(now[i] - was[i]) end
      assert.is_true(moved > 0, "the update reached the stored parameter")
    end)
  end
end)
