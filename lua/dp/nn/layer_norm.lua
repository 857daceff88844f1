-- dp.nn.layer_norm: LayerNorm(dim, opts) over the last dim, weight 1 and bias 0 at start
-- (parameter names "weight"/"bias" as Hugging Face), through dp.layer_norm for the DP engine.
local raise = require("dp.ffi").raise
local dp = require "dp"
local module = require "dp.nn.module"

local LayerNorm = module.class("LayerNorm")

-- opts: eps (1e-12, BERT's layer_norm_eps), dtype ("f32").
function LayerNorm:init(dim, opts)
  opts = opts or {}
  if type(dim) ~= "number" or dim < 1 or dim % 1 ~= 0 then
    raise(("LayerNorm: dim must be a positive integer, got %s"):format(tostring(dim)))
  end
  self.eps = opts.eps or 1e-12
  if type(self.eps) ~= "number" or self.eps <= 0 then
    raise(("LayerNorm: eps must be a positive number, got %s"):format(tostring(opts.eps)))
  end
  local dt = opts.dtype or "f32"
  self:add_parameter("weight", dp.ones({ dim }, { dtype = dt }))
  self:add_parameter("bias", dp.zeros({ dim }, { dtype = dt }))
end

function LayerNorm:forward(x)
  return dp.layer_norm(x, self:param("weight"), self:param("bias"), self.eps)
end

return LayerNorm
