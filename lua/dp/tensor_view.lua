-- dp.tensor_view: shape ops (reshape, permute, narrow, select, expand, ...), dtype casts and
-- copies. Views share storage with their source; all of them are in the autograd graph.
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"
local dtype = require "dp.dtype"

local C, wrap, raise = dpffi.C, dpffi.wrap, dpffi.raise
local ptr = args.ptr

local V = {}

-- reshape(x, {2, 3}) or reshape(x, 2, 3); one size may be -1. Copies only when the strides do
-- not allow a view (use :contiguous() first to be sure of a fresh layout).
function V.reshape(x, ...)
  local p = ptr(x, "reshape", 1)
  local n, shape = args.shape("reshape", ...)
  return wrap(C.dp_reshape(p, n, shape))
end
V.view = V.reshape

-- All dims from start_dim to end_dim (default: all) merged into one.
function V.flatten(x, start_dim, end_dim)
  local p = ptr(x, "flatten", 1)
  if p.ndim == 0 then return V.reshape(x, 1) end
  local first = args.dim(p, start_dim or 1, "flatten")
  local last = args.dim(p, end_dim or -1, "flatten")
  local shape = {}
  for d = 0, first - 1 do shape[#shape + 1] = tonumber(p.shape[d]) end
  shape[#shape + 1] = -1
  for d = last + 1, p.ndim - 1 do shape[#shape + 1] = tonumber(p.shape[d]) end
  return V.reshape(x, shape)
end

-- permute(x, {2, 1, 3}) or permute(x, 2, 1, 3): a permutation of 1..ndim.
function V.permute(x, ...)
  local p = ptr(x, "permute", 1)
  local perm = type(...) == "table" and ... or { ... }
  if #perm ~= p.ndim then
    raise(("permute: got %d dims for %s, expected %d"):format(#perm, args.desc(p), p.ndim))
  end
  local buf, seen = ffi.new("int32_t[?]", math.max(#perm, 1)), {}
  for k = 1, #perm do
    local c = args.dim(p, perm[k], "permute")
    if seen[c] then
      raise(("permute: dim %d appears twice in {%s} for %s"):format(c + 1,
            table.concat(perm, ", "), args.desc(p)))
    end
    seen[c], buf[k - 1] = true, c
  end
  return wrap(C.dp_permute(p, buf))
end

-- Swap two dims (default 1 and 2, the transpose of a matrix).
function V.transpose(x, dim0, dim1)
  local p = ptr(x, "transpose", 1)
  return wrap(C.dp_transpose(p, args.dim(p, dim0 or 1, "transpose"),
                             args.dim(p, dim1 or 2, "transpose")))
end

function V.t(x)
  local p = ptr(x, "t", 1)
  if p.ndim ~= 2 then raise(("t: expected a 2-d tensor, got %s"):format(args.desc(p))) end
  return wrap(C.dp_transpose(p, 0, 1))
end

-- length elements starting at start (1-based, negative from the end) along dim.
function V.narrow(x, dim, start, length)
  local p = ptr(x, "narrow", 1)
  local c = args.dim(p, dim, "narrow")
  local size = tonumber(p.shape[c])
  -- start = size + 1 with length 0 is an empty slice at the end, as in Torch.
  local s = (start == size + 1 and length == 0) and size or args.index(p, c, start, "narrow")
  args.integer(length, "narrow", "length")
  if length < 0 or s + length > size then
    raise(("narrow: %d elements from %d are out of range for dim %d of size %d in %s")
          :format(length, s + 1, dim, size, args.desc(p)))
  end
  return wrap(C.dp_narrow(p, c, s, length))
end

-- Elements first, first+step, ... up to last (inclusive; 1-based, negative from the end).
function V.slice(x, dim, first, last, step)
  local p = ptr(x, "slice", 1)
  local c = args.dim(p, dim, "slice")
  step = args.integer(step or 1, "slice", "step")
  if step < 1 then raise(("slice: step must be at least 1, got %d"):format(step)) end
  local a = args.index(p, c, first or 1, "slice")
  local b = args.index(p, c, last or -1, "slice")
  local count = b >= a and math.floor((b - a) / step) + 1 or 0
  return wrap(C.dp_slice(p, c, a, count, step))
end

-- Drop dim by taking element index (1-based, negative from the end) along it.
function V.select(x, dim, index)
  local p = ptr(x, "select", 1)
  local c = args.dim(p, dim, "select")
  return wrap(C.dp_select(p, c, args.index(p, c, index, "select")))
end

-- Broadcast to a shape ({4, 3} or 4, 3); -1 keeps a size.
function V.expand(x, ...)
  local p = ptr(x, "expand", 1)
  local n, shape = args.shape("expand", ...)
  return wrap(C.dp_expand(p, n, shape))
end

function V.expand_as(x, other)
  local q = ptr(other, "expand_as", 2)
  return wrap(C.dp_expand(ptr(x, "expand_as", 1), q.ndim, q.shape))
end

-- New size-1 dim at position dim (1..ndim+1, -1 appends).
function V.unsqueeze(x, dim)
  local p = ptr(x, "unsqueeze", 1)
  return wrap(C.dp_unsqueeze(p, args.dim(p, dim, "unsqueeze", 1)))
end

-- Drop dim (which must have size 1), or every size-1 dim when dim is nil.
function V.squeeze(x, dim)
  local p = ptr(x, "squeeze", 1)
  if dim ~= nil then
    local c = args.dim(p, dim, "squeeze")
    if p.shape[c] ~= 1 then
      raise(("squeeze: dim %d of %s has size %d, expected 1"):format(dim, args.desc(p),
            tonumber(p.shape[c])))
    end
    return wrap(C.dp_squeeze(p, c))
  end
  local out = x
  for d = p.ndim - 1, 0, -1 do
    if p.shape[d] == 1 then out = wrap(C.dp_squeeze(out.ptr, d)) end
  end
  if out == x then return wrap(C.dp_reshape(p, p.ndim, p.shape)) end
  return out
end

function V.contiguous(x) return wrap(C.dp_contiguous(ptr(x, "contiguous", 1))) end
function V.clone(x) return wrap(C.dp_clone(ptr(x, "clone", 1))) end
function V.detach(x) return wrap(C.dp_detach(ptr(x, "detach", 1))) end

-- Cast to a dtype (name or enum); a device name ("cpu", "cuda") moves the tensor instead (a copy
-- outside the autograd graph).
function V.cast(x, to)
  local p = ptr(x, "cast", 1)
  if to == "cpu" or to == "cuda" then
    local device = dtype.parse_device(to, "to")
    if device == p.device then return x end
    local out = wrap(C.dp_tensor_empty(p.dtype, device, p.ndim, p.shape))
    dpffi.check(C.dp_copy_(out.ptr, p))
    return out
  end
  return wrap(C.dp_cast(p, dtype.parse(to, "cast")))
end
V.to = V.cast

-- x cast into cache (contiguous, x's shape, a float dtype) as the autograd node "cast": refresh
-- (default true) converts x into cache first; false trusts cache (made at x:version() still
-- current). The result shares cache's storage; gradients go back to x in x's dtype.
function V.cast_into(x, cache, refresh)
  if refresh ~= nil and type(refresh) ~= "boolean" then
    dpffi.raise("cast_into: refresh must be a boolean (default true), got " .. tostring(refresh))
  end
  return wrap(C.dp_cast_into(ptr(x, "cast_into", 1), ptr(cache, "cast_into", 2),
                             refresh == false and 0 or 1))
end

for method, name in pairs { float = "f32", double = "f64", bf16 = "bf16", half = "f16",
                            int = "i32", long = "i64", byte = "u8", bool = "u8" } do
  V[method] = function(x) return wrap(C.dp_cast(ptr(x, method, 1), dtype.parse(name))) end
end

function V.cpu(x) return V.cast(x, "cpu") end
function V.cuda(x) return V.cast(x, "cuda") end

return V
