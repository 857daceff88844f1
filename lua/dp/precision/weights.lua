-- dp.precision.weights: low-precision copies of parameters, made once per update rather than once
-- per forward. A copy remembers the master's version (dp_tensor_version) at its making; any
-- in-place write to the master (optimizer step, REPL edit, checkpoint load) changes the version,
-- and the next use converts again. The forward sees dp.cast_into(master, copy), an autograd cast
-- of the master, so gradients land on the master and the DP engine taps the master.
local dp = require "dp"

local M = {}

-- Moves t's storage to a memory category; a no-op on a library built without categories.
function M.tag(t, category)
  if t.set_mem_category then t:set_mem_category(category) end
end

local function version(t) return tonumber(t:version()) end

-- A copy entry for master in dtype; kind "cast" (round to nearest even) or "fp8" (the values
-- quantised to e4m3 with a per-tensor scale from fp8_state, held exactly in dtype = bf16).
-- An old entry of the same dtype and shape is reused (its storage kept, its values refreshed).
function M.entry(old, master, dtype, kind, fp8_state)
  local e = old
  local same_shape = e and table.concat(e.cache:size(), ",") == table.concat(master:size(), ",")
  if not (same_shape and e.dtype == dtype) then
    e = { dtype = dtype, cache = dp.empty(master:size(), { dtype = dtype }), refreshes = 0 }
    M.tag(e.cache, "parameters")
  end
  e.kind, e.fp8, e.version, e.master = kind, fp8_state, nil, master
  return e
end

-- Writes master's quantised values into e.cache (no graph): the weight's scale comes from the
-- amax history of the weight itself, which is public (it is what the noisy update produced).
local function refresh_fp8(e, master)
  dp.no_grad(function()
    local fp8 = require "dp.precision.fp8"
    local scale = fp8.weight_scale(e.fp8, master)
    local q = dp.fake_quant(master, "fp8_e4m3", scale, nil, false)
    dp.cast_into(q, e.cache, true)
  end)
end

-- The tensor a forward computes with: master as e.dtype, converted now only if master changed
-- since the copy was made.
function M.get(e, master)
  local v = version(master)
  if e.version == v and e.master == master then return dp.cast_into(master, e.cache, false) end
  e.refreshes = e.refreshes + 1
  e.master = master
  if e.kind == "fp8" then
    refresh_fp8(e, master)
    e.version = v
    return dp.cast_into(master, e.cache, false)
  end
  local out = dp.cast_into(master, e.cache, true)
  e.version = v
  return out
end

function M.bytes(e) return e.cache:numel() * require("dp.dtype").size(e.cache.ptr.dtype) end

return M
