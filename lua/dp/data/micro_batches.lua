-- dp.data.micro_batches: splits a logical batch (an array of example indices) into physical
-- micro-batches that fit a size cap and a memory cap, learning the memory an example needs.
--
-- Splitting never changes the result of a DP-SGD step: each example's gradient is clipped on its
-- own, the clipped gradients of every micro-batch are summed into the same accumulators, and the
-- noise is added once per logical batch (dp_psg_finish). Only the order of the floating-point
-- additions differs. Privacy is accounted per logical batch, so micro-batches cost nothing there.
--
--   local plan = dp.data.micro_batches.planner{ max_physical_batch_size = 64,
--                                               memory_cap_bytes = 20e9 }
--   for _, part in ipairs(plan:split(indices)) do ... end
--   plan:observe(#part, peak_bytes, base_bytes)   -- after a micro-batch: learn bytes per example
local dpffi = require "dp.ffi"

local raise = dpffi.raise

local SAFETY = 1.1   -- margin over the largest measured bytes per example

local M = { safety_factor = SAFETY }

local Planner = {}
Planner.__index = Planner

local function is_integer(v) return type(v) == "number" and v == math.floor(v) and v < math.huge end

-- The learned bytes per example (the largest observed), or nil before any observation.
function Planner:bytes_per_example() return self.per_example end

-- Examples per micro-batch for a logical batch of n: from the memory cap once an observation
-- exists, else max_physical_batch_size, else n (the whole batch). Never above
-- max_physical_batch_size; at least 1.
function Planner:physical_size(n)
  local size = self.max_size or math.max(n, 1)
  local cap, per = self.memory_cap, self.per_example
  if cap and per and per > 0 then
    local room = cap - self.base
    local fit = math.floor(room / (per * SAFETY))
    if fit < 1 then
      raise(("micro_batches: memory_cap_bytes = %.0f leaves %.0f bytes above the base of %.0f, less than "
             .. "one example needs (%.0f bytes measured x %.1f safety = %.0f)")
            :format(cap, room, self.base, per, SAFETY, per * SAFETY))
    end
    size = math.min(size, fit)
  end
  return size
end

-- indices -> { {indices[1..k]}, {indices[k+1..2k]}, ... }: in order, each index once, none
-- empty (an empty batch gives no micro-batches).
function Planner:split(indices)
  if type(indices) ~= "table" then
    raise("micro_batches: split expects an array of example indices, got " .. type(indices))
  end
  local n = #indices
  local out = {}
  if n == 0 then return out end
  local size = self:physical_size(n)
  for start = 1, n, size do
    local part = {}
    for i = start, math.min(start + size - 1, n) do part[#part + 1] = indices[i] end
    out[#out + 1] = part
  end
  return out
end

-- After running a micro-batch of n_examples: peak_bytes is the memory peak during it and
-- base_bytes the memory held before it (model, optimizer state). Bytes per example become the
-- largest (peak - base) / n seen; the base used is the largest seen.
function Planner:observe(n_examples, peak_bytes, base_bytes)
  if not is_integer(n_examples) or n_examples < 1 then
    raise(("micro_batches: observe expects n_examples an integer >= 1, got %s"):format(tostring(n_examples)))
  end
  if type(base_bytes) ~= "number" or not (base_bytes >= 0 and base_bytes < math.huge) then
    raise(("micro_batches: observe expects base_bytes a finite number >= 0, got %s"):format(tostring(base_bytes)))
  end
  if type(peak_bytes) ~= "number" or not (peak_bytes >= base_bytes and peak_bytes < math.huge) then
    raise(("micro_batches: observe expects peak_bytes a finite number >= base_bytes (%s), got %s")
          :format(tostring(base_bytes), tostring(peak_bytes)))
  end
  local per = (peak_bytes - base_bytes) / n_examples
  self.per_example = math.max(self.per_example or 0, per)
  self.base = math.max(self.base, base_bytes)
  return self
end

-- planner{ max_physical_batch_size = nil | integer >= 1, memory_cap_bytes = nil | number > 0 }
function M.planner(opts)
  opts = opts or {}
  if type(opts) ~= "table" then raise("micro_batches.planner: expected a table of options") end
  local max_size, cap = opts.max_physical_batch_size, opts.memory_cap_bytes
  if max_size ~= nil and not (is_integer(max_size) and max_size >= 1) then
    raise(("micro_batches.planner: max_physical_batch_size must be an integer >= 1, got %s"):format(tostring(max_size)))
  end
  if cap ~= nil and not (type(cap) == "number" and cap > 0 and cap < math.huge) then
    raise(("micro_batches.planner: memory_cap_bytes must be a finite number > 0, got %s"):format(tostring(cap)))
  end
  return setmetatable({ max_size = max_size, memory_cap = cap, per_example = nil, base = 0 }, Planner)
end

M.Planner = Planner
return M
