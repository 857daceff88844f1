-- Specs for dp.nn.linear: shapes, initialisation, and forward against a Lua loop.
local dp = require "dp"
local nn = require "dp.nn"

describe("dp.nn.Linear", function()
  it("has weight (out, in) N(0, std^2) and a zero bias", function()
    local l = nn.Linear(40, 30, { rng = dp.rng(5), std = 0.5, dtype = "f64" })
    assert.are.same({ 30, 40 }, l.weight:size())
    assert.are.same({ 30 }, l.bias:size())
    local s, s2, n = 0, 0, 0
    for _, row in ipairs(l.weight:totable()) do for _, v in ipairs(row) do s, s2, n = s + v, s2 + v * v, n + 1 end end
    -- 1200 draws: the mean's sd is 0.5/sqrt(1200) ~ 0.014; the sample sd within ~2% of 0.5
    assert.is_true(math.abs(s / n) < 0.06)
    assert.is_true(math.abs(math.sqrt(s2 / n) - 0.5) < 0.05)
    for _, v in ipairs(l.bias:totable()) do assert.are.equal(0, v) end
    assert.is_nil(nn.Linear(2, 3, { bias = false }).bias)
    assert.error_matches(function() nn.Linear(0, 3) end, "in_features must be a positive integer")
  end)

  it("computes x W^T + b like a Lua loop, on (B, T, in) inputs", function()
    local l = nn.Linear(3, 2, { rng = dp.rng(1), std = 1, dtype = "f64" })
    l.bias:copy(dp.tensor({ 0.5, -1 }, "f64"))
    local x = dp.randn({ 2, 4, 3 }, { seed = 2, dtype = "f64" })
    local y, xt, w, b = l(x):totable(), x:totable(), l.weight:totable(), l.bias:totable()
    for i = 1, 2 do for t = 1, 4 do for o = 1, 2 do
      local ref = b[o]
      for k = 1, 3 do ref = ref + xt[i][t][k] * w[o][k] end
      assert.is_true(math.abs(y[i][t][o] - ref) < 1e-12)
    end end end
    assert.are.same(dp.linear(x, l.weight, l.bias):totable(), y)
  end)
end)
