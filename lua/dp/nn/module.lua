-- dp.nn.module: the Module base class. A module holds parameters and child modules in insertion
-- order under names, so that every parameter has a full dotted name (as in PyTorch / Hugging Face
-- state dicts) that freezing, LoRA and precision policies address by Lua pattern.
local raise = require("dp.ffi").raise
local dp = require "dp"
local precision = require "dp.precision.apply"
local weights = require "dp.precision.weights"

local M = {}

local Module = {}
Module.__index = Module
Module.__name = "Module"

-- Metamethods are not found through __index, so every class gets its own copies. Under a
-- precision policy the call casts float arguments to the module's compute dtype first.
local function call(self, ...)
  local st = self._precision
  if st == nil then return self:forward(...) end
  return precision.call(self, st, ...)
end
local function tostr(self) return self.__name end

-- M.class(name, parent): a new class; instances are made with Class.new(...) which calls
-- Class.init(self, ...) on a fresh module.
function M.class(name, parent)
  parent = parent or Module
  local cls = setmetatable({}, { __index = parent })
  cls.__index = cls
  cls.__name = name
  cls.__call = call
  cls.__tostring = tostr
  cls.new = function(...)
    local self = setmetatable({ _entries = {}, _params = {}, _modules = {}, training = true }, cls)
    if cls.init then cls.init(self, ...) end
    return self
  end
  return cls
end

local function check_name(self, name, what)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    raise(("%s.%s: the name must be a non-empty string without dots, got %s")
          :format(self.__name, what, tostring(name)))
  end
  if self._params[name] or self._modules[name] then
    raise(("%s.%s: '%s' is already registered"):format(self.__name, what, name))
  end
end

-- Registers tensor as parameter `name` (marked is_param and requires_grad); also self[name].
function Module:add_parameter(name, tensor)
  check_name(self, name, "add_parameter")
  if not dp.is_tensor(tensor) then
    raise(("%s.add_parameter: '%s' must be a tensor"):format(self.__name, name))
  end
  tensor:is_param(true)
  tensor:requires_grad(true)
  weights.tag(tensor, "parameters")
  self._params[name] = tensor
  self._entries[#self._entries + 1] = { kind = "param", name = name }
  self[name] = tensor
  return tensor
end

-- The tensor this module computes with for parameter `name` (nil if absent): the parameter
-- itself, or its low-precision copy when a precision policy says so (dp.precision).
function Module:param(name)
  local st = self._precision
  if st == nil then return self._params[name] end
  return precision.param(self, st, name)
end

-- The dtype name this module's own ops compute in under its precision rule ("bf16", ...; fp8
-- rules: "bf16"), or nil when no policy casts anything (inputs keep their dtype).
function Module:compute_dtype()
  local st = self._precision
  return st and st.boundary or nil
end

-- The precision policy put on this model with dp.precision.apply (nil if none).
function Module:precision_policy()
  return self._precision_policy or (self._precision and self._precision.policy)
end

-- The resolved precision rule of the module (or of a parameter's module) at a dotted name; nil
-- when no policy was applied.
function Module:precision_of(name)
  local node = (name == nil or name == "") and self or self:get(name)
  if dp.is_tensor(node) then
    local owner = name:match("^(.*)%.[^.]+$")
    node = owner and self:get(owner) or self
  end
  precision.sync(self)
  return node._precision and node._precision.rule or nil
end

-- Registers a child module under `name`; also self[name].
function Module:add_module(name, module)
  check_name(self, name, "add_module")
  if getmetatable(module) == nil or type(module.named_parameters) ~= "function" then
    raise(("%s.add_module: '%s' must be a module"):format(self.__name, name))
  end
  self._modules[name] = module
  self._entries[#self._entries + 1] = { kind = "module", name = name }
  self[name] = module
  return module
end

-- Unregisters child module `name` (LoRA merging removes its adapters this way); returns it.
function Module:remove_module(name)
  local child = self._modules[name]
  if not child then raise(("%s.remove_module: no child module '%s'"):format(self.__name, tostring(name))) end
  for k, e in ipairs(self._entries) do
    if e.kind == "module" and e.name == name then table.remove(self._entries, k); break end
  end
  self._modules[name], self[name] = nil, nil
  return child
end

function Module:forward()
  raise(self.__name .. ".forward: not implemented")
end

local function join(prefix, name) return prefix == "" and name or prefix .. "." .. name end

-- Own parameters first, then each child's, in insertion order (PyTorch's order).
local function collect(self, prefix, out)
  for _, e in ipairs(self._entries) do
    if e.kind == "param" then
      out[#out + 1] = { name = join(prefix, e.name), tensor = self._params[e.name], module = self }
    end
  end
  for _, e in ipairs(self._entries) do
    if e.kind == "module" then collect(self._modules[e.name], join(prefix, e.name), out) end
  end
  return out
end

-- Array of { name =, tensor =, module = } with full dotted names, in a deterministic order.
function Module:named_parameters(prefix) return collect(self, prefix or "", {}) end

function Module:parameters()
  local out = {}
  for k, e in ipairs(self:named_parameters()) do out[k] = e.tensor end
  return out
end

-- Array of { name =, module = }: this module (name "") then its descendants, depth first.
function Module:named_modules(prefix, out)
  prefix, out = prefix or "", out or {}
  out[#out + 1] = { name = prefix, module = self }
  for _, e in ipairs(self._entries) do
    if e.kind == "module" then self._modules[e.name]:named_modules(join(prefix, e.name), out) end
  end
  return out
end

-- The module or parameter at a dotted name ("encoder.layer.3.attention"); an error names the
-- first part that is missing.
function Module:get(name)
  local node, walked = self, ""
  for part in tostring(name):gmatch("[^.]+") do
    if dp.is_tensor(node) or not (node._modules[part] or node._params[part]) then
      raise(("%s.get: no module or parameter '%s' in '%s'"):format(self.__name, part,
            walked == "" and "(root)" or walked))
    end
    node = node._modules[part] or node._params[part]
    walked = join(walked, part)
  end
  return node
end

function Module:num_parameters(opts)
  local only = opts and opts.trainable_only
  local n = 0
  for _, e in ipairs(self:named_parameters()) do
    if not only or e.tensor:requires_grad() then n = n + e.tensor:numel() end
  end
  return n
end

-- Sets requires_grad on every parameter whose full name matches one of the patterns; a pattern
-- that matches nothing is an error (a typo would otherwise silently train or freeze the wrong set).
local function set_trainable(self, patterns, flag, what)
  if type(patterns) == "string" then patterns = { patterns } end
  if type(patterns) ~= "table" or #patterns == 0 then
    raise(("%s.%s: patterns must be a Lua pattern or a non-empty list of them"):format(self.__name, what))
  end
  local params, hit = self:named_parameters(), {}
  for _, pat in ipairs(patterns) do
    if type(pat) ~= "string" then
      raise(("%s.%s: pattern %s is not a string"):format(self.__name, what, tostring(pat)))
    end
    local matched = 0
    for k, e in ipairs(params) do
      local ok, found = pcall(string.find, e.name, pat)
      if not ok then
        raise(("%s.%s: malformed pattern '%s': %s"):format(self.__name, what, pat, found))
      end
      if found then matched = matched + 1; hit[k] = true end
    end
    if matched == 0 then
      raise(("%s.%s: pattern '%s' matches no parameter"):format(self.__name, what, pat))
    end
  end
  local count = 0
  for k in pairs(hit) do params[k].tensor:requires_grad(flag); count = count + 1 end
  return count
end

function Module:freeze(patterns) return set_trainable(self, patterns, false, "freeze") end
function Module:unfreeze(patterns) return set_trainable(self, patterns, true, "unfreeze") end

-- { name =, tensor = } of the parameters with requires_grad, for optimizers and dp.private.
function Module:trainable()
  local out = {}
  for _, e in ipairs(self:named_parameters()) do
    if e.tensor:requires_grad() then out[#out + 1] = { name = e.name, tensor = e.tensor } end
  end
  return out
end

-- Training mode (dropout on) for this module and all descendants.
function Module:train(flag)
  if flag == nil then flag = true end
  for _, m in ipairs(self:named_modules()) do m.module.training = flag and true or false end
  return self
end

function Module:eval() return self:train(false) end

-- Moves every parameter and the tensors kept beside them (buffers, caches) to device ("cuda",
-- "cpu" or "auto"), in place, and returns self: dp.device.move_module with this module's name
-- in the errors. Tensors already there keep their handles; moved ones get new handles (tied
-- weights stay tied), so move before building optimizers, dp.private or a precision policy.
function Module:to(device)
  local device_mod = require "dp.device"
  local where = ("%s:to(%s)"):format(self.__name, tostring(device))
  if device ~= "cuda" and device ~= "cpu" and device ~= "auto" then
    raise(("%s: unknown device %s (expected cuda, cpu or auto)"):format(where, tostring(device)))
  end
  if device == "cuda" and not device_mod.cuda_available() then
    raise(("%s: cannot move %s to cuda: no CUDA device is usable (%s)")
          :format(where, self.__name, device_mod.unavailable_reason()))
  end
  local ok, err = pcall(device_mod.move_module, self, device)
  if not ok then raise(("%s: %s"):format(where, (tostring(err):gsub("^.-:%d+: ", "")))) end
  return self
end

-- The parameter table with precision and memory (dp.nn.summary).
function Module:summary() return require("dp.nn.summary")(self) end

M.Module = Module

-- ModuleList: children named "0", "1", ...; list[i] (1-based) is also the child named i - 1.
local ModuleList = M.class("ModuleList")

function ModuleList:init(modules)
  self.n = 0
  for _, m in ipairs(modules or {}) do self:append(m) end
end

function ModuleList:append(module)
  self:add_module(tostring(self.n), module)
  self.n = self.n + 1
  self[self.n] = module
  return self
end

function ModuleList:forward()
  raise("ModuleList.forward: a list has no forward; iterate over it")
end

M.ModuleList = ModuleList

return M
