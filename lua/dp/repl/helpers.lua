-- dp.repl.helpers: the functions a REPL session puts in scope: help, grads, persample, privacy,
-- step and continue. Each acts on the dp.private run owning the model given, or the newest one.
local runs = require "dp.repl.runs"
local inspect = require "dp.repl.inspect"

local M = {}

-- One line each, in the order help() lists them (dprun --help repeats them).
M.lines = {
  { "help()", "list these helpers" },
  { "grads(model)", "per parameter: shape, dtype, gradient norm, clipped-sum norm, noise norm, SNR" },
  { "persample(model)", "per-sample gradient norms per layer and overall: min, median, p90, max, clipped, histogram" },
  { "privacy()", "epsilon spent, the ledger, and the projected epsilon at the end of the run" },
  { "privacy{steps = n}", "the same, projecting to n steps in all" },
  { "step(n)", "advance the current dp.private run n steps (default 1), printing each step's line" },
  { "model:summary()", "layers with precision, trainable or frozen, and memory" },
  { "dp.precision.apply(model, policy)", "change precision live, e.g. one layer in fp32; takes effect at the next step" },
  { "t:stats()", "mean, std, min, max and NaN/Inf counts of a tensor" },
  { "continue()", "leave the REPL (after dp.breakpoint(): resume the script); Ctrl-D does the same" },
}

function M.help_text()
  local width = 0
  for _, l in ipairs(M.lines) do width = math.max(width, #l[1]) end
  local out = {}
  for _, l in ipairs(M.lines) do out[#out + 1] = ("  %s%s  %s"):format(l[1], (" "):rep(width - #l[1]), l[2]) end
  out[#out + 1] = "Tab completes names, fields and methods; Ctrl-C stops running code, not the session."
  out[#out + 1] = "Raw per-sample statistics are not private: reading them is recorded in the run's ledger."
  return table.concat(out, "\n")
end

local Text = { __tostring = function(t) return t.text end }

-- privacy(run, opts): spent epsilon, the ledger's runs, inspections and the projection to
-- opts.steps (or the run's planned steps, or opts.epochs).
function M.privacy(run, opts)
  opts = opts or {}
  local steps = run:steps()
  local total = opts.steps or run.planned_steps
  if not total and opts.epochs then total = math.ceil(opts.epochs / run.sample_rate) end
  local out = setmetatable({ epsilon = run:epsilon(), delta = run.delta, steps = steps, total_steps = total,
                             sigma = run.sigma, sample_rate = run.sample_rate, ledger = run.ledger:runs(),
                             inspections = run.ledger:inspections(), accountant = run.accountant_kind }, Text)
  if total then out.projected_epsilon = total > steps and run:epsilon(total - steps) or out.epsilon end
  local lines = {
    ("epsilon %.4f at delta %g after %d steps (%s accountant, sigma %.4g, q %.4g)"):format(out.epsilon,
      out.delta, steps, out.accountant, out.sigma, out.sample_rate),
  }
  if out.projected_epsilon then
    lines[#lines + 1] = ("projected epsilon %.4f after %d steps"):format(out.projected_epsilon, total)
  else
    lines[#lines + 1] = "projected epsilon: give privacy{steps = n} (the run has no planned length)"
  end
  if run.epsilon_budget then lines[#lines + 1] = ("budget %.4f"):format(run.epsilon_budget) end
  lines[#lines + 1] = "ledger:"
  for i, r in ipairs(out.ledger) do
    lines[#lines + 1] = ("  run %d: %d steps, q %.4g, sigma %.4g, clip %.4g%s"):format(i, r.steps, r.q, r.sigma,
      r.clip, r.batch_total and (", %d examples"):format(r.batch_total) or "")
  end
  if #out.ledger == 0 then lines[#lines + 1] = "  (no steps yet)" end
  lines[#lines + 1] = out.inspections > 0
    and ("debugging inspections recorded: %d (this run is not a clean DP run)"):format(out.inspections)
    or "no debugging inspections recorded"
  out.text = table.concat(lines, "\n")
  return out
end

local function step_line(st)
  return ("step %d  batch %d  loss %s  eps %.3f  clipped %.2f  %.0f ms"):format(st.step, st.batch_size,
    st.loss and ("%.4f"):format(st.loss) or "-", st.epsilon, st.clip_fraction, st.step_time * 1e3)
end

-- step(run, n): n steps, each printing its line (the run's own log line when it logs). The
-- optimizer is wrapped meanwhile to note each parameter's noisy gradient norm before the step
-- clears .grad, so that grads() can show it afterwards.
function M.step(run, n, print_line)
  n = n or 1
  if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then error("step: n must be a whole number >= 1", 0) end
  local opt = run.optimizer
  local own = rawget(opt, "step")
  local original = opt.step
  opt.step = function(o, ...)
    local norms = {}
    for _, p in ipairs(run.params) do
      local g = p.tensor.grad
      if g ~= nil then norms[p.name] = inspect.norm(g) end
    end
    run._repl_grad_norms = norms
    return original(o, ...)
  end
  local ok, err = pcall(function()
    for _ = 1, n do
      local st = run:step()
      if not run.log then print_line(step_line(st)) end
    end
  end)
  opt.step = own
  if not ok then error(err, 0) end
end

-- The helpers of one session. names() lists the session's locals and globals (to find runs);
-- say(line) prints; leave() ends the session.
function M.new(names, say, leave)
  local inspector = runs.inspector(say)
  local function run_for(model, what)
    local run = runs.find(model, names())
    if not run then error(what .. ": no dp.private run found (create one, or pass it)", 0) end
    return run
  end
  local h = {}
  function h.help() say(M.help_text()) end
  function h.grads(model) return inspect.grads(model, names(), inspector) end
  function h.persample(model) return inspect.persample(model, names(), inspector) end
  function h.privacy(opts)
    if runs.is_run(opts) then return M.privacy(opts) end
    if type(opts) == "number" then opts = { steps = opts } end
    return M.privacy(run_for(nil, "privacy"), opts)
  end
  function h.step(n, run) M.step(run or run_for(nil, "step"), n, say) end
  h.continue = leave
  return h
end

return M
