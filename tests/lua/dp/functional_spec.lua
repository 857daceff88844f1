-- Specs for dp.functional: every op of dp.h through Lua, checked against Lua arithmetic, and its
-- errors naming the op, the shapes and the dtypes.
local dp = require "dp"
local tu = require "testutil"

local function map(t, f)
  local out = {}
  for i, v in ipairs(t) do out[i] = type(v) == "table" and map(v, f) or f(v) end
  return out
end

describe("dp.functional", function()
  local xs = {{-1.5, -0.25, 0}, {0.5, 1, 2}}
  local x = dp.tensor(xs, "f64")

  describe("unary ops", function()
    local function erf(v)   -- Abramowitz-Stegun 7.1.26 is too coarse; integrate instead
      local n, s = 2000, 0
      for i = 0, n - 1 do
        local t = (i + 0.5) / n * v
        s = s + math.exp(-t * t)
      end
      return 2 / math.sqrt(math.pi) * s * v / n
    end
    local cases = {
      neg = function(v) return -v end,
      exp = math.exp,
      abs = math.abs,
      tanh = function(v) return (math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v)) end,
      sigmoid = function(v) return 1 / (1 + math.exp(-v)) end,
      relu = function(v) return math.max(v, 0) end,
      gelu = function(v) return 0.5 * v * (1 + erf(v / math.sqrt(2))) end,
    }
    for name, ref in pairs(cases) do
      it(name .. " matches Lua", function()
        tu.assert_close(x[name](x), map(xs, ref), 1e-6)
        tu.assert_close(dp[name](x), map(xs, ref), 1e-6)
      end)
    end

    it("log, sqrt and pow match Lua on positive inputs", function()
      local p = dp.tensor({0.5, 1, 4}, "f64")
      tu.assert_close(p:log(), {math.log(0.5), 0, math.log(4)}, 1e-12)
      tu.assert_close(p:sqrt(), {math.sqrt(0.5), 1, 2}, 1e-12)
      tu.assert_close(p:pow(1.5), {0.5 ^ 1.5, 1, 8}, 1e-12)
      tu.assert_close(p:affine(2, 1), {2, 3, 9}, 1e-12)
    end)

    it("reject integer tensors naming the op and the dtype", function()
      assert.error_matches(function() dp.zeros({2, 3}, "i32"):exp() end,
        "exp: expected a float tensor, got [2,3] i32 cpu", nil, true)
      assert.error_matches(function() dp.zeros(2):pow(dp.zeros(2)) end,
        "pow: the exponent must be a number", nil, true)
    end)
  end)

  describe("binary ops", function()
    it("maximum takes tensors and numbers", function()
      tu.assert_close(dp.maximum(x, 0), map(xs, function(v) return math.max(v, 0) end))
      tu.assert_close(x:maximum(dp.tensor({1, 1, 1}, "f64")),
                      map(xs, function(v) return math.max(v, 1) end))
    end)
  end)

  describe("matmul and linear", function()
    local a = dp.tensor({{1, 2}, {3, 4}, {5, 6}}, "f64")
    local b = dp.tensor({{1, 0, -1}, {2, 1, 0}}, "f64")

    it("multiply matrices", function()
      tu.assert_close(a:matmul(b), {{5, 2, -1}, {11, 4, -3}, {17, 6, -5}})
      tu.assert_close(dp.matmul(a, dp.tensor({1, 1}, "f64")), {3, 7, 11})
    end)

    it("broadcast batch dims", function()
      local batch = a:unsqueeze(1):expand(4, 3, 2)
      local out = batch:matmul(b)
      assert.same({4, 3, 3}, out:size())
      tu.assert_close(out[4], {{5, 2, -1}, {11, 4, -3}, {17, 6, -5}})
    end)

    it("linear computes x w^T + b", function()
      local w = dp.tensor({{1, 1}, {1, -1}}, "f64")
      local bias = dp.tensor({10, 20}, "f64")
      tu.assert_close(dp.linear(a, w, bias), {{13, 19}, {17, 19}, {21, 19}})
      tu.assert_close(a:linear(w), {{3, -1}, {7, -1}, {11, -1}})
    end)

    it("name both shapes on mismatch", function()
      assert.error_matches(function() a:matmul(a) end,
        "matmul: inner dims differ (a is [3,2] f64 cpu, b is [3,2] f64 cpu)", nil, true)
      assert.error_matches(function() dp.linear(a, dp.zeros({2, 3}, "f64")) end,
        "linear: expected input width 3, got 2 (x is [3,2] f64 cpu, w is [2,3] f64 cpu)", nil, true)
      assert.error_matches(function() a:matmul(dp.zeros(2, 2)) end, "matmul: ", nil, true)
    end)
  end)

  describe("reductions", function()
    it("sum and mean over all, one or several dims", function()
      tu.assert_close(x:sum(), {1.75})
      tu.assert_close(x:sum(1), {-1, 0.75, 2})
      tu.assert_close(x:sum(2), {-1.75, 3.5})
      tu.assert_close(x:sum(-1, true), {{-1.75}, {3.5}})
      tu.assert_close(x:sum({1, 2}), {1.75})
      tu.assert_close(x:mean(2), {-1.75 / 3, 3.5 / 3})
      assert.same({1, 3}, x:mean(1, true):size())
    end)

    it("max and argmax (argmax gives 0-based ids)", function()
      tu.assert_close(x:max(), {2})
      tu.assert_close(x:max(2), {0, 2})
      tu.assert_close(x:max(1, true), {{0.5, 1, 2}})
      assert.same({2, 2}, x:argmax(2):totable())
      assert.equal("i64", x:argmax(2):dtype())
      assert.equal(5, x:argmax():item())
    end)

    it("name the dim and shape when the dim is out of range", function()
      assert.error_matches(function() x:sum(3) end,
        "sum: dim 3 out of range for [2,3] f64 cpu (dims are 1..2", nil, true)
      assert.error_matches(function() x:max(-3) end, "max: dim -3 out of range", nil, true)
      assert.error_matches(function() x:mean("a") end,
        "mean: dims must be a number or a table of numbers, got string", nil, true)
    end)
  end)

  describe("softmax and layer_norm", function()
    it("softmax rows sum to one; log_softmax is its log", function()
      local s = x:softmax(2)
      tu.assert_close(s:sum(2), {1, 1}, 1e-12)
      tu.assert_close(x:log_softmax():exp(), s, 1e-12)
      local e = map(xs[1], math.exp)
      local z = e[1] + e[2] + e[3]
      tu.assert_close(s[1], {e[1] / z, e[2] / z, e[3] / z}, 1e-12)
    end)

    it("layer_norm normalises the last dim", function()
      local y = x:layer_norm(nil, nil, 0)
      tu.assert_close(y:mean(2), {0, 0}, 1e-9)
      tu.assert_close((y * y):mean(2), {1, 1}, 1e-9)
      local w = dp.tensor({1, 2, 3}, "f64")
      local b = dp.tensor({0, 0, 1}, "f64")
      tu.assert_close(dp.layer_norm(x, w, b, 0), y * w + b, 1e-12)
      assert.error_matches(function() x:layer_norm(dp.zeros({4}, "f64")) end,
        "layer_norm: weight has shape [4], expected [3]", nil, true)
    end)
  end)

  describe("embedding, index_add, cross_entropy, masked_fill, dropout", function()
    local weight = dp.tensor({{1, 2}, {3, 4}, {5, 6}}, "f64")

    it("embedding picks rows by 0-based id", function()
      tu.assert_close(dp.embedding(weight, dp.tensor({2, 0, 2}, "i64")), {{5, 6}, {1, 2}, {5, 6}})
      assert.same({2, 2, 2}, weight:embedding(dp.tensor({{0, 1}, {1, 2}}, "i32")):size())
      assert.error_matches(function() dp.embedding(weight, dp.tensor({3}, "i64")) end,
        "embedding: index 3 at position [0] is out of range for 3 rows", nil, true)
    end)

    it("index_add adds rows", function()
      local out = dp.index_add(dp.zeros({3, 2}, "f64"), dp.tensor({0, 2, 0}, "i64"), weight)
      tu.assert_close(out, {{6, 8}, {0, 0}, {3, 4}})
      assert.error_matches(function()
        dp.index_add(dp.zeros({3, 2}, "f64"), dp.tensor({5}, "i64"), dp.zeros({1, 2}, "f64"))
      end, "index_add: index 5", nil, true)
    end)

    it("cross_entropy reduces by mean, sum or none and skips ignore_index", function()
      local logits = dp.tensor({{1, 2, 3}, {1, 1, 1}, {0, 0, 5}}, "f64")
      local labels = dp.tensor({2, 0, -100}, "i64")
      local function nll(row, k)
        local z = 0
        for _, v in ipairs(row) do z = z + math.exp(v) end
        return math.log(z) - row[k]
      end
      local l1, l2 = nll({1, 2, 3}, 3), nll({1, 1, 1}, 1)
      tu.assert_close(dp.cross_entropy(logits, labels), {(l1 + l2) / 2}, 1e-12)
      tu.assert_close(dp.cross_entropy(logits, labels, { reduction = "sum" }), {l1 + l2}, 1e-12)
      tu.assert_close(dp.cross_entropy(logits, labels, { reduction = "none" }), {l1, l2, 0}, 1e-12)
      tu.assert_close(dp.cross_entropy(logits, dp.tensor({2, 0, 2}, "i64"), { ignore_index = 2 }),
                      {l2}, 1e-12)
      assert.error_matches(function() dp.cross_entropy(logits, labels, { reduction = "avg" }) end,
        'cross_entropy: reduction must be "mean", "sum" or "none", got avg', nil, true)
      assert.error_matches(function() dp.cross_entropy(logits, dp.tensor({0, 3, 1}, "i64")) end,
        "cross_entropy: label 3 in row 1 is out of range for 3 classes", nil, true)
    end)

    it("masked_fill writes where the mask is set", function()
      local mask = dp.tensor({{1, 0, 0}, {0, 0, 1}}, "u8")
      tu.assert_close(x:masked_fill(mask, 9), {{9, -0.25, 0}, {0.5, 1, 9}})
      tu.assert_close(dp.masked_fill(x, dp.tensor({1, 0, 0}, "u8"), -1), {{-1, -0.25, 0}, {-1, 1, 2}})
      assert.error_matches(function() dp.masked_fill(x, dp.zeros(2, 3), 1) end,
        "masked_fill: mask must be u8, got [2,3] f32 cpu", nil, true)
    end)

    it("dropout zeroes about p and scales the rest, reproducibly", function()
      local ones = dp.ones({10000}, "f64")
      local y = dp.dropout(ones, 0.25, true, dp.rng(3))
      local kept = (y:sum():item()) * 0.75
      assert.is_true(math.abs(kept / 10000 - 0.75) < 0.03)
      assert.same(y:totable(), dp.dropout(ones, 0.25, true, dp.rng(3)):totable())
      assert.equal(ones, dp.dropout(ones, 0.25, false))
      assert.equal(ones, ones:dropout(0))
    end)
  end)

  describe("in-place helpers", function()
    it("axpy_ and scale_ update in place", function()
      local t = dp.ones({3}, "f64")
      t:axpy_(2, dp.tensor({1, 2, 3}, "f64"))
      assert.same({3, 5, 7}, t:totable())
      t:scale_(0.5)
      assert.same({1.5, 2.5, 3.5}, t:totable())
    end)
  end)
end)
