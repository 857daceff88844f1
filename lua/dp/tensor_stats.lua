-- dp.tensor_stats: t:stats(), a tensor's summary for debugging: mean, std, min and max over the
-- finite elements (in f64), and how many elements are NaN or infinite.
local data = require "dp.tensor_data"

local M = {}

local Stats = {}
Stats.__index = Stats
Stats.__tostring = function(s)
  local function f(v) return v == nil and "-" or ("%.6g"):format(v) end
  return ("mean %s  std %s  min %s  max %s  nan %d  inf %d  (%d elements, %s %s)"):format(f(s.mean), f(s.std),
    f(s.min), f(s.max), s.nan, s.inf, s.count, s.dtype, s.shape)
end

-- { mean, std (with n - 1, as torch.std), min, max, nan, inf, count, finite, dtype, shape };
-- mean/std/min/max are nil when no element is finite (std also when only one is).
function M.stats(x)
  local buf, n = data.to_f64(x)
  local nan, inf, finite = 0, 0, 0
  local sum, lo, hi = 0, math.huge, -math.huge
  for i = 0, n - 1 do
    local v = buf[i]
    if v ~= v then nan = nan + 1
    elseif v == math.huge or v == -math.huge then inf = inf + 1
    else
      finite = finite + 1
      sum = sum + v
      if v < lo then lo = v end
      if v > hi then hi = v end
    end
  end
  local s = setmetatable({ nan = nan, inf = inf, count = n, finite = finite, dtype = x:dtype(),
                           shape = "[" .. table.concat(x:size(), "x") .. "]" }, Stats)
  if finite == 0 then return s end
  local mean = sum / finite
  local ss = 0   -- two passes: the deviations, not sum of squares minus square of sums
  for i = 0, n - 1 do
    local v = buf[i]
    if v == v and v ~= math.huge and v ~= -math.huge then ss = ss + (v - mean) ^ 2 end
  end
  s.mean, s.min, s.max = mean, lo, hi
  if finite > 1 then s.std = math.sqrt(ss / (finite - 1)) end
  return s
end

return M
