-- Specs for dp.factory: the tensor constructors.
local dp = require "dp"
local tu = require "testutil"

describe("dp.factory", function()
  it("builds tensors from numbers and nested tables", function()
    local s = dp.tensor(2.5)
    assert.same({}, s:size())
    assert.equal(2.5, s:item())
    local m = dp.tensor({{1, 2, 3}, {4, 5, 6}})
    assert.same({2, 3}, m:size())
    assert.equal("f32", m:dtype())
    assert.same({{1, 2, 3}, {4, 5, 6}}, m:totable())
    assert.same({1, 0}, dp.tensor({true, false}, "u8"):totable())
  end)

  it("takes a dtype by name, alias or options table", function()
    assert.equal("f64", dp.tensor({1}, "f64"):dtype())
    assert.equal("f32", dp.tensor({1}, "float32"):dtype())
    assert.equal("i64", dp.tensor({1}, { dtype = "i64" }):dtype())
    assert.equal("bf16", dp.zeros({2}, "bf16"):dtype())
  end)

  it("copies a tensor, optionally casting it", function()
    local a = dp.tensor({1, 2})
    local b = dp.tensor(a, "f64")
    a[1] = 5
    assert.equal("f64", b:dtype())
    assert.same({1, 2}, b:totable())
  end)

  it("names the position of ragged or non-numeric entries", function()
    assert.error_matches(function() dp.tensor({{1, 2}, {3}}) end,
      "tensor: ragged table: [2] has 1 elements, expected 2", nil, true)
    assert.error_matches(function() dp.tensor({{1, 2}, {3, "x"}}) end,
      "tensor: element [2][2] is a string, expected a number", nil, true)
    assert.error_matches(function() dp.tensor({1, {2}}) end,
      "tensor: element [2] is a table, expected a number", nil, true)
  end)

  it("makes zeros, ones, full and empty from a table or numbers", function()
    assert.same({{0, 0, 0}, {0, 0, 0}}, dp.zeros({2, 3}):totable())
    assert.same({{0, 0, 0}, {0, 0, 0}}, dp.zeros(2, 3):totable())
    assert.same({1, 1}, dp.ones(2):totable())
    assert.same({{7, 7}}, dp.full({1, 2}, 7):totable())
    assert.equal("f64", dp.ones(2, "f64"):dtype())
    assert.equal("i32", dp.zeros(2, 2, { dtype = "i32" }):dtype())
    assert.same({3, 4}, dp.empty(3, 4):size())
    assert.same({}, dp.zeros({}):size())
  end)

  it("draws reproducible random tensors", function()
    local a = dp.randn({100}, { seed = 42 })
    local b = dp.randn({100}, { seed = 42 })
    local c = dp.randn({100}, { seed = 43 })
    assert.same(a:totable(), b:totable())
    assert.are_not.same(a:totable(), c:totable())
    local m = dp.randn({20000}, { seed = 1, dtype = "f64", mean = 3, std = 2 })
    assert.is_true(math.abs(m:mean():item() - 3) < 0.1)
    assert.is_true(math.abs(((m - 3) ^ 2):mean():item() - 4) < 0.2)
    local u = dp.rand({20000}, { seed = 1, dtype = "f64" })
    assert.is_true(u:max():item() < 1)
    assert.is_true(-(-u):max():item() >= 0)
    assert.is_true(math.abs(u:mean():item() - 0.5) < 0.02)
  end)

  it("draws from an explicit generator and advances it", function()
    local r = dp.rng(5)
    local a = dp.randn({8}, { rng = r })
    local b = dp.randn({8}, { rng = r })
    assert.are_not.same(a:totable(), b:totable())
    local r2 = dp.rng(5)
    assert.same(a:totable(), r2:randn({8}):totable())
  end)

  it("makes ranges", function()
    assert.same({0, 1, 2, 3}, dp.arange(4):totable())
    assert.equal("i64", dp.arange(4):dtype())
    assert.same({2, 4, 6}, dp.arange(2, 8, 2):totable())
    tu.assert_close(dp.arange(0, 1, 0.25), {0, 0.25, 0.5, 0.75})
    assert.equal("f64", dp.arange(3, "f64"):dtype())
  end)

  it("copies from doubles", function()
    local t = dp.from_f64({1, 2, 3, 4, 5, 6}, {2, 3}, "f64")
    assert.same({{1, 2, 3}, {4, 5, 6}}, t:totable())
    assert.error_matches(function() dp.from_f64({1, 2}, {3}) end,
      "from_f64: 2 values for a shape of 3 elements", nil, true)
  end)

  it("rejects unknown dtypes and bad shapes", function()
    assert.error_matches(function() dp.zeros(2, "f33") end,
      "zeros: unknown dtype f33 (expected one of f32, f64", nil, true)
    assert.error_matches(function() dp.zeros(2.5) end, "zeros: size must be an integer, got 2.5",
      nil, true)
    assert.error_matches(function() dp.ones({1, 1, 1, 1, 1, 1, 1, 1, 1}) end,
      "ones: at most 8 dims, got 9", nil, true)
    assert.error_matches(function() dp.full({2}, "x") end, "full: value must be a number", nil, true)
    assert.error_matches(function() dp.zeros(2, { device = "tpu" }) end,
      "zeros: unknown device tpu (expected cpu or cuda)", nil, true)
  end)

  it("reports a failed allocation as a Lua error", function()
    assert.error_matches(function() dp.empty(1e12, 1e12) end, "empty: ", nil, true)
  end)
end)
