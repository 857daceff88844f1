-- dp.nn.embedding: Embedding(num, dim, opts), rows of a (num, dim) table at 0-based ids, through
-- dp.embedding so that the DP engine sees the per-sample gradient (ids have the example as dim 1).
local raise = require("dp.ffi").raise
local dp = require "dp"
local module = require "dp.nn.module"

local Embedding = module.class("Embedding")

-- opts: dtype ("f32"), rng (dp.rng(0)), std (0.02). Rows are N(0, std^2).
function Embedding:init(num, dim, opts)
  opts = opts or {}
  for what, v in pairs { num_embeddings = num, embedding_dim = dim } do
    if type(v) ~= "number" or v < 1 or v % 1 ~= 0 then
      raise(("Embedding: %s must be a positive integer, got %s"):format(what, tostring(v)))
    end
  end
  self.num_embeddings, self.embedding_dim = num, dim
  local rng = opts.rng or dp.rng(0)
  self:add_parameter("weight", rng:randn({ num, dim }, { std = opts.std or 0.02, dtype = opts.dtype or "f32" }))
end

function Embedding:forward(ids)
  return dp.embedding(self:param("weight"), ids)
end

return Embedding
