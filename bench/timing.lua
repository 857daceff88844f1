-- bench/timing.lua: what the benchmarks share to time things: a monotonic clock and the median
-- and minimum of repeated measurements. Load with package.path including bench/ (each benchmark
-- adds its own directory).
local ffi = require "ffi"
local C = require("dp.ffi").C

local M = {}

-- Seconds on CLOCK_MONOTONIC (immune to wall-clock adjustments) through dprun's cdef of
-- clock_gettime; CPU time (os.clock) where that declaration is missing.
if pcall(ffi.typeof, "dp_timespec") then
  local ts = ffi.new("dp_timespec")
  function M.now()
    C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
  end
else
  M.now = os.clock
end

-- The median of xs (left unchanged).
function M.median(xs)
  local s = {}
  for k, v in ipairs(xs) do s[k] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

function M.min_of(xs)
  local m = math.huge
  for _, v in ipairs(xs) do m = math.min(m, v) end
  return m
end

return M
