-- dp.precision.fp8: emulated fp8 Linear layers (e4m3 forward, e5m2 gradients) and their scales.
--
-- A Linear whose rule computes in fp8 multiplies quantised values and accumulates in f32, as an
-- fp8 tensor core does (Micikevicius et al. 2022, "FP8 formats for deep learning"): the weight
-- copy holds e4m3 values (refreshed only when the master changes), the input x is quantised to
-- e4m3 and the gradient arriving at the output to e5m2. Around the GEMM the layer runs in bf16.
--
-- Scales. Weights: one per tensor, from the amax history of the weight (length fp8.history,
-- scale = fp8_scale_for(max of history, margin)); weights are public (the noisy update made
-- them), so history is harmless. Activations and output gradients: "delayed" scaling keeps one
-- scale per tensor from an amax history, as Transformer Engine does. Under DP-SGD that is wrong
-- twice over: a scale computed from the whole batch makes the rounding of example i depend on the
-- other examples, which breaks the per-example sensitivity bound the clipping argument rests on,
-- and a history of amaxes of private activations is private state that no noise covers. So with
-- scaling = "auto" (the default), while a DP engine is active (dp_psg_active() ~= NULL) every
-- example gets its own just-in-time scale from its own amax (scale shape (B)), and no history of
-- activations or gradients is kept; without an engine, "auto" is delayed scaling. "delayed" and
-- "per_example" force one or the other ("delayed" under an engine is not differentially private).
local dp = require "dp"
local C = require("dp.ffi").C

local M = {}

-- Per-module state for the rule's fp8 settings; histories survive a re-apply with equal settings.
function M.state(cfg, old)
  if old and old.history == cfg.history and old.margin == cfg.margin and old.scaling == cfg.scaling then
    return old
  end
  return { history = cfg.history, margin = cfg.margin, scaling = cfg.scaling,
           w_amax = {}, x_amax = {}, g_amax = {}, pending_g = nil }
end

local function push(list, n, v)
  if v ~= v then return end   -- NaN: ignore, as the quantiser does
  list[#list + 1] = v
  if #list > n then table.remove(list, 1) end
end

local function history_max(list)
  local m = 0
  for _, v in ipairs(list) do if v > m then m = v end end
  return m
end

local function scale_tensor(s) return dp.tensor({ s }, "f32") end

-- Weight scale (1): records the weight's amax now, then the scale from the history.
function M.weight_scale(st, w)
  local amax = dp.no_grad(function() return w:abs():max():item() end)
  push(st.w_amax, st.history, amax)
  return scale_tensor(dp.fp8_scale_for(history_max(st.w_amax), "fp8_e4m3", st.margin))
end

-- Whether activations/gradients get per-example just-in-time scales now.
function M.per_example(st)
  if st.scaling == "per_example" then return true end
  if st.scaling == "delayed" then return false end
  return C.dp_psg_active() ~= nil
end

-- The gradient amax recorded by the previous backward (if one ran) joins the history.
local function consume_grad_amax(st)
  local t = st.pending_g
  if t == nil then return end
  st.pending_g = nil
  local v = t:item()
  if v >= 0 then push(st.g_amax, st.history, v) end
end

-- (scale, amax_out, just_in_time) for delayed scaling from a history; the first use (empty
-- history) measures the tensor itself.
local function delayed(list, dtype, margin)
  local amax = dp.full({ 1 }, -1, { dtype = "f32" })
  if #list == 0 then return dp.ones({ 1 }, { dtype = "f32" }), amax, true end
  return scale_tensor(dp.fp8_scale_for(history_max(list), dtype, margin)), amax, false
end

-- y = x W^T + b in emulated fp8 for Linear `m` whose precision state is st (x: (B, ..., in)).
-- weight: the module's e4m3 weight copy; bias: its bf16 copy (or nil).
function M.linear(st, x, weight, bias)
  consume_grad_amax(st)
  local xq, y
  if M.per_example(st) then
    local B = x:size(1)
    xq = dp.fake_quant(x, "fp8_e4m3", dp.ones({ B }, { dtype = "f32" }), nil, true)
    y = dp.linear(xq, weight, bias)
    return dp.grad_quant(y, "fp8_e5m2", dp.ones({ B }, { dtype = "f32" }), nil, true)
  end
  local xs, xa, xjit = delayed(st.x_amax, "fp8_e4m3", st.margin)
  xq = dp.fake_quant(x, "fp8_e4m3", xs, xa, xjit)
  push(st.x_amax, st.history, xa:item())
  y = dp.linear(xq, weight, bias)
  local gs, ga, gjit = delayed(st.g_amax, "fp8_e5m2", st.margin)
  st.pending_g = ga
  return dp.grad_quant(y, "fp8_e5m2", gs, ga, gjit)
end

return M
