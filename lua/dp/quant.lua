-- dp.quant: fp8 compute: emulated (dp_fake_quant, dp_grad_quant, dp_fp8_scale_for in dp.h) as
-- dp.fake_quant, dp.grad_quant and dp.fp8_scale_for, and the fp8 GEMM with scale factors
-- (dp_matmul_fp8) as dp.matmul_fp8. scale (and amax_out) are f32 tensors of shape {1} (one scale
-- per tensor) or {x:size(1)} (one per example); dtype "fp8_e4m3" or "fp8_e5m2".
local dpffi = require "dp.ffi"
local dtype = require "dp.dtype"
local args = require "dp.tensor_args"

local C, wrap, raise = dpffi.C, dpffi.wrap, dpffi.raise
local ptr, optional = args.ptr, args.optional

local M = {}

local function flag(v, fn)
  if v == nil then return 0 end
  if type(v) ~= "boolean" then
    raise(("%s: just_in_time must be a boolean (default false), got %s"):format(fn, tostring(v)), 2)
  end
  return v and 1 or 0
end

-- round(x * s) / s in x's dtype, rounding to nearest even in dtype and saturating at its largest
-- finite value; gradient straight through. amax_out (optional) receives max |x| per scale;
-- just_in_time = true first sets scale from that amax (dp.fp8_scale_for(amax, dtype, 0)).
function M.fake_quant(x, to, scale, amax_out, just_in_time)
  local fn = "fake_quant"
  return wrap(C.dp_fake_quant(ptr(x, fn, 1), dtype.parse(to, fn), ptr(scale, fn, 3),
                              optional(amax_out, fn, 4), flag(just_in_time, fn)))
end

-- x itself forward; in backward the incoming gradient goes through fake_quant with scale and
-- amax_out as they are then (so a delayed scale may be updated after the forward).
function M.grad_quant(x, to, scale, amax_out, just_in_time)
  local fn = "grad_quant"
  return wrap(C.dp_grad_quant(ptr(x, fn, 1), dtype.parse(to, fn), ptr(scale, fn, 3),
                              optional(amax_out, fn, 4), flag(just_in_time, fn)))
end

-- The largest power of two s with amax * s <= max_finite(dtype) * 2^-margin (1 for amax 0, NaN
-- or Inf).
function M.fp8_scale_for(amax, to, margin)
  local fn = "fp8_scale_for"
  if type(amax) ~= "number" then raise(("%s: amax must be a number, got %s"):format(fn, tostring(amax))) end
  margin = margin or 0
  if type(margin) ~= "number" or margin % 1 ~= 0 or math.abs(margin) > 1000 then
    raise(("%s: margin must be an integer (default 0), got %s"):format(fn, tostring(margin)))
  end
  local s = C.dp_fp8_scale_for(amax, dtype.parse(to, fn), margin)
  if s ~= s then raise(require("ffi").string(C.dp_last_error())) end
  return s
end

local matmul_fp8_opts = { scale_a = true, scale_b = true, out_dtype = true }

local function scale_arg(v, name, fn)
  if v == nil then return 1 end
  if type(v) ~= "number" then
    raise(("%s: %s must be a number (default 1), got %s"):format(fn, name, type(v)), 3)
  end
  return v
end

-- (scale_a * a) @ (scale_b * b) for fp8 a (..., M, K) and b (..., K, N) (e4m3 or e5m2, not both
-- e5m2; batch dims broadcast), f32 accumulation, a new tensor of out_dtype ("bf16" by default,
-- "f16" or "f32"). opts: {scale_a = 1, scale_b = 1, out_dtype = "bf16"}, scales finite and > 0.
-- Not differentiable: the inputs must not require grad (or run it under dp.no_grad).
function M.matmul_fp8(a, b, opts)
  local fn = "matmul_fp8"
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    raise(("%s: opts must be a table {scale_a=, scale_b=, out_dtype=}, got %s"):format(fn, type(opts)), 2)
  end
  for k in pairs(opts) do
    if not matmul_fp8_opts[k] then
      raise(("%s: unknown option %s (expected scale_a, scale_b or out_dtype)"):format(fn, tostring(k)), 2)
    end
  end
  local sa, sb = scale_arg(opts.scale_a, "scale_a", fn), scale_arg(opts.scale_b, "scale_b", fn)
  return wrap(C.dp_matmul_fp8(ptr(a, fn, 1), ptr(b, fn, 2), sa, sb,
                              dtype.parse(opts.out_dtype or "bf16", fn)))
end

return M
