-- dp.precision.apply: puts a policy on a module tree. Each module gets a precision state (its
-- rule, the dtype its arguments are cast to at its boundary, its parameters' low-precision
-- copies); parameters are stored as the rule says (in place, so DP-engine registrations and
-- optimizer state stay valid). Applying again, or adding a rule to the applied policy, changes
-- the model at its next call: no rebuild, no restart.
local raise = require("dp.ffi").raise
local dp = require "dp"
local dtype = require "dp.dtype"
local presets = require "dp.precision.presets"
local policy_mod = require "dp.precision.policy"
local weights = require "dp.precision.weights"
local fp8 = require "dp.precision.fp8"

local M = {}

local function to_policy(p)
  if policy_mod.is_policy(p) then return p end
  if type(p) == "string" then return policy_mod.new(p) end
  if type(p) == "table" and (p.default ~= nil or p.rules ~= nil) then
    for k in pairs(p) do
      if k ~= "default" and k ~= "rules" then
        raise(("precision.apply: unknown key '%s' beside default/rules (expected { default =, rules = })")
              :format(tostring(k)))
      end
    end
    return policy_mod.new(p.default, p.rules)
  end
  if type(p) == "table" then return policy_mod.new(p) end
  raise(("precision.apply: expected a policy, a preset name or a rule table, got %s"):format(type(p)))
end

-- (Re)resolves module m, named name, under policy. Parameters change dtype in place when the rule
-- stores them differently: fp32 -> bf16 -> fp32 is lossy (bf16 keeps 8 significant bits), so going
-- back to fp32 after a pure-bf16 phase does not restore the old values.
function M.resolve(m, name, policy)
  local rule = policy:rule_for(name)
  local st = m._precision or { copies = {} }
  st.policy, st.revision, st.rule, st.name = policy, policy.revision, rule, name
  local compute = presets.compute_dtype[rule.compute]
  st.boundary = not policy:all_fp32() and compute or nil
  st.boundary_id = st.boundary and dtype.parse(st.boundary) or nil
  local is_fp8 = rule.compute == "fp8" and m.fp8_weights ~= nil
  st.fp8 = is_fp8 and fp8.state(rule.fp8, st.fp8) or nil
  local store = presets.storage_dtype[rule.params]
  local copies = {}
  for _, e in ipairs(m._entries) do
    if e.kind == "param" then
      local t = m._params[e.name]
      if dtype.is_float(t.ptr.dtype) then
        if t:dtype() ~= store then
          -- A stale copy may share nothing with t, but t:grad is dropped by retype_.
          t:retype_(store)
        end
        local quantised = is_fp8 and m.fp8_weights[e.name]
        if quantised or compute ~= store then
          copies[e.name] = weights.entry(st.copies[e.name], t, compute, quantised and "fp8" or "cast",
                                         quantised and st.fp8 or nil)
          weights.tag(t, "master")
        else
          weights.tag(t, "parameters")
        end
      end
    end
  end
  st.copies = copies
  m._precision = st
  return st
end

-- Puts policy_or_preset on every module of model; returns model.
function M.apply(model, p)
  if type(model) ~= "table" or type(model.named_modules) ~= "function" then
    raise("precision.apply: argument 1 must be a dp.nn module")
  end
  local policy = to_policy(p)
  model._precision_policy = policy
  for _, e in ipairs(model:named_modules()) do M.resolve(e.module, e.name, policy) end
  return model
end

-- Re-resolves the modules whose policy gained rules since they were resolved.
function M.sync(model)
  for _, e in ipairs(model:named_modules()) do
    local st = e.module._precision
    if st and st.revision ~= st.policy.revision then M.resolve(e.module, st.name, st.policy) end
  end
end

-- Module.__call under a policy: re-resolve if stale, cast float tensor arguments to the module's
-- compute dtype (fp8: bf16), call forward. Outputs are not cast: the next module's boundary does
-- it, and a container's own ops mix dtypes through the core's promotion.
function M.call(m, st, ...)
  if st.revision ~= st.policy.revision then st = M.resolve(m, st.name, st.policy) end
  local id = st.boundary_id
  if id == nil then return m:forward(...) end
  local n = select("#", ...)
  local a = { ... }
  for i = 1, n do
    local x = a[i]
    if dp.is_tensor(x) then
      local p = x.ptr
      if p.dtype ~= id and dtype.is_float(p.dtype) then a[i] = x:cast(id) end
    end
  end
  return m:forward(unpack(a, 1, n))
end

-- The tensor module m computes with for its parameter `name` (nil if it has none).
function M.param(m, st, name)
  local e = st.copies[name]
  local t = m._params[name]
  if e == nil or t == nil then return t end
  return weights.get(e, t)
end

-- { name =, tensor =, rule = } for every parameter, rule being its module's (nil if the model has
-- no policy).
function M.param_rules(model)
  M.sync(model)
  local out = {}
  for _, e in ipairs(model:named_parameters()) do
    local st = e.module._precision
    out[#out + 1] = { name = e.name, tensor = e.tensor, rule = st and st.rule or nil }
  end
  return out
end

function M.needs_loss_scaling(model)
  M.sync(model)
  for _, e in ipairs(model:named_modules()) do
    local st = e.module._precision
    if st and st.rule.compute == "f16" then return true end
  end
  return false
end

-- Per parameter with a copy: { refreshes =, dtype =, bytes =, kind = } by full name.
function M.copy_stats(model)
  local out = {}
  for _, e in ipairs(model:named_modules()) do
    local st = e.module._precision
    for pname, c in pairs(st and st.copies or {}) do
      out[(e.name == "" and "" or e.name .. ".") .. pname] =
        { refreshes = c.refreshes, dtype = c.dtype, bytes = weights.bytes(c), kind = c.kind }
    end
  end
  return out
end

return M
