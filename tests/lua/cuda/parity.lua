-- tests/lua/cuda/parity.lua: what the CUDA parity specs share: the skip (a visible pending
-- message when no CUDA device is usable), CPU -> GPU copies of inputs, and comparisons of a GPU
-- result with the CPU reference as the relative error ||gpu - cpu|| / ||cpu|| (in double).
local dp = require "dp"
local device = require "dp.device"
local assert = require "luassert"

local M = {}

-- DP_PARITY_SELFTEST=1 runs the specs with a second CPU copy standing in for the GPU: it checks
-- the specs themselves (inputs, comparisons, tolerances) on a machine without one.
M.selftest = os.getenv("DP_PARITY_SELFTEST") == "1"
M.target = M.selftest and "cpu" or "cuda"
M.available = M.selftest or dp.cuda_available()

-- describe(name, body) tagged #cuda when a GPU is usable, else one pending entry saying why.
-- (busted's describe and pending live in the calling spec's environment.)
function M.describe(name, body)
  local env = getfenv(2)
  if M.available then
    env.describe(name .. " #cuda", body)
  else
    env.describe(name .. " #cuda", function()
      env.pending("no CUDA device: " .. device.unavailable_reason())
    end)
  end
end

-- Tolerances on the relative error, by dtype of the compared results. f32 kernels accumulate in
-- f32 (or f64) in another order than the CPU's; bf16/f16/fp8 results may differ by one rounding
-- of the stored value (2^-8, 2^-11, 2^-3 relative) in a few elements.
M.tol = { f64 = 1e-12, f32 = 1e-5, bf16 = 1e-2, f16 = 2e-3, fp8_e4m3 = 7e-2, fp8_e5m2 = 1.3e-1,
          i32 = 0, i64 = 0, u8 = 0 }

-- x on the GPU (a copy that keeps requires_grad, outside the graph).
function M.gpu(x)
  local g = M.selftest and x:clone():detach() or x:cuda()
  if x:requires_grad() then g:requires_grad(true) end
  return g
end

local function flat(t)
  local data = require "dp.tensor_data"
  local buf, n = data.to_f64(t:cpu())
  local out = {}
  for i = 1, n do out[i] = buf[i - 1] end
  return out
end
M.flat = flat

-- Relative error of got (any device) against ref (CPU), and the largest elementwise gap.
function M.rel_error(got, ref)
  local a, b = flat(got), flat(ref)
  assert(#a == #b, ("parity: %d elements against %d"):format(#a, #b))
  local num, den, worst = 0, 0, 0
  for i = 1, #a do
    if a[i] ~= b[i] then   -- equal values (Inf, NaN bit patterns aside) add nothing
      local d = a[i] - b[i]
      if d ~= d then return math.huge, math.huge end
      num, worst = num + d * d, math.max(worst, math.abs(d))
    end
    den = den + b[i] * b[i]
  end
  if den == 0 then return math.sqrt(num), worst end
  return math.sqrt(num / den), worst
end

-- Asserts got (GPU) matches ref (CPU): same shape and dtype, relative error within tol (default
-- by dtype); what names the case in the failure.
function M.assert_close(got, ref, what, tol)
  assert.equal(M.target, got:device(), what .. ": result should be on the GPU")
  assert.same(ref:size(), got:size(), what .. ": shapes differ")
  assert.equal(ref:dtype(), got:dtype(), what .. ": dtypes differ")
  tol = tol or M.tol[ref:dtype()] or 1e-5
  local rel = M.rel_error(got, ref)
  assert(rel <= tol, ("%s: relative error %.3g above %.3g"):format(what, rel, tol))
end

-- Asserts bit-identical values (random streams, masks, integer results).
function M.assert_equal(got, ref, what)
  local a, b = flat(got), flat(ref)
  assert.equal(#b, #a, what .. ": element counts differ")
  for i = 1, #a do
    if a[i] ~= b[i] and not (a[i] ~= a[i] and b[i] ~= b[i]) then
      error(("%s: element %d is %.17g on cuda, %.17g on cpu"):format(what, i, a[i], b[i]), 2)
    end
  end
end

return M
