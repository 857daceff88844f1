-- dp.optim.adam: Adam (Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015) and
-- AdamW (Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019), see
-- dp_adam_step_ in dp.h, with fp32 moments (f64 for f64 params) and a step count per parameter.
local native = require "dp.ffi"
local optimizer = require "dp.optim.optimizer"

local C = native.C

local order = { "lr", "betas", "eps", "weight_decay" }

local function validator(weight_decay)
  local defaults = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = weight_decay }
  return function(fn, h)
    h = optimizer.options(fn, h, defaults, order)
    optimizer.number(fn, "lr", h.lr, 0)
    if type(h.betas) ~= "table" or #h.betas ~= 2 then
      native.raise(("%s: betas must be a table {beta1, beta2}, got %s"):format(fn, tostring(h.betas)))
    end
    h.betas = { optimizer.number(fn, "betas[1]", h.betas[1], 0, 1, true),
                optimizer.number(fn, "betas[2]", h.betas[2], 0, 1, true) }
    optimizer.number(fn, "eps", h.eps, 0)
    if h.eps == 0 then native.raise(("%s: eps must be a finite number > 0, got 0"):format(fn)) end
    optimizer.number(fn, "weight_decay", h.weight_decay, 0)
    return h
  end
end

-- A parameter's moments exist from its first update on; its own step counts its updates.
local function check_state(fn, name, s)
  local has = (s.m ~= nil and 1 or 0) + (s.v ~= nil and 1 or 0)
  local step = s.step or 0
  if has == 1 or (has == 2) ~= (step >= 1) then
    native.raise(("%s: parameter '%s': m, v and step >= 1 go together (got m %s, v %s, step %s)")
                 :format(fn, name, s.m and "set" or "missing", s.v and "set" or "missing", tostring(s.step)))
  end
end

local function updater(decoupled)
  return function(self, entry, state, p, g, rounding)
    local h = self.hyper
    if state.m == nil then
      state.m = optimizer.zeros_like_state(entry.tensor)
      state.v = optimizer.zeros_like_state(entry.tensor)
      state.step = 0
    end
    state.step = state.step + 1
    local rc = C.dp_adam_step_(p, g, state.m.ptr, state.v.ptr, h.lr, h.betas[1], h.betas[2], h.eps,
                               h.weight_decay, decoupled, state.step, rounding)
    if rc ~= 0 then state.step = state.step - 1 end
    return rc
  end
end

-- The same update as a dp_update_rule for the fused end of a DP step: the moments and the step
-- count are kept once the update is done (commit), as updater's are after a successful call.
local function fuser(decoupled)
  return function(self, entry, state, rule)
    local h = self.hyper
    rule.kind = C.DP_UPDATE_ADAM
    rule.lr, rule.beta1, rule.beta2, rule.eps = h.lr, h.betas[1], h.betas[2], h.eps
    rule.weight_decay, rule.decoupled = h.weight_decay, decoupled
    local m, v = state.m, state.v
    if m == nil then m, v = optimizer.zeros_like_state(entry.tensor), optimizer.zeros_like_state(entry.tensor) end
    local step = (state.step or 0) + 1
    rule.step = step
    return m, v, function() state.m, state.v, state.step = m, v, step end
  end
end

local function make(kind, weight_decay, decoupled)
  return {
    kind = kind,
    fn = "dp.optim." .. kind,
    state_keys = { m = "tensor", v = "tensor", step = "count" },
    validate = validator(weight_decay),
    check_state = check_state,
    update = updater(decoupled),
    fused = fuser(decoupled),
  }
end

local adam_spec, adamw_spec = make("adam", 0, 0), make("adamw", 0.01, 1)

local M = {}

-- dp.optim.adam(params, { lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0 }):
-- weight decay as L2 (added to the gradient).
function M.adam(params, opts) return optimizer.new(adam_spec, params, opts) end

-- dp.optim.adamw(params, { ..., weight_decay = 0.01 }): decoupled weight decay.
function M.adamw(params, opts) return optimizer.new(adamw_spec, params, opts) end

return M
