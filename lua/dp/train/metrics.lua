-- dp.train.metrics: the run's metrics.jsonl (one JSON object a line: dp.private's per-step
-- records, plus evaluation records such as {step, epoch, dev_accuracy}), and the curves drawn
-- from it by dp.train.plot.
local json = require "dp.util.json"
local atomic = require "dp.util.atomic"

local M = {}

function M.append(path, record)
  local f, err = io.open(path, "a")
  if not f then error(("metrics: cannot append to %s: %s"):format(path, tostring(err)), 0) end
  f:write(json.encode(record), "\n")
  f:close()
end

-- read(path) -> array of records (none when the file does not exist). A line that is not JSON
-- (a run killed mid-write) ends the reading.
function M.read(path)
  local f = io.open(path, "rb")
  local out = {}
  if not f then return out end
  for line in f:lines() do
    local ok, v = pcall(json.decode, line)
    if not ok or type(v) ~= "table" then break end
    out[#out + 1] = v
  end
  f:close()
  return out
end

-- Keep only the records up to step (a resumed run rewrites what came after its checkpoint).
function M.truncate(path, step)
  local keep = {}
  for _, r in ipairs(M.read(path)) do
    if type(r.step) == "number" and r.step <= step then keep[#keep + 1] = json.encode(r) end
  end
  atomic.write_string(path, #keep > 0 and table.concat(keep, "\n") .. "\n" or "", "metrics: truncate")
end

-- The plot's series from records: loss and epsilon per step, dev accuracy per evaluation.
function M.series(records)
  local loss, acc, eps = {}, {}, {}
  for _, r in ipairs(records) do
    if r.dev_accuracy then acc[#acc + 1] = { r.step, r.dev_accuracy }
    elseif r.loss ~= nil and r.step then loss[#loss + 1] = { r.step, r.loss } end
    if r.epsilon and r.step and not r.dev_accuracy then eps[#eps + 1] = { r.step, r.epsilon } end
  end
  return { { name = "loss", points = loss }, { name = "dev accuracy", points = acc, markers = true },
           { name = "epsilon", points = eps, min = 0 } }
end

return M
