-- Specs for dp.tensor_index: 1-based t[i], Torch7-style t[{...}] ranges, and assignment.
local dp = require "dp"

describe("dp.tensor_index", function()
  local function grid() return dp.arange(12, "f32"):reshape(3, 4) end

  it("selects rows with t[i] (1-based, negative from the end)", function()
    local t = grid()
    assert.same({0, 1, 2, 3}, t[1]:totable())
    assert.same({8, 9, 10, 11}, t[3]:totable())
    assert.same({8, 9, 10, 11}, t[-1]:totable())
    assert.same({4, 5, 6, 7}, t[-2]:totable())
  end)

  it("gives numbers when every dim is selected", function()
    local t = grid()
    assert.equal(6, t[2][3])
    assert.equal(6, t[{2, 3}])
    assert.equal(11, t[{-1, -1}])
    assert.equal(3, dp.tensor({1, 2, 3})[3])
  end)

  it("takes ranges, single-element ranges, steps and whole dims", function()
    local t = grid()
    assert.same({{5, 6}, {9, 10}}, t[{{2, 3}, {2, 3}}]:totable())
    assert.same({{4, 5, 6, 7}}, t[{{2}}]:totable())
    assert.same({1, 5, 9}, t[{{}, 2}]:totable())
    assert.same({{0, 2}, {8, 10}}, t[{{1, 3, 2}, {1, -1, 2}}]:totable())
    assert.same({{2, 3}, {6, 7}, {10, 11}}, t[{{}, {-2, -1}}]:totable())
    assert.same(t:totable(), t[{}]:totable())
  end)

  it("returns views that share storage", function()
    local t = grid()
    local v = t[{{1, 2}, {3, 4}}]
    v:fill(-1)
    assert.same({{0, 1, -1, -1}, {4, 5, -1, -1}, {8, 9, 10, 11}}, t:totable())
  end)

  it("assigns numbers and tensors through indices", function()
    local t = grid()
    t[1] = 7
    assert.same({7, 7, 7, 7}, t[1]:totable())
    t[{2, 3}] = 100
    assert.equal(100, t[2][3])
    t[{{}, 1}] = dp.tensor({-1, -2, -3})
    assert.same({-1, -2, -3}, t[{{}, 1}]:totable())
    t[3] = dp.tensor({1, 2, 3, 4}, "f64")   -- converted to the destination dtype
    assert.same({1, 2, 3, 4}, t[3]:totable())
    t[2][2] = 55
    assert.equal(55, t[{2, 2}])
  end)

  it("names the index, the dim and the shape when out of range", function()
    local t = grid()
    assert.error_matches(function() local _ = t[4] end,
      "index: index 4 out of range for dim 1 of size 3 in [3,4] f32 cpu (indices are 1..3", nil, true)
    assert.error_matches(function() local _ = t[0] end, "index: index 0 out of range", nil, true)
    assert.error_matches(function() local _ = t[{1, 5}] end,
      "index: index 5 out of range for dim 2 of size 4 in [3,4] f32 cpu", nil, true)
    assert.error_matches(function() local _ = t[{1, 1, 1}] end,
      "index: 3 indices for [3,4] f32 cpu with 2 dims", nil, true)
    assert.error_matches(function() local _ = t[1.5] end,
      "index: index must be an integer, got 1.5", nil, true)
    assert.error_matches(function() local _ = t[{"a"}] end,
      "index: index entry 1 is a string, expected a number or a table", nil, true)
    assert.error_matches(function() local _ = dp.tensor(1)[1] end,
      "index: cannot index the 0-d tensor [] f32 cpu", nil, true)
    assert.error_matches(function() t[9] = 1 end, "index: index 9 out of range", nil, true)
  end)
end)
