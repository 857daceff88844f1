-- dp.nn.linear: Linear(in, out, opts), y = x W^T + b with W (out, in) and b (out), through
-- dp.linear so that the DP engine sees both parameters' per-sample gradients; forward_act adds
-- an activation in the same op (dp.linear_act).
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

local activations = { gelu = true, relu = true, tanh = true, none = true }

local function activate(y, act)
  if act == "none" then return y end
  return dp[act](y)
end

-- act: nil for the plain layer; forward_act passes it through the module call (so that a
-- precision policy casts x as for any call) to get the fused op.
function Linear:forward(x, act)
  local st = self._precision
  local w, b = self:param("weight"), self:param("bias")
  if st and st.fp8 then
    local y = require("dp.precision.fp8").linear(st.fp8, x, w, b)
    return act and activate(y, act) or y
  end
  if act then return dp.linear_act(x, w, b, act) end
  return dp.linear(x, w, b)
end

-- act(x W^T + b) for act "gelu", "relu", "tanh" or "none": one fused op (dp.linear_act: bias and
-- activation in one pass after the GEMM, one autograd node, the same DP-engine taps as
-- dp.linear). Under an fp8 rule, and for a layer whose forward was replaced (LoRA adapters), the
-- layer's own output goes through dp[act] instead.
function Linear:forward_act(x, act)
  if not activations[act] then
    raise(("Linear.forward_act: act must be \"gelu\", \"relu\", \"tanh\" or \"none\", got %s")
          :format(type(act) == "string" and ("%q"):format(act) or type(act)))
  end
  if rawget(self, "forward") ~= nil then return activate(self(x), act) end
  return self(x, act)
end

return Linear
