-- dp.optim.rounding: the optimizers' rounding options (how an update is rounded into a bf16, f16
-- or fp8 parameter: "nearest" or "stochastic", see dp_rounding in dp.h), checked, and their part of
-- a state_dict: the Philox seed and counter and each parameter's mode, so a resumed run rounds
-- exactly as the uninterrupted one would have.
local native = require "dp.ffi"

local raise = native.raise

local M = {}

local MODES = { nearest = true, stochastic = true }

function M.mode(fn, v)
  if not MODES[v] then
    raise(("%s: rounding must be \"nearest\" or \"stochastic\", got %s"):format(fn, tostring(v)), 3)
  end
  return v
end

-- Seeds and counters travel as Lua numbers (exact integers up to 2^53).
local function count(fn, key, v)
  if type(v) ~= "number" or v < 0 or v % 1 ~= 0 or v > 2 ^ 53 then
    raise(("%s: %s must be an integer in [0, 2^53], got %s"):format(fn, key, tostring(v)), 3)
  end
  return v
end

-- The options without rounding and rounding_seed, the default mode and the seed (checked).
function M.split(fn, opts)
  if type(opts) ~= "table" or (opts.rounding == nil and opts.rounding_seed == nil) then
    return opts, "nearest", 0
  end
  local rest = {}
  for k, v in pairs(opts) do
    if k ~= "rounding" and k ~= "rounding_seed" then rest[k] = v end
  end
  return rest, M.mode(fn, opts.rounding or "nearest"), count(fn, "rounding_seed", opts.rounding_seed or 0)
end

-- state_dict's rounding entry from the dp_rounding struct and the modes by name.
function M.dump(r, modes)
  local copy = {}
  for name, how in pairs(modes) do copy[name] = how end
  return { seed = tonumber(r.seed), counter = tonumber(r.counter), modes = copy }
end

-- A state_dict's rounding entry checked against the current modes: { seed, counter, modes }, or nil
-- when absent (a state saved before stochastic rounding existed keeps the current settings).
function M.load(fn, r, current)
  if r == nil then return nil end
  if type(r) ~= "table" then raise(("%s: rounding must be a table, got %s"):format(fn, type(r)), 3) end
  local modes = {}
  for name, how in pairs(current) do modes[name] = how end
  if r.modes ~= nil then
    if type(r.modes) ~= "table" then raise(("%s: rounding.modes must be a table"):format(fn), 3) end
    for name, how in pairs(r.modes) do
      if modes[name] == nil then
        raise(("%s: rounding.modes has parameter '%s', which this optimizer does not have")
              :format(fn, tostring(name)), 3)
      end
      modes[name] = M.mode(fn, how)
    end
  end
  return { seed = count(fn, "rounding.seed", r.seed), counter = count(fn, "rounding.counter", r.counter),
           modes = modes }
end

return M
