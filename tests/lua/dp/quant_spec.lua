-- Specs for dp.quant (dp.fake_quant, dp.grad_quant, dp.fp8_scale_for): values against a reference
-- written here from the fp8 formats' definitions (all values listed, nearest with ties to the even
-- code, saturation), per-example scales, just-in-time scales, the backward of grad_quant.
local dp = require "dp"

-- The non-negative finite values of an fp8 format, in code order: e4m3 has 3 mantissa bits, bias
-- 7 and no Inf (the top code is NaN, so the last exponent keeps 7 values); e5m2 has 2, bias 15.
local function values_of(name)
  local man, bias, top_e, top_m = 3, 7, 15, 6
  if name == "fp8_e5m2" then man, bias, top_e, top_m = 2, 15, 30, 3 end
  local out = {}
  for e = 0, top_e do
    for m = 0, 2 ^ man - 1 do
      if e == top_e and m > top_m then break end
      if e == 0 then out[#out + 1] = m / 2 ^ man * 2 ^ (1 - bias)
      else out[#out + 1] = (1 + m / 2 ^ man) * 2 ^ (e - bias) end
    end
  end
  return out
end

local function round_in(vals, v)
  if v ~= v then return v end
  local a, sign = math.abs(v), v < 0 and -1 or 1
  if a >= vals[#vals] then return sign * vals[#vals] end
  local k = 1
  while vals[k + 1] <= a do k = k + 1 end
  local lo, hi = vals[k], vals[k + 1]
  local r
  if a - lo < hi - a then r = lo elseif a - lo > hi - a then r = hi
  else r = (k - 1) % 2 == 0 and lo or hi end   -- code k - 1 even: keep lo
  return sign * r
end

local flat = require("testutil").values   -- a tensor's values, row-major

describe("dp.fake_quant", function()
  local E4, E5 = values_of("fp8_e4m3"), values_of("fp8_e5m2")

  it("lists the formats as documented", function()
    assert.equal(448, E4[#E4])
    assert.equal(57344, E5[#E5])
    assert.equal(2 ^ -9, E4[2])
  end)

  it("rounds x * s to nearest even, saturates, keeps NaN, divides s back", function()
    local xs = { 1.0625, 1.1875, 500, -1000, 0.001, -0.0009, 3.3, 0 / 0, 1 / 0, 1e-5 }
    for _, case in ipairs { { "fp8_e4m3", E4, 1 }, { "fp8_e4m3", E4, 4 }, { "fp8_e5m2", E5, 0.5 } } do
      local name, vals, s = case[1], case[2], case[3]
      local x = dp.tensor(xs, "f64")
      local y = flat(dp.fake_quant(x, name, dp.tensor({ s }), nil, false))
      for i, v in ipairs(xs) do
        local want = round_in(vals, v * s) / s
        if want ~= want then assert.is_true(y[i] ~= y[i], name .. " NaN at " .. i)
        else assert.equal(want, y[i], ("%s s=%g x=%g"):format(name, s, v)) end
      end
    end
    assert.equal(1.0, flat(dp.fake_quant(dp.tensor({ 1.0625 }), "fp8_e4m3", dp.tensor({ 1 })))[1])
    assert.equal(1.25, flat(dp.fake_quant(dp.tensor({ 1.1875 }), "fp8_e4m3", dp.tensor({ 1 })))[1])
  end)

  it("keeps x's dtype and takes one scale per example", function()
    local x = dp.tensor({ { 3.3, -7.1, 0.2 }, { 0.013, 0.02, -0.031 } }, "bf16")
    local s = dp.tensor({ 1, 64 })
    local y = dp.fake_quant(x, "fp8_e4m3", s)
    assert.equal("bf16", y:dtype())
    local xv, yv = flat(x), flat(y)
    for i = 1, 6 do
      local sc = i <= 3 and 1 or 64
      assert.equal(round_in(E4, xv[i] * sc) / sc, yv[i])
    end
  end)

  it("fills amax_out and, just in time, the largest power-of-two scale that fits", function()
    local x = dp.tensor({ { 3.0, 0 / 0, -5.5 }, { 0, 0, 0 }, { 1e-3, -2e-3, 1e-4 } })
    local s, amax = dp.zeros({ 3 }), dp.zeros({ 3 })
    dp.fake_quant(x, "fp8_e5m2", s, amax, true)
    local sv, av = flat(s), flat(amax)
    assert.equal(5.5, av[1])
    assert.equal(0, av[2])
    assert.near(2e-3, av[3], 1e-9)
    assert.equal(1, sv[2])
    for _, k in ipairs { 1, 3 } do
      local want = 1
      while av[k] * want * 2 <= 57344 do want = want * 2 end
      while av[k] * want > 57344 do want = want / 2 end
      assert.equal(want, sv[k])
    end
    assert.equal(256, dp.fp8_scale_for(1, "fp8_e4m3"))
    assert.equal(16384, dp.fp8_scale_for(1, "fp8_e5m2", 1))
    assert.equal(1, dp.fp8_scale_for(0 / 0, "fp8_e4m3"))
  end)

  it("passes the gradient straight through", function()
    local x = dp.tensor({ 0.3, -1.7, 2.2 }, "f64"):requires_grad_()
    local y = dp.fake_quant(x, "fp8_e4m3", dp.tensor({ 1 }))
    y:mul(dp.tensor({ 1, 2, 3 }, "f64")):sum():backward()
    assert.same({ 1, 2, 3 }, flat(x.grad))
  end)

  it("names the function and the argument on bad input", function()
    local x = dp.tensor({ 1, 2 })
    assert.error_matches(function() dp.fake_quant(x, "bf16", dp.tensor({ 1 })) end,
      "fake_quant: dtype must be fp8_e4m3 or fp8_e5m2, got bf16", nil, true)
    assert.error_matches(function() dp.fake_quant(x, "fp8_e4m3", dp.tensor({ 1, 1, 1 })) end,
      "fake_quant: scale must be f32 of shape (1) or (x.shape[0])", nil, true)
    assert.error_matches(function() dp.fake_quant(x, "fp8_e4m3", dp.tensor({ 1 }), nil, 1) end,
      "fake_quant: just_in_time must be a boolean", nil, true)
    assert.error_matches(function() dp.fake_quant(x, "fp8_e4m3", dp.tensor({ 0 })) end,
      "fake_quant: scale[0] must be finite and > 0, got 0", nil, true)
    assert.error_matches(function() dp.fp8_scale_for(1, "i32") end, "fp8_scale_for: dtype", nil, true)
    assert.error_matches(function() dp.fp8_scale_for(1, "fp8_e4m3", 0.5) end,
      "fp8_scale_for: margin must be an integer", nil, true)
  end)
end)

describe("dp.grad_quant", function()
  it("is the identity forward and quantises the gradient with the scale read at backward", function()
    local E5 = values_of("fp8_e5m2")
    local x = dp.tensor({ { 0.5, -0.25 }, { 2, 4 } }):requires_grad_()
    local s, amax = dp.tensor({ 1, 1 }), dp.zeros({ 2 })
    local y = dp.grad_quant(x, "fp8_e5m2", s, amax)
    assert.same(flat(x), flat(y))
    s:copy_(dp.tensor({ 1024, 0.5 }))   -- a delayed scale, updated after the forward
    local r = { 0.3, -0.7, 3.3, 1e-3 }
    y:mul(dp.tensor({ { r[1], r[2] }, { r[3], r[4] } })):sum():backward()
    local g, av = flat(x.grad), flat(amax)
    for i = 1, 4 do
      local rf = flat(dp.tensor({ r[i] }))[1]   -- r as f32
      local sc = i <= 2 and 1024 or 0.5
      assert.equal(round_in(E5, rf * sc) / sc, g[i])
    end
    assert.near(0.7, av[1], 1e-6)
    assert.near(3.3, av[2], 1e-6)
  end)

  it("is registered in dp", function()
    assert.equal(require("dp.quant").grad_quant, dp.grad_quant)
    assert.equal(require("dp.quant").fp8_scale_for, dp.fp8_scale_for)
  end)
end)
