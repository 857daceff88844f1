-- dp.optim.sgd: stochastic gradient descent with momentum, dampening, nesterov and L2 weight decay
-- (PyTorch semantics, see dp_sgd_step_ in dp.h), fp32 momentum buffers (f64 for f64 params).
local native = require "dp.ffi"
local optimizer = require "dp.optim.optimizer"

local C = native.C

local FN = "dp.optim.sgd"
local defaults = { momentum = 0, dampening = 0, weight_decay = 0, nesterov = false }
local order = { "lr", "momentum", "dampening", "weight_decay", "nesterov" }

local function validate(fn, h)
  h = optimizer.options(fn, h, defaults, order)
  if h.lr == nil then native.raise(fn .. ": lr is required (a finite number >= 0)") end
  optimizer.number(fn, "lr", h.lr, 0)
  optimizer.number(fn, "momentum", h.momentum, 0, 1, true)
  optimizer.number(fn, "dampening", h.dampening, 0, 1)
  optimizer.number(fn, "weight_decay", h.weight_decay, 0)
  optimizer.boolean(fn, "nesterov", h.nesterov)
  if h.nesterov and (h.momentum <= 0 or h.dampening ~= 0) then
    native.raise(("%s: nesterov needs momentum > 0 and dampening 0, got momentum %g, dampening %g")
                 :format(fn, h.momentum, h.dampening))
  end
  return h
end

-- The momentum buffer is created at a parameter's first update, which then sets buf = g.
local function update(self, entry, state, p, g, rounding)
  local h = self.hyper
  local buf, first = nil, 0
  if h.momentum ~= 0 then
    if state.momentum_buf == nil then
      state.momentum_buf = optimizer.zeros_like_state(entry.tensor)
      first = 1
    end
    buf = state.momentum_buf.ptr
  end
  return C.dp_sgd_step_(p, g, buf, h.lr, h.momentum, h.dampening, h.weight_decay,
                        h.nesterov and 1 or 0, first, rounding)
end

-- The same update as a dp_update_rule for the fused end of a DP step; the buffer is kept only
-- once the update is done (commit), as update() keeps it.
local function fused(self, entry, state, rule)
  local h = self.hyper
  rule.kind = C.DP_UPDATE_SGD
  rule.lr, rule.momentum, rule.dampening, rule.weight_decay = h.lr, h.momentum, h.dampening, h.weight_decay
  rule.nesterov = h.nesterov and 1 or 0
  local buf, first = nil, false
  if h.momentum ~= 0 then
    buf = state.momentum_buf
    if buf == nil then buf, first = optimizer.zeros_like_state(entry.tensor), true end
  end
  rule.first_step = first and 1 or 0
  return buf, nil, function() if first then state.momentum_buf = buf end end
end

local spec = {
  kind = "sgd",
  fn = FN,
  state_keys = { momentum_buf = "tensor" },
  validate = validate,
  update = update,
  fused = fused,
}

local M = {}

-- dp.optim.sgd(params, { lr, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false,
--                        rounding = "nearest" | "stochastic", rounding_seed = 0 })
function M.new(params, opts)
  if opts == nil then native.raise(FN .. ": options with lr are required, e.g. { lr = 0.1 }") end
  return optimizer.new(spec, params, opts)
end

return M
