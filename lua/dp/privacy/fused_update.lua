-- dp.privacy.fused_update: the end of a dp.private step fused with the optimizer: for each
-- registered parameter, its noise, the scale and its optimizer update in one pass over its memory
-- (Engine:finish_update, dp_psg_finish_update_param), instead of engine:finish then
-- optimizer:step. Same bits as that composed path: the plan is made only when the optimizer has a
-- fused rule for every trainable parameter and would update them in the engine's order (the
-- stochastic-rounding stream follows the update order), no loss scaler has to decide a skip first,
-- and nothing wraps the optimizer's step (the REPL's step(n) notes the gradients there).
local ffi = require "ffi"
local dpffi = require "dp.ffi"

local raise = dpffi.raise

local M = {}

local function key(t) return tostring(ffi.cast("uintptr_t", t.ptr)) end

-- The updates in engine order ({ index, rule, state0, state1, rounding, commit }; frozen
-- parameters only { index }), or nil when the step must take the composed path.
function M.plan(run)
  local opt = run.optimizer
  if run.fused_update == false or run.scaler or type(opt.fused_update_args) ~= "function"
     or type(opt.count_step) ~= "function" or rawget(opt, "step") ~= nil then
    return nil
  end
  local order = {}
  for _, t in ipairs(opt:params()) do
    if t:requires_grad() then order[#order + 1] = key(t) end
  end
  local plan, j = {}, 0
  for i, p in ipairs(run.params) do
    local item = { index = i }
    if p.tensor:requires_grad() then
      j = j + 1
      if order[j] ~= key(p.tensor) then return nil end
      local rule, s0, s1, rounding, commit = opt:fused_update_args(p.tensor)
      if rule == nil then return nil end
      item.rule, item.state0, item.state1, item.rounding, item.commit = rule, s0, s1, rounding, commit
    end
    plan[i] = item
  end
  if j ~= #order then return nil end
  return plan
end

-- Run the plan: noise of std, scale, updates; the step counts in the optimizer as step() counts
-- it. counter_after: where the ledger (written before) says the noise generator now stands.
function M.run(run, plan, std, scale, counter_after)
  local eng = run.engine
  run.optimizer:count_step()
  for _, item in ipairs(plan) do
    eng:finish_update(item.index, run.noise, std, scale, item.rule, item.state0, item.state1, item.rounding)
    if item.commit then item.commit() end
  end
  local now = run.noise:state().counter
  if now ~= counter_after then
    raise(("dp.private: the fused update left the noise generator at block %s, but the ledger recorded %s "
           .. "for this step"):format(tostring(now), tostring(counter_after)))
  end
end

return M
