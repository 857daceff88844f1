-- Specs for dp.private: the DP-SGD loop around the engine (sampling, micro-batches, noise, the
-- optimizer, the ledger and the budget).
local dp = require "dp"
local tiny = require "support.tiny_dp_model"

local flat = tiny.flat

local function dataset(model, n, seed)
  local b = model:batch(n, seed or 5)
  return dp.data.tensors{ tokens = b.tokens, positions = b.positions, mask = b.mask, labels = b.labels }
end

local function private(model, opts)
  opts = opts or {}
  local o = {
    params = model, optimizer = dp.optim.sgd(model:trainable(), { lr = 0.1, momentum = 0.9 }),
    loss = function(b) return model:loss(b) end, data = opts.data or dataset(model, 40),
    sample_rate = 0.25, noise_multiplier = 1.0, max_grad_norm = 1.0, delta = 1e-5, seed = 3,
  }
  for k, v in pairs(opts) do o[k] = v end
  for k, v in pairs(opts) do if v == false then o[k] = nil end end   -- false: drop the default
  return dp.private(o)
end

local function snapshot(model)
  local out = {}
  for _, e in ipairs(model:named_parameters()) do out[e.name] = flat(e.tensor) end
  return out
end

describe("dp.private", function()
  it("gives bit-identical runs in reproducible mode", function()
    local results = {}
    for run = 1, 2 do
      local m = tiny.new("f32", 1)
      local p = private(m)
      for _ = 1, 3 do p:step() end
      results[run] = snapshot(m)
    end
    for name, v in pairs(results[1]) do assert.are.same(v, results[2][name], name) end
  end)

  it("changes every trainable parameter and leaves the frozen one alone", function()
    local m = tiny.new("f64", 2)
    local before = snapshot(m)
    local p = private(m)
    p:step()
    local after = snapshot(m)
    for _, e in ipairs(m:named_parameters()) do
      if e.name == "base.weight" then
        assert.are.same(before[e.name], after[e.name])
      else
        assert.are_not.same(before[e.name], after[e.name], e.name)
      end
      assert.is_nil(e.tensor.grad)
    end
  end)

  it("gives the same update whether or not a logical batch is split into micro-batches", function()
    local outs = {}
    for k, cap in ipairs{ false, 3 } do
      local m = tiny.new("f64", 4)
      local p = private(m, { max_physical_batch_size = cap or nil })
      local st = p:step()
      if cap then assert.is_true(st.micro_batches > 1) end
      outs[k] = snapshot(m)
    end
    for name, v in pairs(outs[1]) do
      for i, x in ipairs(v) do assert.is_true(math.abs(x - outs[2][name][i]) <= 1e-12 * math.max(1, math.abs(x)), name) end
    end
  end)

  it("resumes a run bit-identically, continuing the same ledger", function()
    local function fresh() local m = tiny.new("f32", 8); return m, dp.optim.adam(m:trainable(), { lr = 0.01 }) end
    local m1, o1 = fresh()
    local p1 = private(m1, { optimizer = o1 })
    for _ = 1, 4 do p1:step() end

    local m2, o2 = fresh()
    local p2 = private(m2, { optimizer = o2 })
    for _ = 1, 2 do p2:step() end
    -- what a checkpoint keeps: weights, optimizer state, generator positions, the ledger
    local weights = {}
    for _, e in ipairs(m2:named_parameters()) do weights[e.name] = e.tensor:clone():detach() end
    local opt_state, gens, ledger = o2:state_dict(), p2:generator_state(), p2.ledger:to_json()

    local m3, o3 = fresh()
    for _, e in ipairs(m3:named_parameters()) do dp.no_grad(function() e.tensor:copy(weights[e.name]) end) end
    o3:load_state_dict(opt_state)
    local p3 = private(m3, { optimizer = o3, generator_state = gens,
                             ledger = dp.privacy.accountant.Ledger.from_json(ledger) })
    for _ = 1, 2 do p3:step() end
    for name, v in pairs(snapshot(m1)) do assert.are.same(v, snapshot(m3)[name], name) end
    assert.are.equal(4, p3:steps())
    assert.are.equal(1, #p3.ledger:runs())   -- the counters continue, so the run does too
    assert.are.equal(p1:epsilon(), p3:epsilon())
  end)

  it("records each step in the ledger with q, sigma, C, the batch size and the counters", function()
    local m = tiny.new("f64", 1)
    local p = private(m)
    local sizes = {}
    for k = 1, 4 do sizes[k] = p:step().batch_size end
    local runs = p.ledger:runs()
    assert.are.equal(1, #runs)
    local r = runs[1]
    assert.are.equal(4, r.steps)
    assert.are.equal(0.25, r.q)
    assert.are.equal(1.0, r.sigma)
    assert.are.equal(1.0, r.clip)
    local total, lo, hi = 0, math.huge, 0
    for _, s in ipairs(sizes) do total, lo, hi = total + s, math.min(lo, s), math.max(hi, s) end
    assert.are.equal(total, r.batch_total)
    assert.are.equal(lo, r.batch_min)
    assert.are.equal(hi, r.batch_max)
    assert.is_true(r.noise_counter_last > r.noise_counter_first)
    assert.is_true(p:epsilon() > 0)
  end)

  it("still takes an empty Poisson batch as a step, with noise alone", function()
    local m = tiny.new("f64", 1)
    local path, line = os.tmpname(), nil
    local p = private(m, { data = dataset(m, 3), sample_rate = 1e-4, metrics = path,
                           log = function(l) line = l end })
    local before = snapshot(m)
    local st = p:step()
    os.remove(path)
    assert.are.equal(0, st.batch_size)
    assert.truthy(line:find("batch 0  loss %-"))
    assert.are.equal(1, p:steps())
    assert.are_not.same(before["seq.weight"], snapshot(m)["seq.weight"])
  end)

  it("calibrates sigma for a target epsilon and refuses to step past it", function()
    local m = tiny.new("f64", 1)
    local p = private(m, { noise_multiplier = false, target_epsilon = 3, epochs = 1, sample_rate = 0.25 })
    assert.is_true(p:noise_multiplier() > 0.5)
    for _ = 1, 4 do p:step() end
    local eps = p:epsilon()
    assert.is_true(eps <= 3 and eps > 2.9, tostring(eps))
    assert.error_matches(function() p:step() end, "past the budget 3", nil, false)
    assert.are.equal(4, p:steps())
    p.allow_overspend = true
    p:step()
    assert.are.equal(5, p:steps())
  end)

  it("refuses an optimizer that misses a trainable parameter or holds an unregistered one", function()
    local m = tiny.new("f64", 1)
    local partial = {}
    for _, e in ipairs(m:trainable()) do if e.name ~= "lora.B" then partial[#partial + 1] = e end end
    assert.error_matches(function() private(m, { optimizer = dp.optim.sgd(partial, { lr = 0.1 }) }) end,
      "'lora.B' gets a clipped noisy gradient but the optimizer does not update it", nil, true)
    local stray = dp.zeros({ 2 }, { dtype = "f64" }):requires_grad(true)
    local extra = { { name = "stray", tensor = stray } }
    for _, e in ipairs(m:trainable()) do extra[#extra + 1] = e end
    assert.error_matches(function() private(m, { optimizer = dp.optim.sgd(extra, { lr = 0.1 }) }) end,
      "not a registered parameter", nil, true)
  end)

  it("keeps micro-batches under a memory cap once it has measured bytes per example", function()
    local m = tiny.new("f64", 1)
    local p = private(m, { memory_cap_bytes = 1e12, sample_rate = 0.5 })
    p:step()
    local per = p.planner:bytes_per_example()
    assert.is_true(per > 0)
    p.planner.memory_cap = p.planner.base + 2.5 * per * 1.1   -- room for two examples
    local st = p:step()
    assert.are.equal(math.ceil(st.batch_size / 2), st.micro_batches)
  end)

  it("runs shuffled fixed-size batches when asked, and the ledger says so", function()
    local m = tiny.new("f64", 1)
    local p = private(m, { sample_rate = false, batch_size = 8, sampling = "shuffle" })
    assert.are.equal(0.2, p.sample_rate)
    assert.are.equal(8, p:step().batch_size)
    assert.are.equal("shuffle", p.ledger:runs()[1].sampling)
  end)

  it("runs with the secure generator and records it without a seed", function()
    local m = tiny.new("f64", 1)
    local p = private(m, { noise = "secure" })
    p:step()
    local r = p.ledger:runs()[1]
    assert.are.equal("secure", r.noise_mode)
    assert.is_true(r.noise_seed == 0)
    assert.is_nil(p.noise:state().key)
  end)

  it("logs a line per step and appends the metrics as JSONL", function()
    local m = tiny.new("f64", 1)
    local path, lines = os.tmpname(), {}
    local p = private(m, { log = function(line) lines[#lines + 1] = line end, metrics = path })
    for _ = 1, 2 do p:step() end
    assert.are.equal(2, #lines)
    assert.truthy(lines[2]:find("^step 2  batch %d+  loss [%d.]+  eps [%d.]+  clipped [%d.]+  %d+ ms  peak [%d.]+ MiB "
                                .. "%(act %d+, params %d+, master %d+, optim %d+, per%-sample %d+, grads %d+.*%)$"), lines[2])
    local rows = {}
    for l in io.lines(path) do rows[#rows + 1] = dp.util.json.decode(l) end
    os.remove(path)
    assert.are.equal(2, #rows)
    assert.are.equal(2, rows[2].step)
    assert.are.equal(p:epsilon(), rows[2].epsilon)
    for _, k in ipairs{ "loss", "clip_fraction", "step_time", "peak_bytes", "batch_size" } do assert.is_number(rows[2][k], k) end
  end)

  it("reports memory by category at the step's peak, summing to the peak, in the metrics", function()
    local m = tiny.new("f32", 1)
    local p = private(m, { max_physical_batch_size = 3, memory_cap_bytes = 1e12 })   -- peaks reset per micro-batch
    local st
    for _ = 1, 2 do st = p:step() end
    assert.is_true(st.micro_batches > 1)
    local sum = 0
    for _, name in ipairs(dp.memory_report.names) do
      local at, own = st["mem_" .. name], st["mem_peak_" .. name]
      assert.is_number(at, name)
      assert.is_true(own >= at, name)   -- a category's own peak is at least its share of the total's
      sum = sum + at
    end
    assert.are.equal(st.peak_bytes, sum)
    assert.is_true(st.mem_activations > 0)
  end)

  it("shows the norm form chosen for each linear weight", function()
    local m = tiny.new("f64", 1)
    local p = private(m)
    p:step()
    local forms = {}
    for _, d in ipairs(p:norm_forms()) do forms[d.name] = d.form end
    assert.is_true(forms["seq.weight"] == "ghost" or forms["seq.weight"] == "materialise")
    assert.are.equal("direct", forms["ln.weight"])
  end)

  it("treats a mean loss like the per-example losses", function()
    local outs = {}
    for k, mean in ipairs{ false, true } do
      local m = tiny.new("f64", 6)
      local p = private(m, { loss = function(b) local l = m:loss(b); return mean and l:mean() or l end })
      p:step()
      outs[k] = snapshot(m)
    end
    for name, v in pairs(outs[1]) do
      for i, x in ipairs(v) do assert.is_true(math.abs(x - outs[2][name][i]) <= 1e-12 * math.max(1, math.abs(x)), name) end
    end
  end)
end)

describe("noise", function()
  for _, mode in ipairs{ "reproducible", "secure" } do
    it("has mean 0 and std sigma C / (q N) in the gradient (" .. mode .. ")", function()
      local n = 200000
      local w = dp.zeros({ n }, { dtype = "f32" }):requires_grad(true)
      local eng = require("dp.privacy.engine").new{ { name = "w", tensor = w } }
      local gen = dp.privacy.noise{ mode = mode, seed = 9, stream = 1 }
      eng:finish(gen, 3.0, 0.5)
      local g = flat(w.grad)
      local s, s2 = 0, 0
      for _, v in ipairs(g) do s, s2 = s + v, s2 + v * v end
      local mean, std = s / n, math.sqrt(s2 / n - (s / n) ^ 2)
      -- 5 standard errors: the mean's is 1.5 / sqrt(n), the std's about 1.5 / sqrt(2 n).
      assert.is_true(math.abs(mean) < 5 * 1.5 / math.sqrt(n), "mean " .. mean)
      assert.is_true(math.abs(std - 1.5) < 5 * 1.5 / math.sqrt(2 * n), "std " .. std)
    end)
  end
end)
