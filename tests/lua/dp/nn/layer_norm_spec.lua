-- Specs for dp.nn.layer_norm: initial weight 1 / bias 0 and forward against a Lua loop.
local dp = require "dp"
local nn = require "dp.nn"

describe("dp.nn.LayerNorm", function()
  it("normalises the last dim with eps, then scales and shifts", function()
    local ln = nn.LayerNorm(4, { eps = 1e-3, dtype = "f64" })
    assert.are.same({ 1, 1, 1, 1 }, ln.weight:totable())
    assert.are.same({ 0, 0, 0, 0 }, ln.bias:totable())
    ln.weight:copy(dp.tensor({ 1, 2, 0.5, -1 }, "f64"))
    ln.bias:copy(dp.tensor({ 0, 0.1, 0.2, 0.3 }, "f64"))
    local x = dp.randn({ 3, 4 }, { seed = 4, dtype = "f64" })
    local y, xt, w, b = ln(x):totable(), x:totable(), ln.weight:totable(), ln.bias:totable()
    for i = 1, 3 do
      local mean, var = 0, 0
      for k = 1, 4 do mean = mean + xt[i][k] / 4 end
      for k = 1, 4 do var = var + (xt[i][k] - mean) ^ 2 / 4 end
      for k = 1, 4 do
        local ref = (xt[i][k] - mean) / math.sqrt(var + 1e-3) * w[k] + b[k]
        assert.is_true(math.abs(y[i][k] - ref) < 1e-12, ("row %d col %d"):format(i, k))
      end
    end
    assert.are.same(dp.layer_norm(x, ln.weight, ln.bias, 1e-3):totable(), y)
    assert.are.equal(1e-12, nn.LayerNorm(2).eps)
    assert.error_matches(function() nn.LayerNorm(2, { eps = 0 }) end, "eps must be a positive number")
  end)
end)
