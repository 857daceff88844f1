-- Specs for dp.precision.fp8: an fp8 Linear against an f64 reference that quantises by hand with
-- the same scales (per example, per tensor from the amax history), the e5m2 gradient, and the
-- per-example independence that DP-SGD needs.
local dp = require "dp"
local nn = require "dp.nn"
local precision = require "dp.precision"
local engine_mod = require "dp.privacy.engine"

-- Round to nearest even with `bits` stored mantissa bits, normals down to 2^emin, saturating at max.
local function quantiser(bits, emin, max)
  return function(v)
    if v ~= v then return v end
    local a = math.abs(v)
    if a >= max then return v < 0 and -max or max end
    if a == 0 then return 0 end
    local _, e = math.frexp(a)          -- a = m * 2^e, 0.5 <= m < 1: exponent e - 1
    local step = 2 ^ (math.max(e - 1, emin) - bits)
    local s = a / step
    local r = math.floor(s + 0.5)
    if r - s == 0.5 and r % 2 == 1 then r = r - 1 end
    return (v < 0 and -1 or 1) * r * step
  end
end
local e4m3, e5m2 = quantiser(3, -6, 448), quantiser(2, -14, 57344)
local bf16 = quantiser(7, -126, 3.4e38)

-- The largest power of two s with amax * s <= max.
local function scale_for(amax, max)
  if amax == 0 then return 1 end
  local s = 2 ^ math.floor(math.log(max / amax) / math.log(2))
  while amax * s > max do s = s / 2 end
  while amax * s * 2 <= max do s = s * 2 end
  return s
end

local function amax(rows)
  local m = 0
  for _, r in ipairs(rows) do for _, v in ipairs(r) do m = math.max(m, math.abs(v)) end end
  return m
end

local function quantise_rows(rows, q, max, per_example, s_given)
  local out, scales = {}, {}
  local s_all = s_given or scale_for(amax(rows), max)
  for i, r in ipairs(rows) do
    local s = per_example and scale_for(amax({ r }), max) or s_all
    scales[i] = s
    out[i] = {}
    for j, v in ipairs(r) do out[i][j] = q(v * s) / s end
  end
  return out, scales
end

-- y = xq wq^T + b (b cast to bf16), all in f64.
local function reference(lin, x_rows, per_example, x_scale)
  local xb = {}
  for i, r in ipairs(x_rows) do xb[i] = {} for j, v in ipairs(r) do xb[i][j] = bf16(v) end end
  local xq = quantise_rows(xb, e4m3, 448, per_example, x_scale)
  local wq = quantise_rows(lin.weight:cast("f64"):totable(), e4m3, 448, false)
  local b = lin.bias:cast("f64"):totable()
  local y = {}
  for i, r in ipairs(xq) do
    y[i] = {}
    for k, wr in ipairs(wq) do
      local s = bf16(b[k])
      for j, v in ipairs(r) do s = s + v * wr[j] end
      y[i][k] = s
    end
  end
  return y, wq
end

-- y within one bf16 rounding of the output and one of the bias add (products of fp8 values are
-- exact in the f32 accumulator).
local function assert_close(want, got)
  for i, r in ipairs(want) do
    for k, v in ipairs(r) do
      assert.is_true(math.abs(got[i][k] - v) <= 2 ^ -7 * math.abs(v) + 1e-30,
                     ("y[%d][%d] = %.9g, reference %.9g"):format(i, k, got[i][k], v))
    end
  end
end

local function layer(scaling)
  local lin = nn.Linear(6, 3, { rng = dp.rng(11), std = 0.8 })
  dp.no_grad(function() lin.bias:copy(dp.randn({ 3 }, { seed = 12 })) end)
  return precision.apply(lin, precision.policy({ preset = "fp8", fp8 = { scaling = scaling } }))
end

local x_rows = { { 0.31, -2.5, 7.25, 0.001, -0.4, 1.1 }, { 30.5, -0.02, 0.75, 3, -120, 0.5 } }

describe("dp.precision.fp8", function()
  it("matches a hand-quantised f64 reference with one scale per example", function()
    local lin = layer("per_example")
    local y = lin(dp.tensor(x_rows))
    assert.are.equal("bf16", y:dtype())
    assert_close(reference(lin, x_rows, true), y:cast("f64"):totable())
  end)

  it("matches it with per-tensor scales from the amax history (delayed scaling)", function()
    local lin = layer("delayed")
    local y1 = lin(dp.tensor(x_rows))        -- empty history: the tensor's own amax
    assert_close(reference(lin, x_rows, false), y1:cast("f64"):totable())
    local small = { { 0.5, 0.25, -1, 0.1, 0.2, 0.3 }, { -0.7, 0.6, 0.01, 0, 1.5, -0.5 } }
    local y2 = lin(dp.tensor(small))         -- scale from the history (amax 120 of the first call)
    local s = scale_for(120, 448)
    assert_close(reference(lin, small, false, s), y2:cast("f64"):totable())
    -- the history's scale (2) differs from this tensor's own (256): the reference uses the former
    assert.are_not.equal(s, scale_for(1.5, 448))
  end)

  it("quantises the output gradient to e5m2 per example", function()
    local lin = layer("per_example")
    local x = dp.tensor(x_rows):requires_grad(true)
    local g_rows = { { 1e-3, -0.37, 2.2 }, { 0.5, 6.1, -1e-2 } }
    lin(x):backward(dp.tensor(g_rows):cast("bf16"))
    local gq = quantise_rows(g_rows, e5m2, 57344, true)
    local _, wq = reference(lin, x_rows, true)
    local dx = x:get_grad():cast("f64"):totable()
    for i = 1, 2 do
      for j = 1, 6 do
        local s, mag = 0, 0
        for k = 1, 3 do s, mag = s + gq[i][k] * wq[k][j], mag + math.abs(gq[i][k] * wq[k][j]) end
        assert.is_true(math.abs(dx[i][j] - s) <= 2 ^ -7 * mag + 1e-30, ("dx[%d][%d]"):format(i, j))
      end
    end
  end)

  it("keeps example 1's output bit for bit when example 2 changes, under a DP engine", function()
    local lin = layer("auto")
    local other = { x_rows[1], { 1e5, -1, 2, 5, 0.1, 9 } }   -- pushes example 1 into subnormals
    local engine = engine_mod.new({ { name = "weight", tensor = lin.weight }, { name = "bias", tensor = lin.bias } })
    engine:begin(2)
    local a, b = engine:active(function()
      return lin(dp.tensor(x_rows)):totable(), lin(dp.tensor(other)):totable()
    end)
    assert.are.same(a[1], b[1])
    -- Without an engine "auto" is per-tensor scaling, which couples the examples (the test can fail).
    local plain = layer("auto")
    local c, d = plain(dp.tensor(x_rows)):totable(), layer("auto")(dp.tensor(other)):totable()
    assert.are_not.same(c[1], d[1])
  end)

  it("refreshes the quantised weight copy only after the master changes", function()
    local lin = layer("per_example")
    lin(dp.tensor(x_rows)); lin(dp.tensor(x_rows))
    assert.are.equal(1, precision.copy_stats(lin).weight.refreshes)
    assert.are.equal("fp8", precision.copy_stats(lin).weight.kind)
    dp.no_grad(function() lin.weight:copy(lin.weight * 2) end)
    local y = lin(dp.tensor(x_rows))
    assert.are.equal(2, precision.copy_stats(lin).weight.refreshes)
    assert_close(reference(lin, x_rows, true), y:cast("f64"):totable())
  end)
end)
