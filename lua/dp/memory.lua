-- dp.memory_report: tensor memory by category (parameters, activations, per-sample buffers, ...)
-- from the C allocator's counters, and a way to tag what a piece of code allocates.
-- dp.memory(device) keeps giving the device totals (current, peak).
local dpffi = require "dp.ffi"
local dtype = require "dp.dtype"

local C, raise = dpffi.C, dpffi.raise

local M = {}

-- Category names in the order of the C enum (dp_mem_category): names[id + 1].
M.names = { "other", "parameters", "master", "optimizer", "activations", "per_sample", "gradients",
            "scratch" }
local ids = {}
for i, name in ipairs(M.names) do ids[name] = i - 1 end

-- Short labels for M.format.
local short = { other = "other", parameters = "params", master = "master", optimizer = "optim",
                activations = "act", per_sample = "per-sample", gradients = "grads",
                scratch = "scratch" }

-- The C id of a category name; fn names the caller in the error.
function M.id(name, fn)
  local id = ids[name]
  if id == nil then
    raise(("%s: unknown memory category %s (expected one of %s)")
          :format(fn or "memory category", tostring(name), table.concat(M.names, ", ")))
  end
  return id
end

-- The name of a C category id.
function M.name(id) return M.names[tonumber(id) + 1] end

-- { {name=, current=, peak=, at_peak=}, ... } in enum order (bytes); at_peak is the category's
-- share of the device total at its last peak.
function M.categories(device)
  local d = dtype.parse_device(device, "memory_report.categories")
  dpffi.sweep()   -- count what collected handles still hold as freed
  local out = {}
  for i, name in ipairs(M.names) do
    local c = i - 1
    out[i] = { name = name, current = tonumber(C.dp_mem_category_current(d, c)),
               peak = tonumber(C.dp_mem_category_peak(d, c)),
               at_peak = tonumber(C.dp_mem_category_at_peak(d, c)) }
  end
  return out
end

local function restore(prev, ok, ...)
  C.dp_mem_set_category(prev)
  if not ok then error((...), 0) end   -- the message already says where
  return ...
end

-- fn(...) with this thread's category for new tensors set to name; the previous category comes
-- back afterwards, also when fn raises. Returns fn's results.
function M.with_category(name, fn, ...)
  local id = M.id(name, "memory_report.with_category")
  if type(fn) ~= "function" then
    raise("memory_report.with_category: expected a function to run, got " .. type(fn))
  end
  local prev = C.dp_mem_set_category(id)
  return restore(prev, pcall(fn, ...))
end

-- One line of the nonzero categories in MiB, e.g. "params 12.1 act 300.2 per-sample 20.0 MiB".
-- which = "current" (default), "peak" (each category's own peak) or "at_peak" (the make-up of
-- the device's peak).
function M.format(device, which)
  which = which or "current"
  if which ~= "current" and which ~= "peak" and which ~= "at_peak" then
    raise("memory_report.format: which must be \"current\", \"peak\" or \"at_peak\", got " .. tostring(which))
  end
  local parts = {}
  for _, c in ipairs(M.categories(device)) do
    if c[which] ~= 0 then parts[#parts + 1] = ("%s %.1f"):format(short[c.name], c[which] / 2 ^ 20) end
  end
  if #parts == 0 then return "0.0 MiB" end
  return table.concat(parts, " ") .. " MiB"
end

return M
