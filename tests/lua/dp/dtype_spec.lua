-- Specs for dp.dtype: names, aliases and devices.
local dtype = require "dp.dtype"
local dp = require "dp"

describe("dp.dtype", function()
  it("lists the dtypes of dp.h in enum order", function()
    assert.same({ "f32", "f64", "bf16", "f16", "fp8_e4m3", "fp8_e5m2", "i32", "i64", "u8" }, dp.dtypes)
  end)

  it("parses names, aliases and enum values", function()
    assert.equal(0, dtype.parse("f32"))
    assert.equal(0, dtype.parse("float32"))
    assert.equal(8, dtype.parse("bool"))
    assert.equal(2, dtype.parse(2))
    assert.equal("bf16", dtype.name(2))
    assert.is_true(dtype.is_float(dtype.parse("bf16")))
    assert.is_false(dtype.is_float(dtype.parse("i64")))
    assert.equal(2, dtype.size(dtype.parse("f16")))
  end)

  it("names what it accepts on unknown input", function()
    assert.error_matches(function() dtype.parse("f128", "cast") end,
      "cast: unknown dtype f128 (expected one of f32, f64, bf16", nil, true)
    assert.error_matches(function() dtype.parse(42) end, "unknown dtype 42", nil, true)
    assert.error_matches(function() dtype.parse_device("gpu", "zeros") end,
      "zeros: unknown device gpu (expected cpu or cuda)", nil, true)
  end)

  it("has a settable default", function()
    dp.set_default_dtype("f64")
    assert.equal("f64", dp.zeros(1):dtype())
    assert.equal("f64", dp.get_default_dtype())
    dp.set_default_dtype("f32")
    assert.equal("f32", dp.zeros(1):dtype())
  end)
end)
