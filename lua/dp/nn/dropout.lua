-- dp.nn.dropout: Dropout(p, opts), inverted dropout while the module is in training mode and
-- the identity in eval mode (module:eval()).
local raise = require("dp.ffi").raise
local dp = require "dp"
local module = require "dp.nn.module"

local Dropout = module.class("Dropout")

-- opts: rng (the generator drawn from; default dp's global one).
function Dropout:init(p, opts)
  p = p or 0.5
  if type(p) ~= "number" or p < 0 or p >= 1 then
    raise(("Dropout: p must be a number in [0, 1), got %s"):format(tostring(p)))
  end
  self.p = p
  self.rng = opts and opts.rng
end

function Dropout:forward(x)
  if not self.training or self.p == 0 then return x end
  return dp.dropout(x, self.p, true, self.rng)
end

return Dropout
