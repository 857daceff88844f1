-- Specs for dp.nn.dropout: training vs eval, the rate, and argument checks.
local dp = require "dp"
local nn = require "dp.nn"

describe("dp.nn.Dropout", function()
  it("zeroes about p of the entries and scales the rest by 1 / (1 - p) in training, is the identity in eval", function()
    local d = nn.Dropout(0.25, { rng = dp.rng(9) })
    local x = dp.ones({ 2000 }, { dtype = "f64" })
    local zeros = 0
    for _, v in ipairs(d(x):totable()) do
      if v == 0 then zeros = zeros + 1 else assert.is_true(math.abs(v - 4 / 3) < 1e-12) end
    end
    -- Binomial(2000, 0.25): mean 500, sd ~19.4; 5 sd
    assert.is_true(math.abs(zeros - 500) < 97, tostring(zeros))
    d:eval()
    assert.are.equal(x, d(x))
    assert.error_matches(function() nn.Dropout(1) end, "p must be a number in %[0, 1%)")
  end)
end)
