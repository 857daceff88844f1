-- dp.precision.policy: a precision policy, i.e. a default rule and an ordered list of
-- (Lua pattern, rule) pairs matched against a module's full Hugging Face name; later rules
-- override earlier ones, and a partial rule changes only the fields it names.
local raise = require("dp.ffi").raise
local presets = require "dp.precision.presets"

local M = {}

local Policy = {}
Policy.__index = Policy
Policy.__name = "Policy"

local function describe_rule(spec)
  if type(spec) == "string" then return spec end
  local parts = {}
  for k, v in pairs(spec) do
    if type(v) == "table" then
      local sub = {}
      for fk, fv in pairs(v) do sub[#sub + 1] = fk .. "=" .. tostring(fv) end
      table.sort(sub)
      v = "{" .. table.concat(sub, ", ") .. "}"
    end
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Adds a rule at the end (it overrides every earlier one on the names it matches). A policy that
-- models use is live: the change reaches each module at its next call (dp.precision.apply).
function Policy:add(pattern, rule)
  local index = #self.rules + 1
  local where = ("rule %d ('%s')"):format(index, tostring(pattern))
  if type(pattern) ~= "string" then
    raise(("precision.policy: rule %d: the pattern must be a string, got %s"):format(index, type(pattern)))
  end
  local ok, err = pcall(string.find, "", pattern)
  if not ok then raise(("precision.policy: %s: malformed pattern: %s"):format(where, err)) end
  local apply = presets.compile(rule, "precision.policy", where)
  self.rules[index] = { pattern = pattern, spec = presets.copy(rule), apply = apply }
  self.resolved = {}
  self.revision = self.revision + 1
  return self
end

-- The complete rule for a module name (read-only; shared between calls).
function Policy:rule_for(name)
  name = name or ""
  local r = self.resolved[name]
  if r then return r end
  r = self.default_apply(presets.copy(presets.presets.fp32))
  for _, rule in ipairs(self.rules) do
    if name:find(rule.pattern) then r = rule.apply(r) end
  end
  r = presets.complete(r)
  self.resolved[name] = r
  return r
end

-- True when nothing computes or stores below fp32 under this policy (no casts to insert).
function Policy:all_fp32()
  local function plain(spec)
    if type(spec) == "string" then return spec == "fp32" end
    if spec.preset and spec.preset ~= "fp32" then return false end
    return (spec.params == nil or spec.params == "fp32") and (spec.compute == nil or spec.compute == "fp32")
  end
  if not plain(self.default_spec) then return false end
  for _, rule in ipairs(self.rules) do if not plain(rule.spec) then return false end end
  return true
end

function Policy:describe()
  local d = self:rule_for("")
  local lines = { ("default: %s (%s)"):format(describe_rule(self.default_spec), presets.short(d)) }
  for i, rule in ipairs(self.rules) do
    lines[#lines + 1] = ("rule %d: '%s' -> %s"):format(i, rule.pattern, describe_rule(rule.spec))
  end
  return table.concat(lines, "\n")
end

Policy.__tostring = Policy.describe

-- policy(default, rules): default is a preset name or a partial rule (over fp32; default fp32);
-- rules an array of { pattern, preset name or partial rule }.
function M.new(default, rules)
  default = default or "fp32"
  local self = setmetatable({ rules = {}, resolved = {}, revision = 0,
                              default_spec = presets.copy(default) }, Policy)
  self.default_apply = presets.compile(default, "precision.policy", "the default rule")
  if rules ~= nil and type(rules) ~= "table" then
    raise(("precision.policy: rules must be an array of { pattern, rule }, got %s"):format(type(rules)))
  end
  for i, r in ipairs(rules or {}) do
    if type(r) ~= "table" or r[1] == nil or r[2] == nil then
      raise(("precision.policy: rule %d must be { pattern, preset name or partial rule }"):format(i))
    end
    self:add(r[1], r[2])
  end
  return self
end

function M.is_policy(x) return getmetatable(x) == Policy end

M.Policy = Policy

return M
