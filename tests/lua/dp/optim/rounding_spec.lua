-- Specs for the optimizers' rounding options (dp.optim.rounding, opts.rounding / rounding_seed,
-- opt:set_rounding): stochastic rounding of a sub-ulp update is unbiased (mean within 5 standard
-- deviations of the exact f64 expectation) where nearest never moves; same seed, same bits; the
-- counter advances by ceil(numel / 4) per stochastic update; a run resumed from state_dict is bit
-- for bit the uninterrupted one; old state dicts still load; state lives in the "optimizer"
-- memory category; bad options fail naming them.
local dp = require "dp"
local tu = require "testutil"

local C = dp.C
local N, STEPS = 4096, 20

local function mean(t)
  local v, s = tu.values(t), 0
  for i = 1, #v do s = s + v[i] end
  return s / #v
end

-- N bf16 ones and a gradient of -5/16 of bf16's ulp at 1 (2^-7): each step adds d in expectation.
local function setup(opts, dtype)
  local p = dp.full({ N }, 1, { dtype = dtype or "bf16", requires_grad = true })
  local opt = dp.optim.sgd({ { name = "p", tensor = p } }, opts)
  return p, opt
end

local D = 5 / 16 * 2 ^ -7

local function run(p, opt, steps)
  for _ = 1, steps do
    p.grad = dp.full({ N }, -D)
    opt:step()
  end
end

describe("optimizer rounding", function()
  it("stochastic rounding is unbiased where nearest never moves", function()
    local p, opt = setup({ lr = 1, rounding = "stochastic", rounding_seed = 7 })
    run(p, opt, STEPS)
    local sd = 2 ^ -7 * math.sqrt(STEPS / (4 * N))
    assert.is_true(math.abs(mean(p) - (1 + STEPS * D)) <= 5 * sd,
                   ("mean %.9g, expected %.9g +- %.3g"):format(mean(p), 1 + STEPS * D, 5 * sd))
    local q, nearest = setup({ lr = 1 })
    run(q, nearest, STEPS)
    assert.equal(1, mean(q))
    assert.equal("nearest", nearest:rounding_of("p"))
  end)

  it("is reproducible from the seed and advances the counter by ceil(numel / 4)", function()
    local a, oa = setup({ lr = 1, rounding = "stochastic", rounding_seed = 3 })
    local b, ob = setup({ lr = 1, rounding = "stochastic", rounding_seed = 3 })
    local c, oc = setup({ lr = 1, rounding = "stochastic", rounding_seed = 4 })
    run(a, oa, 3); run(b, ob, 3); run(c, oc, 3)
    assert.same(tu.values(a), tu.values(b))
    assert.are_not.same(tu.values(a), tu.values(c))
    local r = oa:state_dict().rounding
    assert.equal(3, r.seed)
    assert.equal(3 * N / 4, r.counter)
    assert.equal("stochastic", r.modes.p)
  end)

  it("resumes from state_dict bit for bit, and loads state dicts without rounding", function()
    local opts = { lr = 0.5, momentum = 0.9, rounding = "stochastic", rounding_seed = 11 }
    local x, ox = setup(opts)
    run(x, ox, 4)
    local y, oy = setup(opts)
    run(y, oy, 2)
    local saved = oy:state_dict()
    local z = dp.tensor(y, { dtype = "bf16" }):requires_grad_()
    local oz = dp.optim.sgd({ { name = "p", tensor = z } }, { lr = 0.5, momentum = 0.9, rounding_seed = 99 })
    oz:load_state_dict(saved)
    assert.equal("stochastic", oz:rounding_of(z))
    run(z, oz, 2)
    assert.same(tu.values(x), tu.values(z))
    saved.rounding = nil
    local w = dp.tensor(y, { dtype = "bf16" }):requires_grad_()
    local ow = dp.optim.sgd({ { name = "p", tensor = w } }, { lr = 0.5, momentum = 0.9 })
    ow:load_state_dict(saved)
    assert.equal("nearest", ow:rounding_of("p"))
  end)

  it("set_rounding chooses per parameter; f32 parameters ignore it", function()
    local a = dp.full({ N }, 1, { dtype = "bf16", requires_grad = true })
    local b = dp.full({ N }, 1, { dtype = "bf16", requires_grad = true })
    local f = dp.full({ 8 }, 1, { requires_grad = true })
    local opt = dp.optim.adam({ { name = "a", tensor = a }, { name = "b", tensor = b }, { name = "f", tensor = f } },
                              { lr = 1e-3 })
    opt:set_rounding(b, "stochastic"):set_rounding("f", "stochastic")
    a.grad, b.grad, f.grad = dp.full({ N }, -1), dp.full({ N }, -1), dp.full({ 8 }, -1)
    opt:step()
    -- 1 + 1e-3 is below half of bf16's ulp at 1: nearest keeps 1, stochastic moves some
    assert.equal(1, mean(a))
    assert.is_true(mean(b) > 1)
    assert.equal(N / 4, opt:state_dict().rounding.counter)
    assert.near(1.001, mean(f), 1e-6)
    assert.equal(tonumber(C.DP_MEM_OPTIMIZER), tonumber(C.dp_tensor_mem_category(opt.state.a.m.ptr)))
    assert.equal(tonumber(C.DP_MEM_OPTIMIZER), tonumber(C.dp_tensor_mem_category(opt.state.f.v.ptr)))
  end)

  it("names bad options", function()
    assert.error_matches(function() dp.optim.sgd({ dp.zeros({ 2 }) }, { lr = 1, rounding = "up" }) end,
      'dp.optim.sgd: rounding must be "nearest" or "stochastic", got up', nil, true)
    assert.error_matches(function() dp.optim.adamw({ dp.zeros({ 2 }) }, { rounding_seed = -1 }) end,
      "dp.optim.adamw: rounding_seed must be an integer in [0, 2^53], got -1", nil, true)
    local p, opt = setup({ lr = 1 })
    assert.error_matches(function() opt:set_rounding(dp.zeros({ 2 }), "stochastic") end,
      "dp.optim.sgd:set_rounding: ", nil, true)
    assert.error_matches(function() opt:set_rounding(p, "always") end,
      'set_rounding: rounding must be "nearest" or "stochastic", got always', nil, true)
    local sd = opt:state_dict()
    sd.rounding.counter = 1.5
    assert.error_matches(function() opt:load_state_dict(sd) end,
      "load_state_dict: rounding.counter must be an integer", nil, true)
  end)
end)
