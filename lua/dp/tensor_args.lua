-- dp.tensor_args: checks and converts Lua arguments for the C API: tensor handles to pointers,
-- 1-based (or negative) dims and indices to 0-based ones, shapes to int64 arrays.
local ffi = require "ffi"
local dpffi = require "dp.ffi"

local C, raise, ref_type = dpffi.C, dpffi.raise, dpffi.ref_type
local istype = ffi.istype

local M = {}

local function describe(x)
  if type(x) == "cdata" then return tostring(ffi.typeof(x)) end
  return type(x)
end
M.describe = describe

-- "[2,3] f32 cpu" of a raw pointer.
function M.desc(p) return ffi.string(C.dp_tensor_desc(p)) end

function M.is_tensor(x) return istype(ref_type, x) end

-- The dp_tensor* behind a handle; argument i of op in errors.
function M.ptr(x, op, i)
  if istype(ref_type, x) then
    local p = x.ptr
    if p ~= nil then return p end
    raise(("%s: argument %d is a released tensor"):format(op, i))
  end
  raise(("%s: argument %d is a %s, expected a tensor"):format(op, i, describe(x)))
end

-- Like ptr, but nil passes through as NULL (optional tensors such as a bias).
function M.optional(x, op, i)
  if x == nil then return nil end
  return M.ptr(x, op, i)
end

local function integer(v, op, what)
  if type(v) ~= "number" or v % 1 ~= 0 then
    raise(("%s: %s must be an integer, got %s"):format(op, what, tostring(v)))
  end
  return v
end
M.integer = integer

-- Lua dim (1..ndim, or -ndim..-1 from the end) -> C dim (0..ndim-1). extra = 1 allows ndim+1
-- (unsqueeze inserts after the last dim).
function M.dim(p, d, op, extra)
  local n = p.ndim + (extra or 0)
  integer(d, op, "dim")
  local c = d > 0 and d - 1 or n + d
  if d == 0 or c < 0 or c >= n then
    if n == 0 then
      raise(("%s: dim %d out of range for the 0-d tensor %s"):format(op, d, M.desc(p)))
    end
    raise(("%s: dim %d out of range for %s (dims are 1..%d, or -%d..-1 from the end)")
          :format(op, d, M.desc(p), n, n))
  end
  return c
end

-- Lua index (1..size, or -size..-1 from the end) along C dim c -> 0-based index.
function M.index(p, c, i, op)
  local size = tonumber(p.shape[c])
  integer(i, op, "index")
  local k = i > 0 and i - 1 or size + i
  if i == 0 or k < 0 or k >= size then
    raise(("%s: index %d out of range for dim %d of size %d in %s (indices are 1..%d, or " ..
           "negative from the end)"):format(op, i, c + 1, size, M.desc(p), size))
  end
  return k
end

-- Scratch arrays reused across calls: C copies what it needs before returning.
local shape_buf = ffi.new("int64_t[8]")
local dims_buf = ffi.new("int32_t[8]")

-- A shape given as a table ({2, 3}) or as numbers (2, 3) starting at argument i of the varargs.
-- Returns ndim, an int64_t[8] (scratch), and the first argument after the shape.
function M.shape(op, ...)
  local first = ...
  local n, rest = 0, nil
  if type(first) == "table" and not istype(ref_type, first) then
    n = #first
    if n > 8 then raise(("%s: at most 8 dims, got %d"):format(op, n)) end
    for k = 1, n do
      shape_buf[k - 1] = integer(first[k], op, "size")
    end
    rest = select(2, ...)
  else
    local args = { ... }
    local count = select("#", ...)
    local k = 1
    while k <= count and type(args[k]) == "number" do
      if n >= 8 then raise(("%s: at most 8 dims"):format(op)) end
      shape_buf[n] = integer(args[k], op, "size")
      n, k = n + 1, k + 1
    end
    rest = args[k]
  end
  return n, shape_buf, rest
end

-- C dims (int32_t[], scratch) for dims given as nil (all), a number or a table of numbers.
function M.dims(p, dims, op)
  if dims == nil then return 0, nil end
  if type(dims) == "number" then
    dims_buf[0] = M.dim(p, dims, op)
    return 1, dims_buf
  end
  if type(dims) ~= "table" then
    raise(("%s: dims must be a number or a table of numbers, got %s"):format(op, describe(dims)))
  end
  for k = 1, #dims do dims_buf[k - 1] = M.dim(p, dims[k], op) end
  return #dims, dims_buf
end

-- Options given as nil, a dtype name, or a table {dtype=, device=, requires_grad=}.
function M.options(opts)
  if opts == nil then return {} end
  if type(opts) == "string" or type(opts) == "number" then return { dtype = opts } end
  return opts
end

return M
