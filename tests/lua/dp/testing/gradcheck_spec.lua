-- Specs for dp.testing.gradcheck, run over every differentiable op of dp.h through the Lua API.
local dp = require "dp"
local gradcheck = require "dp.testing.gradcheck"

-- A leaf in f64 with values in [lo, hi), requiring grad.
local seed = 100
local function leaf(shape, lo, hi)
  seed = seed + 1
  lo, hi = lo or -1, hi or 1
  local u = dp.rand(shape, { seed = seed, dtype = "f64" })
  return (u * (hi - lo) + lo):detach():requires_grad(true)
end


-- A leaf with given values (mixed signs away from 0, for the kinks of abs and relu).
local function fixed(values) return dp.tensor(values, { dtype = "f64", requires_grad = true }) end

local function ids(values) return dp.tensor(values, "i64") end

local cases = {
  { "add", function(a, b) return a + b end, { leaf{2, 3}, leaf{3} } },
  { "sub", function(a, b) return a - b end, { leaf{2, 3}, leaf{2, 1} } },
  { "mul", function(a, b) return a * b end, { leaf{2, 3}, leaf{2, 3} } },
  { "div", function(a, b) return a / b end, { leaf{2, 3}, leaf({3}, 0.5, 2) } },
  { "number ops", function(a) return (2 - a) * 3 / 4 + 1 end, { leaf{3} } },
  { "number / tensor", function(a) return 2 / a end, { leaf({3}, 0.5, 2) } },
  { "maximum", function(a, b) return dp.maximum(a, b) end, { leaf{4}, leaf{4} } },
  { "affine", function(a) return a:affine(-2, 0.5) end, { leaf{2, 2} } },
  { "pow", function(a) return a:pow(2.5) end, { leaf({3}, 0.5, 2) } },
  { "neg", function(a) return -a end, { leaf{3} } },
  { "exp", function(a) return a:exp() end, { leaf{3} } },
  { "log", function(a) return a:log() end, { leaf({3}, 0.5, 2) } },
  { "sqrt", function(a) return a:sqrt() end, { leaf({3}, 0.5, 2) } },
  { "abs", function(a) return a:abs() end, { fixed{-0.7, 0.3, -0.4, 0.9} } },
  { "tanh", function(a) return a:tanh() end, { leaf{3} } },
  { "sigmoid", function(a) return a:sigmoid() end, { leaf{3} } },
  { "relu", function(a) return a:relu() end, { fixed{-0.5, 0.3, -0.2, 0.8} } },
  { "gelu", function(a) return a:gelu() end, { leaf{5} } },
  { "matmul", function(a, b) return a:matmul(b) end, { leaf{3, 4}, leaf{4, 2} } },
  { "matmul batched", function(a, b) return a:matmul(b) end, { leaf{2, 3, 4}, leaf{2, 4, 2} } },
  { "matmul broadcast", function(a, b) return a:matmul(b) end, { leaf{2, 3, 4}, leaf{4, 2} } },
  { "matmul vector", function(a, b) return a:matmul(b) end, { leaf{3, 4}, leaf{4} } },
  { "linear", function(x, w, b) return dp.linear(x, w, b) end, { leaf{2, 3, 4}, leaf{5, 4}, leaf{5} } },
  { "linear no bias", function(x, w) return dp.linear(x, w) end, { leaf{3, 4}, leaf{2, 4} } },
  { "sum", function(a) return a:sum() end, { leaf{2, 3} } },
  { "sum dims", function(a) return a:sum({1, 3}, true) end, { leaf{2, 3, 2} } },
  { "mean", function(a) return a:mean(2) end, { leaf{2, 3} } },
  { "max", function(a) return a:max(2) end, { leaf{3, 4} } },
  { "softmax", function(a) return a:softmax(2) end, { leaf{3, 4} } },
  { "softmax dim 1", function(a) return a:softmax(1) end, { leaf{3, 4} } },
  { "log_softmax", function(a) return a:log_softmax(-1) end, { leaf{3, 4} } },
  { "layer_norm", function(x, w, b) return x:layer_norm(w, b, 1e-5) end,
    { leaf{3, 5}, leaf{5}, leaf{5} } },
  { "layer_norm plain", function(x) return x:layer_norm() end, { leaf{2, 4} } },
  { "embedding", function(w, i) return dp.embedding(w, i) end, { leaf{4, 3}, ids{{0, 3}, {3, 1}} } },
  { "index_add", function(x, i, s) return dp.index_add(x, i, s) end,
    { leaf{4, 3}, ids{2, 0, 2}, leaf{3, 3} } },
  { "cross_entropy", function(z, y) return dp.cross_entropy(z, y) end, { leaf{4, 3}, ids{0, 2, 1, -100} } },
  { "cross_entropy sum", function(z, y) return dp.cross_entropy(z, y, { reduction = "sum" }) end,
    { leaf{3, 5}, ids{4, 0, 1} } },
  { "cross_entropy none", function(z, y) return dp.cross_entropy(z, y, { reduction = "none" }) end,
    { leaf{3, 5}, ids{4, 0, 1} } },
  { "masked_fill", function(x, m) return dp.masked_fill(x, m, 2) end,
    { leaf{2, 3}, dp.tensor({1, 0, 1}, "u8") } },
  { "reshape", function(a) return a:reshape(3, 2) * a:reshape(3, 2) end, { leaf{2, 3} } },
  { "permute", function(a) return a:permute(3, 1, 2) end, { leaf{2, 3, 4} } },
  { "transpose", function(a) return a:transpose(1, 2):matmul(a) end, { leaf{3, 2} } },
  { "narrow", function(a) return a:narrow(2, 2, 2) end, { leaf{2, 4} } },
  { "slice", function(a) return a:slice(2, 1, 4, 2) end, { leaf{2, 4} } },
  { "select", function(a) return a:select(1, 2) end, { leaf{3, 2} } },
  { "index", function(a) return a[{{1, 2}, 2}] end, { leaf{3, 2} } },
  { "expand", function(a) return a:expand(3, 2) end, { leaf{1, 2} } },
  { "squeeze", function(a) return a:squeeze(2) end, { leaf{3, 1} } },
  { "unsqueeze", function(a) return a:unsqueeze(1) end, { leaf{3} } },
  { "contiguous", function(a) return a:t():contiguous() end, { leaf{2, 3} } },
  { "clone", function(a) return a:clone() * a end, { leaf{2, 3} } },
  { "cast", function(a) return a:float():double() end, { leaf{4} } },
  { "dropout", function(a) return dp.dropout(a, 0.3, true, dp.rng(11)) end, { leaf{20} } },
}

describe("dp.testing.gradcheck", function()
  describe("every differentiable op", function()
    for _, case in ipairs(cases) do
      local name, fn, inputs = case[1], case[2], case[3]
      it(name .. " matches finite differences", function()
        -- Through an f32 cast a step of 1e-6 is lost in rounding; a wide step is exact enough.
        local opts = name == "cast" and { eps = 1e-2, atol = 1e-4, rtol = 1e-4 } or nil
        local ok, report = gradcheck.check(fn, inputs, opts)
        assert(ok, report)
      end)
    end
  end)

  it("detects a wrong gradient", function()
    -- detach() cuts the graph, so half of the true gradient is missing.
    local x = leaf{3}
    local ok, report = gradcheck.check(function(a) return a * a:detach() end, { x })
    assert.is_false(ok)
    assert.truthy(report:find("autograd", 1, true))
  end)

  it("reports inputs no gradient reaches", function()
    local x, y = leaf{2}, leaf{2}
    local ok, report = gradcheck.check(function(a) return a * 2 end, { x, y })
    assert.is_false(ok)
    assert.truthy(report:find("input 2", 1, true))
  end)

  it("asks for f64", function()
    local x = dp.ones(2, { requires_grad = true })
    assert.error_matches(function() gradcheck.check(function(a) return a * 2 end, { x }) end,
      "run it in f64", nil, true)
  end)
end)
