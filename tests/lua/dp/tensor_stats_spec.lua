-- Specs for t:stats(): mean, std, min, max over the finite elements against an f64 reference
-- loop, and the NaN and Inf counts.
local dp = require "dp"

describe("dp.tensor_stats", function()
  it("matches an f64 reference and counts NaN and Inf", function()
    local values = { 1.5, -2, 0 / 0, 4, math.huge, 3.25, -math.huge, 0 / 0, 10 }
    local s = dp.tensor(values, "f64"):stats()
    local finite, sum = {}, 0
    for _, v in ipairs(values) do
      if v == v and math.abs(v) ~= math.huge then finite[#finite + 1] = v; sum = sum + v end
    end
    local mean = sum / #finite
    local ss = 0
    for _, v in ipairs(finite) do ss = ss + (v - mean) ^ 2 end
    assert.near(mean, s.mean, 1e-12)
    assert.near(math.sqrt(ss / (#finite - 1)), s.std, 1e-12)
    assert.equal(-2, s.min)
    assert.equal(10, s.max)
    assert.equal(2, s.nan)
    assert.equal(2, s.inf)
    assert.equal(9, s.count)
    assert.truthy(tostring(s):find("nan 2  inf 2", 1, true), tostring(s))
  end)

  it("works on f32 views and leaves the moments out when nothing is finite", function()
    local x = dp.arange(12, "f32"):reshape(3, 4):transpose(1, 2)
    local s = x:stats()
    assert.equal(5.5, s.mean)
    assert.equal(0, s.min)
    assert.equal(11, s.max)
    local empty = (dp.zeros(3) / 0):stats()
    assert.is_nil(empty.mean)
    assert.equal(3, empty.nan)
  end)
end)
