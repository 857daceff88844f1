-- dp.repl.runs: which dp.private run the REPL helpers act on, and the bookkeeping of debugging
-- inspections (raw per-sample statistics are not private: say so once per session, and record
-- it in the run's ledger so that a report never presents the run as clean).
local M = {}

-- dp.private objects, weakly held, in the order they registered.
local registered = setmetatable({}, { __mode = "v" })

-- dp.private can call this from its constructor so that step() finds the newest run.
function M.register(run)
  registered[#registered + 1] = run
  return run
end

local function is_run(v)
  if type(v) ~= "table" then return false end
  local ok, private = pcall(require, "dp.privacy.private")
  return ok and getmetatable(v) == private.Private
end
M.is_run = is_run

local function key(t) return tostring(t.ptr) end

-- The run owning a model's parameters: the argument itself when it is a run, a registered run
-- or one found among the names (name -> value, the REPL's locals and globals) sharing a
-- parameter with the model, else the newest run. Nil when there is none.
function M.find(model, names)
  if is_run(model) then return model end
  local candidates = {}
  for i = #registered, 1, -1 do
    if registered[i] then candidates[#candidates + 1] = registered[i] end
  end
  for _, v in pairs(names or {}) do
    if is_run(v) then candidates[#candidates + 1] = v end
  end
  for _, v in pairs(_G) do
    if is_run(v) then candidates[#candidates + 1] = v end
  end
  if model and type(model) == "table" and type(model.named_parameters) == "function" then
    local mine = {}
    for _, p in ipairs(model:named_parameters()) do mine[key(p.tensor)] = true end
    for _, run in ipairs(candidates) do
      for _, p in ipairs(run.params) do
        if mine[key(p.tensor)] then return run end
      end
    end
  end
  return candidates[1]
end

-- The parameters to show for a model: {name=, tensor=} records.
function M.params_of(model, run)
  if model and not is_run(model) and type(model.named_parameters) == "function" then
    return model:named_parameters()
  end
  if run then return run.params end
  error("expected a model (with :named_parameters()) or a dp.private run, and found no run", 0)
end

-- Inspection state of one REPL session.
function M.inspector(out)
  local warned, marked = false, setmetatable({}, { __mode = "k" })
  out = out or function(line) io.stdout:write(line, "\n") end
  return function(run, what)
    if not warned then
      warned = true
      out("note: raw per-sample statistics are not differentially private; this session's reads "
          .. "are recorded in the run's ledger as a debugging inspection")
    end
    if run and run.ledger then
      marked[run.ledger] = marked[run.ledger] or {}
      if not marked[run.ledger][what] then
        marked[run.ledger][what] = true
        run.ledger:mark_inspected(what)
      end
    end
  end
end

return M
