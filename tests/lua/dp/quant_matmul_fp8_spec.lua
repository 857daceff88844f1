-- Specs for dp.matmul_fp8 (dp_matmul_fp8 in dp.h): operands built from values exactly
-- representable in e4m3 / e5m2, products checked against a float64 loop written here and rounded
-- to the output's precision by a round-to-nearest-even written here; default options, batch
-- broadcasting, transposed views, and the error messages.
local dp = require "dp"

local flat = require("testutil").values   -- a tensor's values, row-major

-- v rounded to nearest, ties to even, with `bits` significant bits (normal numbers only: enough
-- for bf16 (8) and f16 (11) at the magnitudes used here).
local function round_sig(v, bits)
  if v == 0 then return 0 end
  local m, e = math.frexp(v)
  local scaled = m * 2 ^ bits
  local f = math.floor(scaled)
  local d = scaled - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then f = f + 1 end
  return f * 2 ^ (e - bits)
end

-- Exact in e4m3 (3 mantissa bits) and in e5m2 (2 mantissa bits) respectively.
local E4 = { 0.5, -1.25, 3, 0.0625, -0.875, 1.75, 2.5, -6, 0.1875, 10, -0.3125 }
local E5 = { 0.75, -2, 1.25, 0.25, -3, 0.875, 5, -0.375 }

-- rows x cols nested table cycling through vals from position start.
local function fill(rows, cols, vals, start)
  local t, k = {}, start
  for i = 1, rows do
    t[i] = {}
    for j = 1, cols do
      t[i][j] = vals[(k - 1) % #vals + 1]
      k = k + 1
    end
  end
  return t
end

local function ref(A, B, s)
  local out = {}
  for i = 1, #A do
    for j = 1, #B[1] do
      local acc = 0
      for k = 1, #B do acc = acc + A[i][k] * B[k][j] end
      out[#out + 1] = s * acc
    end
  end
  return out
end

describe("dp.matmul_fp8", function()
  local A, B = fill(3, 5, E4, 1), fill(5, 4, E5, 3)
  local a, b = dp.tensor(A, "fp8_e4m3"), dp.tensor(B, "fp8_e5m2")

  it("builds its operands exactly", function()
    local fa = flat(a)
    for i = 1, 5 do assert.equal(A[1][i], fa[i]) end
    assert.equal(B[1][1], flat(b)[1])
  end)

  it("computes (scale_a a) @ (scale_b b) in f32 and rounds it once into bf16 and f16", function()
    local want = ref(A, B, 2 ^ -7 * 3)
    local opts = { scale_a = 2 ^ -7, scale_b = 3 }
    for _, case in ipairs { { "f32", nil }, { "bf16", 8 }, { "f16", 11 } } do
      opts.out_dtype = case[1]
      local y = dp.matmul_fp8(a, b, opts)
      assert.equal(case[1], y:dtype())
      assert.same({ 3, 4 }, y:size())
      local got = flat(y)
      for i, w in ipairs(want) do
        -- Every sum here is exact in f32, so the f32 result is exact and the others correctly rounded.
        local expect = case[2] and round_sig(w, case[2]) or w
        assert.equal(expect, got[i], ("%s element %d"):format(case[1], i))
      end
    end
  end)

  it("defaults to scales 1 and a bf16 result", function()
    local y = dp.matmul_fp8(b:t(), a:t())
    assert.equal("bf16", y:dtype())
    local At, Bt = {}, {}
    for i = 1, 4 do At[i] = {} for k = 1, 5 do At[i][k] = B[k][i] end end
    for k = 1, 5 do Bt[k] = {} for j = 1, 3 do Bt[k][j] = A[j][k] end end
    local got = flat(y)
    for i, w in ipairs(ref(At, Bt, 1)) do assert.equal(round_sig(w, 8), got[i]) end
  end)

  it("broadcasts a 2-D operand over the other's batch and reads transposed views", function()
    local A3 = { fill(3, 5, E5, 2), fill(3, 5, E5, 7) }
    local W = fill(4, 5, E4, 5)   -- stored (N, K), used as its transpose (K, N)
    local Wt = {}
    for k = 1, 5 do Wt[k] = {} for j = 1, 4 do Wt[k][j] = W[j][k] end end
    local y = dp.matmul_fp8(dp.tensor(A3, "fp8_e5m2"), dp.tensor(W, "fp8_e4m3"):t(),
                            { scale_a = 0.5, out_dtype = "f32" })
    assert.same({ 2, 3, 4 }, y:size())
    local got, n = flat(y), 0
    for p = 1, 2 do
      for _, w in ipairs(ref(A3[p], Wt, 0.5)) do
        n = n + 1
        assert.equal(w, got[n])
      end
    end
  end)

  it("names the function, the argument and what was expected on bad input", function()
    local e5 = dp.tensor(fill(3, 5, E5, 1), "fp8_e5m2")
    assert.error_matches(function() dp.matmul_fp8(e5, b) end, "both fp8_e5m2", nil, true)
    assert.error_matches(function() dp.matmul_fp8(a, b, "f32") end,
      "matmul_fp8: opts must be a table {scale_a=, scale_b=, out_dtype=}, got string", nil, true)
    assert.error_matches(function() dp.matmul_fp8(a, b, { scale = 2 }) end,
      "matmul_fp8: unknown option scale (expected scale_a, scale_b or out_dtype)", nil, true)
    assert.error_matches(function() dp.matmul_fp8(a, b, { scale_a = "2" }) end,
      "matmul_fp8: scale_a must be a number (default 1), got string", nil, true)
    assert.error_matches(function() dp.matmul_fp8(a, b, { scale_b = 0 }) end,
      "dp_matmul_fp8: scale_b must be finite and > 0", nil, true)
    assert.error_matches(function() dp.matmul_fp8(a, b, { out_dtype = "i32" }) end,
      "dp_matmul_fp8: out_dtype must be bf16, f16 or f32, got i32", nil, true)
    assert.error_matches(function() dp.matmul_fp8(dp.tensor(A), b) end,
      "dp_matmul_fp8: a must be fp8_e4m3 or fp8_e5m2", nil, true)
    assert.error_matches(function() dp.matmul_fp8(a, a) end, "inner dims differ", nil, true)
    assert.error_matches(function() dp.matmul_fp8(a, 3) end, "matmul_fp8: argument 2 is a number, expected a tensor", nil, true)
  end)

  it("is not differentiable: refuses inputs that require grad unless grad mode is off", function()
    local x = dp.tensor(A, "fp8_e4m3"):requires_grad_()
    assert.error_matches(function() dp.matmul_fp8(x, b) end,
      "dp_matmul_fp8: a requires grad, but matmul_fp8 is not differentiable", nil, true)
    local y = dp.no_grad(function() return dp.matmul_fp8(x, b, { out_dtype = "f32" }) end)
    assert.is_false(y:requires_grad())
    assert.equal(ref(A, B, 1)[1], flat(y)[1])
  end)

  it("is registered in dp", function()
    assert.equal(require("dp.quant").matmul_fp8, dp.matmul_fp8)
  end)
end)
