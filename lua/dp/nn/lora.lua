-- dp.nn.lora: low-rank adapters on Linear layers (Hu et al. 2021, "LoRA"), and last-layers
-- fine-tuning, the two setups of the Opacus mixed-precision study. An adapted Linear keeps its
-- weight and bias under their own names (so checkpoints still map) and gains children lora_A
-- (rank, in) and lora_B (out, rank): y = x W^T + b + (alpha / rank) * dropout(x) A^T B^T, with B
-- starting at zero so the adapted model starts equal to the base. Both adapters are dp.linear
-- calls, so the DP engine clips them like any weight.
local dp = require "dp"
local raise = require("dp.ffi").raise
local Linear = require "dp.nn.linear"

local M = {}

-- The adapters are called as modules, so each computes in its own rule's precision.
local function lora_forward(self, x)
  local h = self.lora_dropout and self.lora_dropout(x) or x
  local delta = self.lora_B(self.lora_A(h))
  return Linear.forward(self, x) + delta * self.lora_scale
end

-- A module name matches a target when its last component equals it ("query" matches
-- "bert.encoder.layer.0.attention.self.query").
local function matches(name, targets)
  local last = name:match("([^.]+)$") or name
  for _, t in ipairs(targets) do if last == t then return true end end
  return false
end

-- apply(model, { rank = 8, alpha = 16, dropout = 0, targets = {"query", "value"},
--                train = {"^classifier%."}, seed = 0 }): freezes every parameter, adapts the
-- matching Linear layers and unfreezes the adapters and the `train` patterns (the new head).
-- Returns the adapted module names.
function M.apply(model, opts)
  opts = opts or {}
  local rank, alpha = opts.rank or 8, opts.alpha or 2 * (opts.rank or 8)
  if type(rank) ~= "number" or rank < 1 or rank % 1 ~= 0 then raise("lora.apply: rank must be a positive integer") end
  if type(alpha) ~= "number" or not (alpha > 0) then raise("lora.apply: alpha must be a number > 0") end
  local p = opts.dropout or 0
  if type(p) ~= "number" or p < 0 or p >= 1 then raise("lora.apply: dropout must be in [0, 1)") end
  local targets = opts.targets or { "query", "value" }
  local rng = dp.rng(opts.seed or 0)
  for _, e in ipairs(model:named_parameters()) do e.tensor:requires_grad(false) end
  local adapted = {}
  for _, e in ipairs(model:named_modules()) do
    local m = e.module
    if getmetatable(m) == Linear and matches(e.name, targets) then
      if m.lora_A then raise(("lora.apply: '%s' already has adapters"):format(e.name)) end
      local dt = m.weight:dtype()
      -- A ~ N(0, 1/in) (fan-in scaled, as the reference's Kaiming init), B = 0.
      local A = Linear.new(m.in_features, rank, { bias = false, dtype = dt, rng = rng, std = 1 / math.sqrt(m.in_features) })
      local B = Linear.new(rank, m.out_features, { bias = false, dtype = dt, rng = rng })
      dp.no_grad(function() B.weight:zero() end)
      m:add_module("lora_A", A)
      m:add_module("lora_B", B)
      m.lora_scale = alpha / rank
      if p > 0 then m.lora_dropout = require("dp.nn.dropout").new(p, { rng = dp.rng((opts.seed or 0) + 7919) }) end
      m.forward = lora_forward
      adapted[#adapted + 1] = e.name
    end
  end
  if #adapted == 0 then
    raise(("lora.apply: no Linear layer named %s"):format(table.concat(targets, " or ")))
  end
  if opts.train ~= false then model:unfreeze(opts.train or { "^classifier%." }) end
  -- New adapters follow the model's precision policy, if it has one.
  local policy = model.precision_policy and model:precision_policy()
  if policy then require("dp.precision.apply").apply(model, policy) end
  return adapted
end

-- Fold every adapter into its weight (W += alpha/rank * B A) and remove it, for export under the
-- base model's names. Returns how many layers were merged.
function M.merge(model)
  local n = 0
  for _, e in ipairs(model:named_modules()) do
    local m = e.module
    if m.lora_A then
      dp.no_grad(function()
        local delta = dp.matmul(m.lora_B.weight, m.lora_A.weight) * m.lora_scale
        m.weight:copy(m.weight + delta)
      end)
      m:remove_module("lora_A")
      m:remove_module("lora_B")
      m.forward, m.lora_scale, m.lora_dropout = nil, nil, nil
      n = n + 1
    end
  end
  return n
end

-- Last-layers fine-tuning: freeze everything but the last `layers` encoder layers and the
-- `include` patterns (default the pooler and the classifier).
function M.last_layers(model, opts)
  opts = opts or {}
  local n = opts.layers or 1
  local list = model:get(opts.encoder or "bert.encoder.layer")
  local total = list.n or #list._entries
  if type(n) ~= "number" or n < 0 or n > total or n % 1 ~= 0 then
    raise(("lora.last_layers: layers must be an integer in [0, %d], got %s"):format(total, tostring(n)))
  end
  for _, e in ipairs(model:named_parameters()) do e.tensor:requires_grad(false) end
  local patterns = {}
  for i = total - n, total - 1 do
    patterns[#patterns + 1] = "^" .. (opts.encoder or "bert.encoder.layer"):gsub("%.", "%%.") .. "%." .. i .. "%."
  end
  for _, pat in ipairs(opts.include or { "^bert%.pooler%.", "^classifier%." }) do patterns[#patterns + 1] = pat end
  return model:unfreeze(patterns)
end

return M
