-- A tiny model that uses every op with a per-sample rule: token and position embeddings (tokens
-- repeat within an example; padded tails), layer norm, a linear on sequences with bias, a frozen
-- base linear with a LoRA pair (A, B, no bias), a standalone bias, and a classifier head used
-- twice (two uses of one weight). For the DP engine's specs, which compare it with one example
-- at a time.
local dp = require "dp"

local M = {}

-- A tensor's values as a flat Lua array (row-major).
function M.flat(t)
  local buf, n = require("dp.tensor_data").to_f64(t)
  local out = {}
  for i = 1, n do out[i] = buf[i - 1] end
  return out
end

-- Parameters in dtype (default f64); base.weight is frozen.
function M.new(dtype, seed)
  dtype = dtype or "f64"
  local V, T, D, H, R = 7, 5, 4, 3, 2
  local s = seed or 1
  local function p(shape, std)
    s = s + 1
    return dp.randn(shape, { seed = s, dtype = dtype, std = std or 0.5 }):requires_grad(true)
  end
  local m = { V = V, T = T, D = D, H = H, dtype = dtype }
  m.list = {
    { name = "emb.weight", tensor = p{ V, D } },
    { name = "pos.weight", tensor = p{ T, D } },
    { name = "ln.weight", tensor = (p({ D }, 0.2) + 1):detach():requires_grad(true) },
    { name = "ln.bias", tensor = p{ D } },
    { name = "seq.weight", tensor = p{ H, D } },
    { name = "seq.bias", tensor = p{ H } },
    { name = "base.weight", tensor = p{ H, D }:requires_grad(false) },
    { name = "lora.A", tensor = p{ R, D } },
    { name = "lora.B", tensor = p{ H, R } },
    { name = "extra.bias", tensor = p{ H } },
    { name = "head.weight", tensor = p{ 2, H } },
    { name = "head.bias", tensor = p{ 2 } },
  }
  m.by_name = {}
  for _, e in ipairs(m.list) do m.by_name[e.name] = e.tensor end
  return setmetatable(m, { __index = M })
end

function M:named_parameters() return self.list end

function M:trainable()
  local out = {}
  for _, e in ipairs(self.list) do if e.tensor:requires_grad() then out[#out + 1] = e end end
  return out
end

-- A batch of B examples with lengths between 2 and T (padding id 0 after the length).
function M:batch(B, seed)
  local rng = dp.rand({ B, self.T + 2 }, { seed = seed or 7, dtype = "f64" }):totable()
  local tokens, positions, mask, labels = {}, {}, {}, {}
  for i = 1, B do
    local len = 2 + math.floor(rng[i][1] * (self.T - 1))
    tokens[i], positions[i], mask[i] = {}, {}, {}
    for t = 1, self.T do
      -- Few distinct ids, so tokens repeat inside an example.
      tokens[i][t] = t <= len and 1 + math.floor(rng[i][t + 1] * 3) or 0
      positions[i][t] = t - 1
      mask[i][t] = { t <= len and 1 or 0 }
    end
    labels[i] = math.floor(rng[i][self.T + 2] * 2)
  end
  return { tokens = dp.tensor(tokens, "i64"), positions = dp.tensor(positions, "i64"),
           mask = dp.tensor(mask, { dtype = self.dtype }), labels = dp.tensor(labels, "i64"), n = B }
end

-- Per-example losses (B).
function M:loss(b)
  local P = self.by_name
  local h = dp.embedding(P["emb.weight"], b.tokens) + dp.embedding(P["pos.weight"], b.positions)
  h = dp.layer_norm(h, P["ln.weight"], P["ln.bias"])
  local s = dp.linear(h, P["seq.weight"], P["seq.bias"]) + dp.linear(h, P["base.weight"])
            + dp.linear(dp.linear(h, P["lora.A"]), P["lora.B"])
  s = dp.bias_add(s, P["extra.bias"]):tanh() * b.mask
  local pooled = s:sum(2)
  local logits = dp.linear(pooled, P["head.weight"], P["head.bias"]) + dp.linear(pooled:tanh(), P["head.weight"])
  return dp.cross_entropy(logits, b.labels, { reduction = "none" })
end

-- Example i alone (1-based), as a batch of one.
function M.example(b, i)
  return { tokens = b.tokens:narrow(1, i, 1), positions = b.positions:narrow(1, i, 1),
           mask = b.mask:narrow(1, i, 1), labels = b.labels:narrow(1, i, 1), n = 1 }
end

return M
