-- Specs for dynamic loss scaling under DP (dp.privacy.loss_scale and dp.private's use of it): the
-- noise split against its closed form and measured, the growth/backoff schedule, a forced overflow
-- that skips the step yet counts it in the ledger, an overflowing example that contributes nothing,
-- bit-equality with the unscaled run when nothing overflows, and a bit-identical resume.
local dp = require "dp"
local ls = require "dp.privacy.loss_scale"
local tiny = require "support.tiny_dp_model"

local flat = tiny.flat

local function dataset(model, n, seed)
  local b = model:batch(n, seed or 5)
  return dp.data.tensors{ tokens = b.tokens, positions = b.positions, mask = b.mask, labels = b.labels }
end

-- poison(b) -> a per-example factor (1, or Inf for an example made to overflow).
local function private(model, opts, poison)
  local o = {
    params = model, optimizer = dp.optim.sgd(model:trainable(), { lr = 0.1, momentum = 0.9 }),
    loss = function(b)
      local l = model:loss(b)
      if poison then l = l * poison(b) end
      return l
    end,
    data = dataset(model, 40), sample_rate = 0.5, noise_multiplier = 1.0, max_grad_norm = 1.0, delta = 1e-5, seed = 3,
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  return dp.private(o)
end

local function snapshot(model)
  local out = {}
  for _, e in ipairs(model:named_parameters()) do out[e.name] = flat(e.tensor) end
  return out
end

-- Inf for every example, or only for those whose label is 1 (some, not all).
local function all_inf(b) return dp.full({ b.n }, math.huge, { dtype = "f32" }) end

local function std_of(v)
  local s, s2 = 0, 0
  for _, x in ipairs(v) do s, s2 = s + x, s2 + x * x end
  return math.sqrt(s2 / #v - (s / #v) ^ 2), s / #v
end

describe("dp.privacy.loss_scale", function()
  it("splits sigma into the gradient's and the count's noise (closed form)", function()
    for _, c in ipairs{ { 1, 10 }, { 0.7, 1.25 }, { 2, 2.5 } } do
      local sigma, s_o = c[1], c[2]
      local s_g = ls.grad_sigma(sigma, s_o)
      -- independent: 1 / sigma^2 = 1 / s_g^2 + 1 / s_o^2
      assert.is_true(math.abs(1 / sigma ^ 2 - (1 / s_g ^ 2 + 1 / s_o ^ 2)) < 1e-12)
      assert.is_true(s_g > sigma)
    end
    assert.are.equal(1 / math.sqrt(1 - 0.64), ls.grad_sigma(1, 1.25))
    assert.error_matches(function() ls.grad_sigma(1, 1) end, "overflow_noise %(1%) must exceed")
    assert.are.equal(10, ls.default_overflow_noise(1, 100))
    assert.are.equal(51.2, ls.default_overflow_noise(1, 1024))
  end)

  it("grows after interval applied steps, backs off on a skip, within min and max", function()
    local s = ls.new({ init = 4, interval = 3, min_scale = 2, max_scale = 16, overflow_noise = 10 }, 1, 32)
    assert.are.equal(30, s.threshold)
    local seen = {}
    -- o~ below the threshold: applied; above: skipped
    for _, o in ipairs{ 0, 29.9, 0, 1, 2, 3, 5, 6, 31, 40, 41, 0 } do
      seen[#seen + 1] = { s:update(o), s.scale }
    end
    assert.are.same({ { false, 4 }, { false, 4 }, { false, 8 }, { false, 8 }, { false, 8 }, { false, 16 },
                      { false, 16 }, { false, 16 }, { true, 8 }, { true, 4 }, { true, 2 }, { false, 2 } }, seen)
    for _ = 1, 3 do s:update(100) end
    assert.are.equal(2, s.scale)   -- floor
  end)

  it("refuses scales that are not powers of two and unknown options", function()
    assert.error_matches(function() ls.new({ init = 3000 }, 1, 32) end, "init must be a power of two")
    assert.error_matches(function() ls.new({ growth = 3 }, 1, 32) end, "growth must be a power of two")
    assert.error_matches(function() ls.new({ backoff = 2 }, 1, 32) end, "backoff must be a power of two <= 1")
    assert.error_matches(function() ls.new({ intervall = 3 }, 1, 32) end, "unknown option intervall")
    assert.error_matches(function() ls.new({ overflow_noise = 0.5 }, 1, 32) end, "must exceed")
  end)
end)

describe("dp.private with loss scaling", function()
  it("skips a step whose examples all overflow, counts it in the ledger and backs off", function()
    local m = tiny.new("f32", 1)
    local lines, path = {}, os.tmpname()
    local p = private(m, { loss_scale = { init = 2 ^ 15, overflow_noise = 2 }, metrics = path,
                           log = function(l) lines[#lines + 1] = l end }, all_inf)
    local before, eps0 = snapshot(m), p:epsilon()
    local st = p:step()
    assert.is_true(st.nonfinite == st.batch_size and st.batch_size > 10, "every example overflowed")
    assert.is_true(st.skipped)
    assert.are.equal(2 ^ 15, st.loss_scale)
    assert.are.equal(2 ^ 14, p:loss_scale())
    assert.are.same(before, snapshot(m))   -- no update
    for _, e in ipairs(m:named_parameters()) do assert.is_nil(e.tensor.grad) end
    assert.are.equal(1, p:steps())
    assert.is_true(p:epsilon() > eps0)
    local run = p.ledger:runs()[1]
    assert.are.equal(1, run.steps)
    assert.are.equal(1, run.skipped_steps)
    assert.are.equal(2, run.aux_sigma)
    assert.are.equal(1.0, run.sigma)   -- the effective multiplier, as calibrated
    assert.truthy(lines[1]:find("skipped (overflow, loss scale -> 2^14)", 1, true), lines[1])
    local row = dp.util.json.decode(io.lines(path)())
    os.remove(path)
    assert.is_true(row.skipped)
    assert.are.equal(2 ^ 15, row.loss_scale)
    p:step()
    assert.are.equal(2, p.ledger:runs()[1].skipped_steps)
    assert.are.equal(2 ^ 13, p:loss_scale())
  end)

  it("drops an overflowing example but applies the step (its contribution is 0)", function()
    local outs = {}
    for k, factor in ipairs{ math.huge, 0 } do
      local m = tiny.new("f32", 2)
      local p = private(m, { loss_scale = { overflow_noise = 2 } }, function(b)
        local f = {}
        for i = 1, b.n do f[i] = i == 1 and factor or 1 end
        return dp.tensor(f, "f32")
      end)
      local st = p:step()
      assert.is_false(st.skipped)
      assert.are.equal(k == 1 and 1 or 0, st.nonfinite)
      outs[k] = snapshot(m)
    end
    -- the Inf example contributes exactly what a zero gradient does
    for name, v in pairs(outs[1]) do assert.are.same(v, outs[2][name], name) end
  end)

  it("gives the unscaled run's update bit for bit when nothing overflows (f32)", function()
    local first, third = {}, {}
    for k, scale in ipairs{ false, 2 ^ 12, 2 ^ -3, 1 } do
      local m = tiny.new("f32", 3)
      -- a count noise so large that the gradient noise is sigma itself, in double
      local p = private(m, { loss_scale = scale and { init = scale, min_scale = 2 ^ -3, overflow_noise = 1e30 } or false })
      assert.are.equal(1.0, p.grad_sigma)
      p:step()
      first[k] = snapshot(m)
      for _ = 1, 2 do p:step() end
      third[k] = snapshot(m)
    end
    for name, v in pairs(first[1]) do
      -- the first step draws the same gradient noise with or without scaling
      for k = 2, 4 do assert.are.same(v, first[k][name], name) end
      -- later steps follow the count's draws too, the same for every scale
      for k = 2, 3 do assert.are.same(third[4][name], third[k][name], name) end
    end
  end)

  it("adds gradient noise of std s_g C / (q N), and noise of std s_o to the count", function()
    local n = 100000
    local function noise_std(loss_scale)
      local w = dp.zeros({ n }, { dtype = "f32" }):requires_grad(true)
      local p = dp.private{ params = { { name = "w", tensor = w } }, optimizer = dp.optim.sgd({ w }, { lr = 1 }),
                            loss = function() error("an empty batch runs no loss") end, sample_rate = 0.01,
                            dataset_size = 1000, noise_multiplier = 1.0, max_grad_norm = 2.0, delta = 1e-5, seed = 11,
                            loss_scale = loss_scale }
      local st = p:step_on{ n = 0 }
      return std_of(flat(w)), p, st
    end
    -- expected batch q N = 10: the update is -noise / 10, noise std s_g * C
    local plain = noise_std(false)
    assert.is_true(math.abs(plain - 0.2) < 5 * 0.2 / math.sqrt(2 * n), "std without scaling " .. plain)
    local scaled, p = noise_std({ overflow_noise = 1.25 })
    local want = 2.0 * ls.grad_sigma(1.0, 1.25) / 10   -- = 1/3
    assert.is_true(math.abs(scaled - want) < 5 * want / math.sqrt(2 * n), ("std %g, want %g"):format(scaled, want))
    -- the count's noise over many empty steps (o = 0): mean 0, std 1.25 (5 standard errors)
    local counts = {}
    for i = 1, 400 do counts[i] = p:step_on{ n = 0 }.overflow_noisy end
    local s, mean = std_of(counts)
    assert.is_true(math.abs(mean) < 5 * 1.25 / math.sqrt(400), "mean " .. mean)
    assert.is_true(math.abs(s - 1.25) < 5 * 1.25 / math.sqrt(800), "std " .. s)
  end)

  it("resumes bit-identically, with the scale and its good-step count", function()
    local opts = { loss_scale = { init = 2 ^ 4, interval = 2, overflow_noise = 2 } }
    local m1 = tiny.new("f32", 8)
    local p1 = private(m1, opts)
    for _ = 1, 5 do p1:step() end
    assert.are.equal(2 ^ 6, p1:loss_scale())   -- grew at steps 2 and 4

    local m2 = tiny.new("f32", 8)
    local p2 = private(m2, opts)
    for _ = 1, 3 do p2:step() end
    local weights = {}
    for _, e in ipairs(m2:named_parameters()) do weights[e.name] = e.tensor:clone():detach() end
    local state = dp.util.json.decode(dp.util.json.encode(p2:generator_state()))   -- as a checkpoint keeps it
    assert.are.same({ scale = 2 ^ 5, good_steps = 1 }, state.loss_scale)
    local m3 = tiny.new("f32", 8)
    for _, e in ipairs(m3:named_parameters()) do dp.no_grad(function() e.tensor:copy(weights[e.name]) end) end
    local o3 = dp.optim.sgd(m3:trainable(), { lr = 0.1, momentum = 0.9 })
    o3:load_state_dict(p2.optimizer:state_dict())
    local p3 = private(m3, { loss_scale = opts.loss_scale, optimizer = o3, generator_state = state,
                             ledger = dp.privacy.accountant.Ledger.from_json(p2.ledger:to_json()) })
    for _ = 1, 2 do p3:step() end
    assert.are.equal(p1:loss_scale(), p3:loss_scale())
    assert.are.same(snapshot(m1), snapshot(m3))
  end)
end)
