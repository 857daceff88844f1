-- dp.optim.optimizer: what every optimizer shares: the parameter list and its names, lazily
-- created fp32 state (f64 for f64 params) on each param's device, step/zero_grad/set_lr, and
-- state_dict/load_state_dict. A concrete optimizer (dp.optim.sgd, dp.optim.adam) supplies a spec:
-- its hyper-parameter checks, the names of its state tensors and the C call of one update.
-- Rounding of bf16/f16/fp8 parameters (opts.rounding = "nearest" | "stochastic", opts.rounding_seed,
-- opt:set_rounding) is shared too: one Philox seed and counter per optimizer (dp_rounding in dp.h),
-- advanced by each stochastically rounded update in parameter order, saved in state_dict.
local ffi = require "ffi"
local native = require "dp.ffi"
local args = require "dp.tensor_args"
local dtype = require "dp.dtype"
local rounding = require "dp.optim.rounding"

local C, wrap, raise = native.C, native.wrap, native.raise

local M = {}

-- ---------------------------------------------------------------- hyper-parameter checks

local function finite(v) return type(v) == "number" and v == v and v > -math.huge and v < math.huge end

-- v must be a finite number in [lo, hi) (hi_open) or [lo, hi]; hi nil: no upper bound.
function M.number(fn, key, v, lo, hi, hi_open)
  local ok = finite(v) and v >= lo and (hi == nil or (hi_open and v < hi) or (not hi_open and v <= hi))
  if not ok then
    local range = hi == nil and (">= " .. lo) or ("in [%g, %g%s"):format(lo, hi, hi_open and ")" or "]")
    raise(("%s: %s must be a finite number %s, got %s"):format(fn, key, range, tostring(v)))
  end
  return v
end

function M.boolean(fn, key, v)
  if type(v) ~= "boolean" then
    raise(("%s: %s must be true or false, got %s"):format(fn, key, tostring(v)))
  end
  return v
end

-- opts with defaults filled in; unknown keys (typos) are errors.
function M.options(fn, opts, defaults, order)
  if opts ~= nil and type(opts) ~= "table" then
    raise(("%s: options must be a table, got %s"):format(fn, type(opts)))
  end
  local out = {}
  for key, value in pairs(opts or {}) do
    if defaults[key] == nil and key ~= "lr" then
      raise(("%s: unknown option %s (expected %s)"):format(fn, tostring(key), table.concat(order, ", ")))
    end
    out[key] = value
  end
  for key, value in pairs(defaults) do
    if out[key] == nil then out[key] = value end
  end
  return out
end

-- ---------------------------------------------------------------- parameters

local function check_param(fn, name, t)
  if not args.is_tensor(t) then
    raise(("%s: parameter '%s' is a %s, expected a tensor"):format(fn, name, args.describe(t)))
  end
  local p = t.ptr
  if p == nil then raise(("%s: parameter '%s' is a released tensor"):format(fn, name)) end
  if not dtype.is_float(p.dtype) then
    raise(("%s: parameter '%s' must be a float tensor, got %s"):format(fn, name, args.desc(p)))
  end
  if C.dp_tensor_is_contiguous(p) == 0 then
    raise(("%s: parameter '%s' %s must be contiguous"):format(fn, name, args.desc(p)))
  end
end

-- params: an array of tensors (named "1", "2", ...), an array of {name=, tensor=} records, or a
-- table name -> tensor (sorted by name). Returns {{name=, tensor=}, ...} in update order.
function M.collect(fn, params)
  if type(params) ~= "table" or args.is_tensor(params) then
    raise(("%s: params must be an array of tensors, an array of {name=, tensor=} or a table " ..
           "name -> tensor, got %s"):format(fn, args.describe(params)))
  end
  local entries = {}
  if #params > 0 then
    for i, item in ipairs(params) do
      if args.is_tensor(item) then
        entries[i] = { name = tostring(i), tensor = item }
      elseif type(item) == "table" and type(item.name) == "string" then
        entries[i] = { name = item.name, tensor = item.tensor }
      else
        raise(("%s: params[%d] must be a tensor or a {name=, tensor=} record, got %s")
              :format(fn, i, args.describe(item)))
      end
    end
  else
    for name, t in pairs(params) do
      if type(name) ~= "string" then
        raise(("%s: params is neither an array nor a table name -> tensor (key %s)"):format(fn, tostring(name)))
      end
      entries[#entries + 1] = { name = name, tensor = t }
    end
    table.sort(entries, function(a, b) return a.name < b.name end)
  end
  if #entries == 0 then raise(fn .. ": params is empty; give at least one tensor") end
  local seen_name, seen_ptr = {}, {}
  for _, e in ipairs(entries) do
    check_param(fn, e.name, e.tensor)
    if seen_name[e.name] then raise(("%s: two parameters are named '%s'"):format(fn, e.name)) end
    -- Empty tensors may share a NULL data pointer; they have nothing to update twice.
    local key = C.dp_tensor_numel(e.tensor.ptr) > 0 and tostring(ffi.cast("uintptr_t", e.tensor.ptr.data))
    if key and seen_ptr[key] then
      raise(("%s: parameters '%s' and '%s' are the same tensor (it would be updated twice)")
            :format(fn, seen_ptr[key], e.name))
    end
    seen_name[e.name] = true
    if key then seen_ptr[key] = e.name end
  end
  return entries
end

-- ---------------------------------------------------------------- state tensors

-- The state dtype for a param: f64 for f64 params, f32 for every other float.
local function state_dtype(p) return p.dtype == C.DP_F64 and C.DP_F64 or C.DP_F32 end

-- Zero state for t, counted in the "optimizer" memory category.
function M.zeros_like_state(t)
  local p = t.ptr
  local prev = C.dp_mem_set_category(C.DP_MEM_OPTIMIZER)
  local out = C.dp_tensor_zeros(state_dtype(p), p.device, p.ndim, p.shape)
  C.dp_mem_set_category(prev)
  return wrap(out)
end

local function same_shape(a, b)
  if a.ndim ~= b.ndim then return false end
  for d = 0, a.ndim - 1 do
    if a.shape[d] ~= b.shape[d] then return false end
  end
  return true
end

-- ---------------------------------------------------------------- the optimizer object

local Optimizer = {}
Optimizer.__index = Optimizer

-- spec: { kind, fn (for messages), state_keys = {...}, validate(fn, hyper) -> hyper,
--         update(self, entry, state, param_ptr, grad_ptr, rounding_ptr_or_nil) -> rc,
--         fused(self, entry, state, rule) -> state0, state1, commit (optional: fills the
--         dp_update_rule of the next update; commit() records it as taken) }
function M.new(spec, params, hyper)
  local self = setmetatable({ spec = spec, entries = M.collect(spec.fn, params), steps = 0 }, Optimizer)
  local rest, default_mode, seed = rounding.split(spec.fn, hyper)
  self.hyper = spec.validate(spec.fn, rest)
  self.state = {}
  self.modes = {}   -- name -> "nearest" | "stochastic"
  for _, e in ipairs(self.entries) do
    self.state[e.name] = {}
    self.modes[e.name] = default_mode
  end
  self.rounding = ffi.new("dp_rounding", { 1, seed, 0 })
  return self
end

-- Update every parameter that has a .grad. A trainable parameter (requires_grad) without one is
-- an error naming it; a frozen one without a grad is left alone. Everything is checked before
-- any parameter changes.
function Optimizer:step()
  local fn = self.spec.fn
  local todo = {}
  for _, e in ipairs(self.entries) do
    local p = e.tensor.ptr
    if p == nil then raise(("%s: parameter '%s' was released"):format(fn, e.name)) end
    local g = p.grad
    if g == nil then
      if p.requires_grad ~= 0 then
        raise(("%s: parameter '%s' %s has no gradient (run backward, or the DP engine's finish, " ..
               "before step; set requires_grad(false) to freeze it)"):format(fn, e.name, args.desc(p)))
      end
    else
      if not same_shape(p, g) or C.dp_dtype_is_float(g.dtype) == 0 or g.device ~= p.device
         or C.dp_tensor_is_contiguous(g) == 0 then
        raise(("%s: parameter '%s' %s has gradient %s; expected a contiguous float tensor of " ..
               "its shape on its device"):format(fn, e.name, args.desc(p), args.desc(g)))
      end
      todo[#todo + 1] = e
    end
  end
  self.steps = self.steps + 1
  for _, e in ipairs(todo) do
    local p = e.tensor.ptr
    local r = self.modes[e.name] == "stochastic" and self.rounding or nil
    -- A bf16/f16/fp8 gradient (plain autograd on pure low-precision weights) is widened once:
    -- the update arithmetic is f32 either way.
    local g, wide = p.grad, nil
    if g.dtype ~= C.DP_F32 and g.dtype ~= C.DP_F64 then
      wide = C.dp_cast(g, C.DP_F32)
      if wide == nil then raise(("%s: parameter '%s': %s"):format(fn, e.name, ffi.string(C.dp_last_error()))) end
      g = wide
    end
    local rc = self.spec.update(self, e, self.state[e.name], p, g, r)
    if wide ~= nil then C.dp_tensor_release(wide) end
    if rc ~= 0 then
      raise(("%s: parameter '%s': %s"):format(fn, e.name, ffi.string(C.dp_last_error())))
    end
  end
  return self
end
Optimizer.update = Optimizer.step

-- Drop every parameter's .grad.
function Optimizer:zero_grad()
  for _, e in ipairs(self.entries) do
    if e.tensor.ptr ~= nil then C.dp_tensor_set_grad(e.tensor.ptr, nil) end
  end
  return self
end

function Optimizer:params()
  local out = {}
  for i, e in ipairs(self.entries) do out[i] = e.tensor end
  return out
end

function Optimizer:names()
  local out = {}
  for i, e in ipairs(self.entries) do out[i] = e.name end
  return out
end

function Optimizer:lr() return self.hyper.lr end

function Optimizer:set_lr(lr)
  self.hyper.lr = M.number(self.spec.fn .. ":set_lr", "lr", lr, 0)
  return self
end

-- The entry of a parameter given as its tensor or its name.
local function entry_of(self, fn, param)
  for _, e in ipairs(self.entries) do
    if e.name == param or (args.is_tensor(param) and param.ptr ~= nil and e.tensor.ptr == param.ptr) then
      return e
    end
  end
  raise(("%s: %s is not one of this optimizer's parameters"):format(fn, args.describe(param)), 3)
end

-- How param's updates are rounded into its dtype (bf16/f16/fp8; f32 and f64 ignore it).
function Optimizer:set_rounding(param, how)
  local fn = self.spec.fn .. ":set_rounding"
  local e = entry_of(self, fn, param)
  self.modes[e.name] = rounding.mode(fn, how)
  return self
end

function Optimizer:rounding_of(param)
  return self.modes[entry_of(self, self.spec.fn .. ":rounding_of", param).name]
end

-- Steps taken (calls of step()).
function Optimizer:step_count() return self.steps end

-- ---------------------------------------------------------------- the fused end of a DP step

-- The next update of param (tensor or name) for the DP engine to run fused with its noise
-- (Engine:finish_update): a dp_update_rule, the state tensors (state0, state1 or nil; created now
-- if this is the parameter's first update), the rounding (self.rounding, or nil: nearest) and
-- commit(), to call once the update is done so that the optimizer counts it as step() would
-- (momentum's first step, Adam's step count). nil when this optimizer has no fused form.
function Optimizer:fused_update_args(param)
  if not self.spec.fused then return nil end
  local e = entry_of(self, self.spec.fn .. ":fused_update_args", param)
  local rule = ffi.new("dp_update_rule")
  local s0, s1, commit = self.spec.fused(self, e, self.state[e.name], rule)
  return rule, s0, s1, self.modes[e.name] == "stochastic" and self.rounding or nil, commit
end

-- Count a step whose updates ran fused (step() counts its own calls).
function Optimizer:count_step()
  self.steps = self.steps + 1
  return self
end

local function copy_table(t)
  local out = {}
  for k, v in pairs(t) do out[k] = type(v) == "table" and copy_table(v) or v end
  return out
end

-- A plain table: { kind =, step =, hyper = {...}, state = { [name] = { key = tensor | number } } }.
-- The tensors are copies, so later steps do not change a saved dict.
function Optimizer:state_dict()
  local state = {}
  for _, e in ipairs(self.entries) do
    local s = {}
    for key, v in pairs(self.state[e.name]) do
      s[key] = args.is_tensor(v) and wrap(C.dp_clone(v.ptr)) or v
    end
    state[e.name] = s
  end
  return { kind = self.spec.kind, step = self.steps, hyper = copy_table(self.hyper), state = state,
           rounding = rounding.dump(self.rounding, self.modes) }
end


-- Restore a state_dict: kind, parameter names and state shapes must match; tensors are copied
-- onto each parameter's device in its state dtype. Nothing changes unless all of it is valid.
function Optimizer:load_state_dict(t)
  local fn = self.spec.fn .. ":load_state_dict"
  if type(t) ~= "table" then raise(("%s: expected a table from state_dict, got %s"):format(fn, type(t))) end
  if t.kind ~= self.spec.kind then
    raise(("%s: the state is for %s, this optimizer is %s"):format(fn, tostring(t.kind), self.spec.kind))
  end
  local steps = t.step
  if type(steps) ~= "number" or steps < 0 or steps % 1 ~= 0 then
    raise(("%s: step must be an integer >= 0, got %s"):format(fn, tostring(steps)))
  end
  if type(t.hyper) ~= "table" then raise(("%s: hyper must be a table, got %s"):format(fn, type(t.hyper))) end
  local hyper = self.spec.validate(fn, copy_table(t.hyper))
  if type(t.state) ~= "table" then raise(("%s: state must be a table, got %s"):format(fn, type(t.state))) end
  for name in pairs(t.state) do
    if self.state[name] == nil then
      raise(("%s: the state has parameter '%s', which this optimizer does not have (it has %s)")
            :format(fn, tostring(name), table.concat(self:names(), ", ")))
    end
  end
  local new_state = {}
  for _, e in ipairs(self.entries) do
    local saved = t.state[e.name]
    if saved == nil then
      raise(("%s: the state has no entry for parameter '%s'"):format(fn, e.name))
    end
    local s, p = {}, e.tensor.ptr
    for key, v in pairs(saved) do
      local kind = self.spec.state_keys[key]
      if kind == nil then
        raise(("%s: parameter '%s': unknown state %s"):format(fn, e.name, tostring(key)))
      elseif kind == "tensor" then
        if not args.is_tensor(v) or v.ptr == nil then
          raise(("%s: parameter '%s': %s must be a tensor, got %s"):format(fn, e.name, key, args.describe(v)))
        end
        if not same_shape(v.ptr, p) or v.ptr.dtype ~= state_dtype(p) then
          raise(("%s: parameter '%s': %s is %s, expected its shape in %s (the parameter is %s)")
                :format(fn, e.name, key, args.desc(v.ptr), dtype.name(state_dtype(p)), args.desc(p)))
        end
        local copy = M.zeros_like_state(e.tensor)
        native.check(C.dp_copy_(copy.ptr, v.ptr))
        s[key] = copy
      else   -- a count
        if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then
          raise(("%s: parameter '%s': %s must be an integer >= 0, got %s"):format(fn, e.name, key, tostring(v)))
        end
        s[key] = v
      end
    end
    if self.spec.check_state then self.spec.check_state(fn, e.name, s, hyper) end
    new_state[e.name] = s
  end
  local r = rounding.load(fn, t.rounding, self.modes)
  self.hyper, self.steps, self.state = hyper, steps, new_state
  if r then self.rounding.seed, self.rounding.counter, self.modes = r.seed, r.counter, r.modes end
  return self
end

return M
