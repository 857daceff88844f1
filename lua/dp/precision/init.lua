-- dp.precision: which dtype each module stores its parameters in and computes with, as a policy
-- of (module-name pattern, rule) pairs over presets (fp32, bf16, mixed-bf16, mixed-f16, fp8), put
-- on a model with apply() and changeable at any time (the next forward follows it).
--
--   local policy = dp.precision.policy("mixed-bf16", {
--     { "LayerNorm", "fp32" }, { "embeddings", "fp32" }, { "^classifier$", "fp32" } })
--   dp.precision.apply(model, policy)
local presets = require "dp.precision.presets"
local policy = require "dp.precision.policy"
local apply = require "dp.precision.apply"

local M = {}

M.presets = presets.presets
M.policy = policy.new
M.is_policy = policy.is_policy
M.apply = apply.apply
M.param_rules = apply.param_rules
M.needs_loss_scaling = apply.needs_loss_scaling
M.copy_stats = apply.copy_stats
M.short = presets.short

return M
