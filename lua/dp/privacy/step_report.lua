-- dp.privacy.step_report: what dp.private says about each step: the memory by category at the
-- step's peak (dp.memory_report), the one-line log (opts.log) and the JSONL metrics (opts.metrics).
local raise = require("dp.ffi").raise

local M = {}

-- Short names for the log line, in the order shown.
local SHORT = { { "activations", "act" }, { "parameters", "params" }, { "master", "master" },
                { "optimizer", "optim" }, { "per_sample", "per-sample" }, { "gradients", "grads" },
                { "scratch", "scratch" }, { "other", "other" } }

-- dp.memory_report when the library has it (memory categories), else nil.
local function memory_report()
  local dp = require "dp"
  local ok, mr = pcall(function() return dp.memory_report end)
  if ok and type(mr) == "table" and type(mr.categories) == "function" then return mr end
  return nil
end

local function device_of(params)
  local p = params and params[1] and params[1].tensor
  local ok, dev = pcall(function() return p:device() end)
  return ok and type(dev) == "string" and dev or "cpu"
end

-- A snapshot of the categories since the last peak reset: { total_peak =, [name] = { peak =,
-- at_peak = } } (bytes), or nil without memory categories.
function M.snapshot(params)
  local mr = memory_report()
  if not mr then return nil end
  local dev = device_of(params)
  local _, peak = require("dp").memory(dev)
  local out = { total_peak = peak }
  for _, c in ipairs(mr.categories(dev)) do out[c.name] = { peak = c.peak, at_peak = c.at_peak } end
  return out
end

-- Merge two snapshots taken between peak resets (micro-batches under a memory cap): each
-- category's own peak is the larger; the bytes at the peak come from the snapshot whose total
-- peak is the larger.
function M.merge(a, b)
  if not a then return b end
  if not b then return a end
  local hi = b.total_peak > a.total_peak and b or a
  local out = { total_peak = hi.total_peak }
  for name, c in pairs(a) do
    if name ~= "total_peak" then
      local d = b[name] or c
      out[name] = { peak = math.max(c.peak, d.peak), at_peak = hi[name] and hi[name].at_peak or c.at_peak }
    end
  end
  return out
end

-- Adds mem_<category> (bytes at the step's peak) and mem_peak_<category> (its own peak) to stats.
function M.add_memory(stats, snap)
  if not snap then return end
  for name, c in pairs(snap) do
    if name ~= "total_peak" then
      stats["mem_" .. name], stats["mem_peak_" .. name] = c.at_peak, c.peak
    end
  end
end

local function mib(b) return b / 2 ^ 20 end

-- "peak 626 MiB (act 480, params 21, master 0, optim 42, per-sample 60, grads 21)": the bytes of
-- each category at the moment the step's total peaked (they sum to it); scratch and other only
-- when nonzero.
function M.memory_text(stats)
  local parts = {}
  for _, e in ipairs(SHORT) do
    local v = stats["mem_" .. e[1]]
    if v and (v > 0 or (e[1] ~= "scratch" and e[1] ~= "other")) then
      parts[#parts + 1] = ("%s %.0f"):format(e[2], mib(v))
    end
  end
  local text = ("peak %.0f MiB"):format(mib(stats.peak_bytes))
  if #parts > 0 then text = text .. " (" .. table.concat(parts, ", ") .. ")" end
  return text
end

function M.line(st)
  local scale = ""
  if st.skipped then
    scale = ("  skipped (overflow, loss scale -> %s)"):format(M.pow2_text(st.next_loss_scale))
  elseif st.loss_scale then
    scale = "  scale " .. M.pow2_text(st.loss_scale)
  end
  return ("step %d  batch %d  loss %s%s  eps %.3f  clipped %.2f%s%s  %.0f ms  %s"):format(
    st.step, st.batch_size, st.loss and ("%.4f"):format(st.loss) or "-",
    st.accuracy and ("  acc %.3f"):format(st.accuracy) or "", st.epsilon, st.clip_fraction,
    st.nonfinite > 0 and ("  nonfinite %d"):format(st.nonfinite) or "", scale, st.step_time * 1e3,
    M.memory_text(st))
end

-- 32768 -> "2^15" (loss scales are powers of two).
function M.pow2_text(v)
  local _, e = math.frexp(v)
  return ("2^%d"):format(e - 1)
end

-- A line in the log that is not a step's (no stats).
function M.note(log, line)
  if type(log) == "function" then log(line) elseif log then io.stderr:write(line, "\n") end
end

-- The per-step log line (log: true for stderr, or a function(line, stats)) and the JSONL metrics
-- (metrics: a path, appended to, one object per step).
function M.report(log, metrics, st)
  if log then
    local line = M.line(st)
    if type(log) == "function" then log(line, st) else io.stderr:write(line, "\n") end
  end
  if metrics then
    local f, err = io.open(metrics, "a")
    if not f then raise(("dp.private: cannot append metrics to %s: %s"):format(metrics, tostring(err))) end
    -- JSON has no Inf or NaN (an overflowed step's loss): such fields are left out of the line.
    local row = {}
    for k, v in pairs(st) do
      if type(v) ~= "number" or (v == v and v ~= math.huge and v ~= -math.huge) then row[k] = v end
    end
    f:write(require("dp.util.json").encode(row), "\n")
    f:close()
  end
end

return M
