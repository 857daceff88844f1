-- dp.precision.presets: the named precision rules and the checks that turn a preset name or a
-- partial rule into a complete rule, with errors that say which rule, which field and what fits.
local raise = require("dp.ffi").raise

local M = {}

-- A rule: params = how parameters are stored, compute = the dtype a module's ops run in (fp8: the
-- Linear GEMM inputs are quantised, everything around them runs in bf16), loss_scale ("dynamic" for
-- f16, whose range is too small for raw gradients), stochastic_rounding (optimizer steps into
-- low-precision parameters), fp8 = { history, margin, scaling } (see dp.precision.fp8).
M.presets = {
  fp32 = { params = "fp32", compute = "fp32", stochastic_rounding = false },
  bf16 = { params = "bf16", compute = "bf16", stochastic_rounding = false },
  ["mixed-bf16"] = { params = "fp32", compute = "bf16", stochastic_rounding = false },
  ["mixed-f16"] = { params = "fp32", compute = "f16", loss_scale = "dynamic", stochastic_rounding = false },
  fp8 = { params = "fp32", compute = "fp8", stochastic_rounding = false,
          fp8 = { history = 16, margin = 0, scaling = "auto" } },
}

M.fp8_defaults = { history = 16, margin = 0, scaling = "auto" }

-- Rule value names -> dp dtype names (fp8 computes around its GEMMs in bf16).
M.storage_dtype = { fp32 = "f32", bf16 = "bf16", f16 = "f16" }
M.compute_dtype = { fp32 = "f32", bf16 = "bf16", f16 = "f16", fp8 = "bf16" }

local choices = {
  params = { "fp32", "bf16", "f16" },
  compute = { "fp32", "bf16", "f16", "fp8" },
  scaling = { "auto", "delayed", "per_example" },
}
local fields = { "preset", "params", "compute", "loss_scale", "stochastic_rounding", "fp8" }
local fp8_fields = { "history", "margin", "scaling" }

local function sorted_names()
  local names = {}
  for k in pairs(M.presets) do names[#names + 1] = k end
  table.sort(names)
  return names
end

local function one_of(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = copy(v) end
  return out
end
M.copy = copy

-- where: "rule 2 ('LayerNorm')" or "the default rule", for messages.
local function preset(name, who, where)
  local p = M.presets[name]
  if not p then
    raise(("%s: %s: unknown preset '%s' (expected one of %s)")
          :format(who, where, tostring(name), table.concat(sorted_names(), ", ")))
  end
  return copy(p)
end

local function check_fp8(fp8, who, where)
  if type(fp8) ~= "table" then
    raise(("%s: %s: field 'fp8' must be a table { history =, margin =, scaling = }, got %s")
          :format(who, where, tostring(fp8)))
  end
  for k, v in pairs(fp8) do
    if not one_of(fp8_fields, k) then
      raise(("%s: %s: unknown field 'fp8.%s' (expected %s)"):format(who, where, tostring(k),
            table.concat(fp8_fields, ", ")))
    end
    local ok
    if k == "history" then ok = type(v) == "number" and v >= 1 and v % 1 == 0
    elseif k == "margin" then ok = type(v) == "number" and v >= 0 and v % 1 == 0
    else ok = one_of(choices.scaling, v) end
    if not ok then
      local want = k == "history" and "a positive integer" or k == "margin" and "an integer >= 0"
                   or table.concat(choices.scaling, ", ")
      raise(("%s: %s: field 'fp8.%s' is %s, expected %s"):format(who, where, k, tostring(v), want))
    end
  end
end

-- Checks a partial rule (a table of some fields) and returns a copy of it.
local function check_partial(rule, who, where)
  for k, v in pairs(rule) do
    if not one_of(fields, k) then
      raise(("%s: %s: unknown field '%s' (expected %s)"):format(who, where, tostring(k), table.concat(fields, ", ")))
    end
    if choices[k] and not one_of(choices[k], v) then
      raise(("%s: %s: field '%s' is %s, expected one of %s"):format(who, where, k, tostring(v),
            table.concat(choices[k], ", ")))
    elseif k == "loss_scale" and v ~= "dynamic" and v ~= false then
      raise(("%s: %s: field 'loss_scale' is %s, expected \"dynamic\" or false"):format(who, where, tostring(v)))
    elseif k == "stochastic_rounding" and type(v) ~= "boolean" then
      raise(("%s: %s: field 'stochastic_rounding' is %s, expected true or false"):format(who, where, tostring(v)))
    elseif k == "fp8" then
      check_fp8(v, who, where)
    elseif k == "preset" then
      preset(v, who, where)
    end
  end
  return copy(rule)
end

-- A rule given as a preset name or a partial table, checked; returns a function that applies it
-- to a complete rule (a preset replaces it, a partial one overrides only the fields it names;
-- a partial one with preset = name starts from that preset).
function M.compile(rule, who, where)
  if type(rule) == "string" then
    local p = preset(rule, who, where)
    return function() return copy(p) end
  end
  if type(rule) ~= "table" then
    raise(("%s: %s: expected a preset name or a table of fields, got %s"):format(who, where, type(rule)))
  end
  local partial = check_partial(rule, who, where)
  return function(base)
    local out = partial.preset and copy(M.presets[partial.preset]) or copy(base)
    for k, v in pairs(partial) do
      if k == "fp8" then
        out.fp8 = out.fp8 or copy(M.fp8_defaults)
        for fk, fv in pairs(v) do out.fp8[fk] = fv end
      elseif k ~= "preset" then
        out[k] = copy(v)
      end
    end
    return out
  end
end

-- Fills what a complete rule always has (fp8 settings, false flags).
function M.complete(rule)
  rule.fp8 = rule.fp8 or copy(M.fp8_defaults)
  for k, v in pairs(M.fp8_defaults) do if rule.fp8[k] == nil then rule.fp8[k] = v end end
  if rule.stochastic_rounding == nil then rule.stochastic_rounding = false end
  if rule.loss_scale == nil then rule.loss_scale = false end
  return rule
end

-- "fp32>bf16" (stored > compute) or "bf16" when both are the same.
function M.short(rule)
  if rule.params == rule.compute then return rule.params end
  return rule.params .. ">" .. rule.compute
end

return M
