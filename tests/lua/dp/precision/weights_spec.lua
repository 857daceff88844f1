-- Specs for dp.precision.weights: a low-precision weight copy is made once per update (counted),
-- refreshed after an optimizer step or an in-place write, and holds the master cast to nearest
-- even; the forward's gradient reaches the master.
local dp = require "dp"
local nn = require "dp.nn"
local precision = require "dp.precision"

local function refreshes(model, name) return precision.copy_stats(model)[name].refreshes end

-- The copy a module computes with, as f64 values, against dp.cast of its master.
local function assert_copy_is_cast(lin, dt)
  local copy = lin:param("weight")
  assert.are.equal(dt, copy:dtype())
  assert.are.same(lin.weight:cast(dt):cast("f64"):totable(), copy:cast("f64"):totable())
end

describe("dp.precision.weights", function()
  it("converts once for two forwards, again after opt:step and after copy_", function()
    local lin = nn.Linear(5, 4, { rng = dp.rng(3), std = 0.7 })
    precision.apply(lin, "mixed-bf16")
    local x = dp.randn({ 3, 5 }, { seed = 4 })
    lin(x); lin(x)
    assert.are.equal(1, refreshes(lin, "weight"))
    assert.are.equal(1, refreshes(lin, "bias"))
    assert_copy_is_cast(lin, "bf16")
    assert.are.equal("parameters", lin:param("weight"):mem_category())
    assert.are.equal("master", lin.weight:mem_category())
    lin(x):sum():backward()
    assert.are.equal("f32", lin.weight:get_grad():dtype())    -- the gradient lands on the master
    local opt = dp.optim.sgd({ { name = "weight", tensor = lin.weight }, { name = "bias", tensor = lin.bias } },
                             { lr = 0.1 })
    opt:step()
    assert.are.equal(1, refreshes(lin, "weight"))             -- lazily: at the next use
    lin(x)
    assert.are.equal(2, refreshes(lin, "weight"))
    assert_copy_is_cast(lin, "bf16")
    lin(x)
    assert.are.equal(2, refreshes(lin, "weight"))
    dp.no_grad(function() lin.weight:copy(dp.randn({ 4, 5 }, { seed = 9 })) end)   -- a checkpoint load
    lin(x)
    assert.are.equal(3, refreshes(lin, "weight"))
    assert_copy_is_cast(lin, "bf16")
  end)

  it("computes with the copy: equal to a forward on the cast weights", function()
    local lin = nn.Linear(6, 3, { rng = dp.rng(5), std = 0.9 })
    dp.no_grad(function() lin.bias:copy(dp.randn({ 3 }, { seed = 6 })) end)
    precision.apply(lin, "mixed-f16")
    local x = dp.randn({ 2, 6 }, { seed = 7 })
    local y = lin(x)
    assert.are.equal("f16", y:dtype())
    local want = dp.linear(x:cast("f16"), lin.weight:cast("f16"), lin.bias:cast("f16"))
    assert.are.same(want:totable(), y:totable())
  end)

  it("drops copies when the policy stores parameters as they compute", function()
    local lin = nn.Linear(5, 4, { rng = dp.rng(3) })
    precision.apply(lin, "mixed-bf16")
    lin(dp.randn({ 2, 5 }, { seed = 1 }))
    precision.apply(lin, "fp32")
    assert.are.same({}, precision.copy_stats(lin))
    assert.are.equal(lin.weight, lin:param("weight"))
    assert.are.equal("parameters", lin.weight:mem_category())
  end)
end)
