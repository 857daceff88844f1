-- Specs for dp.tensor_view: views share storage with their source; casts and copies.
local dp = require "dp"
local tu = require "testutil"

describe("dp.tensor_view", function()
  local function base() return dp.tensor({{1, 2, 3}, {4, 5, 6}}) end

  it("reshapes with a table, numbers or -1", function()
    local t = base()
    assert.same({3, 2}, t:reshape({3, 2}):size())
    assert.same({6}, t:reshape(-1):size())
    assert.same({1, 6}, t:view(1, -1):size())
    assert.same({6}, t:flatten():size())
    assert.same({2, 3}, dp.zeros(2, 3, 1):flatten(2):size())
    assert.error_matches(function() t:reshape(4, 2) end,
      "reshape: cannot view [2,3] f32 cpu (6 elements) as [4,2]", nil, true)
  end)

  it("shares storage between a view and its source", function()
    local t = base()
    local r = t:reshape(3, 2)
    r[{1, 2}] = 20
    assert.equal(20, t[{1, 2}])
    local tr = t:transpose(1, 2)
    tr[{3, 2}] = 60
    assert.equal(60, t[{2, 3}])
    local n = t:narrow(2, 2, 2)
    n:fill(0)
    assert.same({{1, 0, 0}, {4, 0, 0}}, t:totable())
    local s = t:select(1, 2)
    s:fill(9)
    assert.same({9, 9, 9}, t[2]:totable())
  end)

  it("clones and detaches", function()
    local t = base()
    local c = t:clone()
    c:fill(0)
    assert.equal(1, t[{1, 1}])
    local d = t:detach()
    d:fill(0)
    assert.equal(0, t[{1, 1}])
  end)

  it("permutes, transposes and takes slices", function()
    local t = dp.arange(24, "f32"):reshape(2, 3, 4)
    assert.same({4, 2, 3}, t:permute(3, 1, 2):size())
    assert.same({4, 2, 3}, t:permute({3, 1, 2}):size())
    assert.same({{0, 4, 8}, {1, 5, 9}, {2, 6, 10}, {3, 7, 11}}, t[1]:t():totable())
    assert.same({0, 2}, t[1][1]:slice(1, 1, 4, 2):totable())
    assert.same({1, 3}, t[1][1]:slice(1, 2, -1, 2):totable())
    assert.same({5, 6}, t:narrow(1, 1, 1):narrow(2, 2, 1):narrow(3, 2, 2):reshape(-1):totable())
    assert.same({{4, 5, 6, 7}}, t:select(1, 1):narrow(1, 2, 1):totable())
  end)

  it("expands, squeezes and unsqueezes", function()
    local v = dp.tensor({1, 2, 3})
    assert.same({{1, 2, 3}, {1, 2, 3}}, v:expand(2, 3):totable())
    assert.same({{1, 2, 3}, {1, 2, 3}}, v:expand({2, -1}):totable())
    assert.same({0, 1}, v:expand(2, 3):stride())
    assert.same({1, 3}, v:unsqueeze(1):size())
    assert.same({3, 1}, v:unsqueeze(2):size())
    assert.same({3, 1}, v:unsqueeze(-1):size())
    assert.same({3}, dp.zeros(1, 3, 1):squeeze():size())
    assert.same({3, 1}, dp.zeros(1, 3, 1):squeeze(1):size())
    assert.same({2, 3}, dp.zeros(2):unsqueeze(2):expand_as(dp.zeros(2, 3)):size())
  end)

  it("names the op, the dims and the shape in errors (dims are 1-based)", function()
    local t = base()
    assert.error_matches(function() t:transpose(1, 3) end,
      "transpose: dim 3 out of range for [2,3] f32 cpu (dims are 1..2, or -2..-1 from the end)",
      nil, true)
    assert.error_matches(function() t:select(0, 1) end, "select: dim 0 out of range", nil, true)
    assert.error_matches(function() t:select(1, 3) end,
      "select: index 3 out of range for dim 1 of size 2 in [2,3] f32 cpu", nil, true)
    assert.error_matches(function() t:narrow(2, 2, 5) end,
      "narrow: 5 elements from 2 are out of range for dim 2 of size 3 in [2,3] f32 cpu", nil, true)
    assert.error_matches(function() t:permute(1, 1) end,
      "permute: dim 1 appears twice in {1, 1} for [2,3] f32 cpu", nil, true)
    assert.error_matches(function() t:permute(1) end,
      "permute: got 1 dims for [2,3] f32 cpu, expected 2", nil, true)
    assert.error_matches(function() t:squeeze(1) end,
      "squeeze: dim 1 of [2,3] f32 cpu has size 2, expected 1", nil, true)
    assert.error_matches(function() t:expand(4, 4) end, "[2,3] f32 cpu", nil, true)
    assert.error_matches(function() dp.zeros(3):t() end, "t: expected a 2-d tensor, got [3] f32 cpu",
      nil, true)
  end)

  it("casts between dtypes", function()
    local t = dp.tensor({1.5, -2.25, 3})
    assert.equal("f64", t:double():dtype())
    assert.equal("bf16", t:bf16():dtype())
    assert.equal("f16", t:half():dtype())
    assert.equal("f32", t:double():float():dtype())
    assert.equal("i64", t:to("i64"):dtype())
    assert.same({1.5, -2.25, 3}, t:cast("bf16"):float():totable())
    tu.assert_close(dp.tensor({1 / 3}):bf16(), {0.333984375})
    assert.equal(t, t:to("cpu"))
  end)

  it("copies and fills in place, converting and broadcasting", function()
    local t = dp.zeros(2, 3)
    t:copy(dp.tensor({1, 2, 3}, "f64"))
    assert.same({{1, 2, 3}, {1, 2, 3}}, t:totable())
    t:fill(4)
    assert.same({{4, 4, 4}, {4, 4, 4}}, t:totable())
    t:zero()
    assert.same({{0, 0, 0}, {0, 0, 0}}, t:totable())
  end)
end)
