-- dp.tensor: the tensor type seen from Lua. A tensor is a dp_tensor_ref cdata (a struct holding
-- one reference to a C dp_tensor*, dropped once the handle is collected: see dp.ffi.wrap) with a
-- metatype giving operators, methods, 1-based indexing and tostring. The raw pointer is t.ptr;
-- its C fields are read-only.
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"
local dtype = require "dp.dtype"
local F = require "dp.functional"
local V = require "dp.tensor_view"
local data = require "dp.tensor_data"
local index = require "dp.tensor_index"
local format = require "dp.tensor_format"
local memory = require "dp.memory"

local C, wrap, raise, check = dpffi.C, dpffi.wrap, dpffi.raise, dpffi.check
local ptr = args.ptr

-- One methods table per process: the metatype can be bound only once, so a second load of this
-- module (busted's insulation, package.loaded resets) refills the table the type already uses.
local registry = debug.getregistry()
local methods = registry["dp.tensor.methods"] or {}
registry["dp.tensor.methods"] = methods
for name, fn in pairs(F) do methods[name] = fn end
for name, fn in pairs(V) do methods[name] = fn end

methods.fill = F.fill_
methods.copy = F.copy_
methods.zero = function(x) return F.fill_(x, 0) end
methods.item = data.item
methods.totable = data.totable

function methods.dim(x) return ptr(x, "dim", 1).ndim end
function methods.numel(x) return tonumber(C.dp_tensor_numel(ptr(x, "numel", 1))) end
methods.nelement = methods.numel
function methods.dtype(x) return dtype.name(ptr(x, "dtype", 1).dtype) end
function methods.device(x) return dtype.device_names[tonumber(ptr(x, "device", 1).device)] end
function methods.is_contiguous(x) return C.dp_tensor_is_contiguous(ptr(x, "is_contiguous", 1)) ~= 0 end

-- size() -> {sizes}; size(dim) -> that size (dim 1-based, negative from the end).
function methods.size(x, dim)
  local p = ptr(x, "size", 1)
  if dim ~= nil then return tonumber(p.shape[args.dim(p, dim, "size")]) end
  local out = {}
  for d = 0, p.ndim - 1 do out[d + 1] = tonumber(p.shape[d]) end
  return out
end
methods.shape = methods.size

function methods.stride(x, dim)
  local p = ptr(x, "stride", 1)
  if dim ~= nil then return tonumber(p.stride[args.dim(p, dim, "stride")]) end
  local out = {}
  for d = 0, p.ndim - 1 do out[d + 1] = tonumber(p.stride[d]) end
  return out
end

-- "[2,3] f32 cpu"
function methods.desc(x) return args.desc(ptr(x, "desc", 1)) end

-- requires_grad() reads the flag; requires_grad(flag) sets it (default true) and returns x.
function methods.requires_grad(x, ...)
  local p = ptr(x, "requires_grad", 1)
  if select("#", ...) == 0 then return p.requires_grad ~= 0 end
  check(C.dp_tensor_set_requires_grad(p, (...) and 1 or 0))
  return x
end
function methods.requires_grad_(x, flag) return methods.requires_grad(x, flag == nil or flag) end

function methods.is_leaf(x) return ptr(x, "is_leaf", 1).grad_fn == nil end
function methods.op_name(x) return ffi.string(C.dp_tensor_op_name(ptr(x, "op_name", 1))) end

function methods.is_param(x, flag)
  local p = ptr(x, "is_param", 1)
  if flag == nil then return p.is_param ~= 0 end
  p.is_param = flag and 1 or 0   -- the one field Lua owns (see dp.h)
  return x
end

-- The accumulated gradient (a tensor sharing the C one), or nil.
local function grad_of(x)
  local g = x.ptr.grad
  if g == nil then return nil end
  C.dp_tensor_retain(g)
  return wrap(g)
end
methods.get_grad = grad_of

function methods.set_grad(x, g)
  check(C.dp_tensor_set_grad(ptr(x, "set_grad", 1), g ~= nil and ptr(g, "set_grad", 2) or nil))
  return x
end

function methods.zero_grad(x) return methods.set_grad(x, nil) end

-- backward(x, grad = nil, retain_graph = false); grad may be omitted for one-element roots.
function methods.backward(x, grad, retain_graph)
  check(C.dp_backward(ptr(x, "backward", 1), grad ~= nil and ptr(grad, "backward", 2) or nil,
                      retain_graph and 1 or 0))
end

-- ---------------------------------------------------------------- precision and memory
-- How many in-place writes the storage has had (views share it); bump_version() counts a write
-- made through the raw data pointer: call it before writing, since on a pinned tensor it first
-- waits for the copies to the GPU still reading it.
function methods.version(x) return tonumber(C.dp_tensor_version(ptr(x, "version", 1))) end
function methods.bump_version(x)
  C.dp_tensor_bump_version(ptr(x, "bump_version", 1))
  return x
end

-- Convert a contiguous leaf to another float dtype in place (same handle, new storage); drops its
-- .grad. Views of it that are only garbage would block it, so it collects once before giving up.
function methods.retype_(x, to)
  local p = ptr(x, "retype_", 1)
  local d = dtype.parse(to, "retype_")
  local rc = C.dp_tensor_retype_(p, d)
  if rc == C.DP_EGRAPH and p.grad_fn == nil then   -- views: perhaps only uncollected garbage
    dpffi.collect()
    rc = C.dp_tensor_retype_(p, d)
  end
  check(rc)
  return x
end

-- The memory category (dp.memory_report.names) its storage counts under; set_mem_category moves
-- the whole storage, views included.
function methods.set_mem_category(x, name)
  check(C.dp_tensor_set_mem_category(ptr(x, "set_mem_category", 1), memory.id(name, "set_mem_category")))
  return x
end
function methods.mem_category(x) return memory.name(C.dp_tensor_mem_category(ptr(x, "mem_category", 1))) end

-- Page-locked host memory (dp.h dp_tensor_empty_pinned): is_pinned() says whether x's storage is;
-- pin() gives a contiguous pinned CPU copy (x itself when already pinned), from which copies to
-- the GPU are asynchronous. Without a CUDA device it is a plain CPU copy (is_pinned() false).
function methods.is_pinned(x) return C.dp_tensor_is_pinned(ptr(x, "is_pinned", 1)) ~= 0 end
function methods.pin(x)
  local p = ptr(x, "pin", 1)
  if C.dp_tensor_is_pinned(p) ~= 0 and p.device == 0 and C.dp_tensor_is_contiguous(p) ~= 0 then return x end
  local out = wrap(C.dp_tensor_empty_pinned(p.dtype, p.ndim, p.shape))
  check(C.dp_copy_(out.ptr, p))
  return out
end

-- Drop the C reference now instead of at the next collection (device memory, big buffers).
methods.release = dpffi.release

methods.tostring = format.tostring
methods.stats = require("dp.tensor_stats").stats

local getters = { grad = grad_of }

local metatable = {
  __index = function(x, key)
    local m = methods[key]
    if m ~= nil then return m end
    local kind = type(key)
    if kind == "number" or kind == "table" then return index.get(x, key) end
    local getter = getters[key]
    if getter then return getter(x) end
    return nil
  end,
  __newindex = function(x, key, value)
    local kind = type(key)
    if kind == "number" or kind == "table" then return index.set(x, key, value) end
    if key == "grad" then return methods.set_grad(x, value) end
    raise(("tensor: cannot set field %s"):format(tostring(key)))
  end,
  __add = F.add,
  __sub = F.sub,
  __mul = F.mul,
  __div = F.div,
  __pow = F.pow_operator,
  __unm = F.neg,
  -- Identity, so that t == nil and t == u work (elementwise comparison is not an operator).
  __eq = function(a, b)
    return args.is_tensor(a) and args.is_tensor(b) and a.ptr == b.ptr
  end,
  __len = function(x)
    local p = x.ptr
    return p.ndim == 0 and 0 or tonumber(p.shape[0])
  end,
  __tostring = format.tostring,
}

if not registry["dp.tensor.bound"] then
  ffi.metatype("dp_tensor_ref", metatable)
  registry["dp.tensor.bound"] = true
end

local M = {
  methods = methods,      -- add entries here to extend the tensor type
  is_tensor = args.is_tensor,
}

-- Wrap a dp_tensor* from C, taking a new reference (for pointers the caller does not own).
function M.from_borrowed(p)
  if p == nil then return nil end
  C.dp_tensor_retain(p)
  return wrap(p)
end

return M
