-- dp.nn.linear: Linear(in, out, opts), y = x W^T + b with W (out, in) and b (out), through
-- dp.linear so that the DP engine sees both parameters' per-sample gradients.
local raise = require("dp.ffi").raise
local dp = require "dp"
local module = require "dp.nn.module"

local Linear = module.class("Linear")

local function positive_int(v, what)
  if type(v) ~= "number" or v < 1 or v % 1 ~= 0 then
    raise(("Linear: %s must be a positive integer, got %s"):format(what, tostring(v)))
  end
end

-- opts: bias (true), dtype ("f32"), rng (dp.rng(0)), std (0.02: BERT's initializer_range).
-- Weights are N(0, std^2), the bias zero.
function Linear:init(n_in, n_out, opts)
  opts = opts or {}
  positive_int(n_in, "in_features")
  positive_int(n_out, "out_features")
  self.in_features, self.out_features = n_in, n_out
  local rng = opts.rng or dp.rng(0)
  local dt = opts.dtype or "f32"
  self:add_parameter("weight", rng:randn({ n_out, n_in }, { std = opts.std or 0.02, dtype = dt }))
  if opts.bias ~= false then self:add_parameter("bias", dp.zeros({ n_out }, { dtype = dt })) end
end

-- Under an fp8 rule the weight copy holds e4m3 values (dp.precision.fp8).
Linear.fp8_weights = { weight = true }

function Linear:forward(x)
  local st = self._precision
  if st and st.fp8 then
    return require("dp.precision.fp8").linear(st.fp8, x, self:param("weight"), self:param("bias"))
  end
  return dp.linear(x, self:param("weight"), self:param("bias"))
end

return Linear
