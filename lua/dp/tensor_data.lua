-- dp.tensor_data: moving values between tensors and Lua: :item(), :totable(), and nested tables
-- to flat double arrays for the constructors.
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"

local C, raise, check = dpffi.C, dpffi.raise, dpffi.check

local M = {}

local one = ffi.new("double[1]")

-- The single element of a tensor as a Lua number.
function M.item(x)
  local p = args.ptr(x, "item", 1)
  if C.dp_tensor_numel(p) ~= 1 then
    raise(("item: expected a tensor with one element, got %s"):format(args.desc(p)))
  end
  check(C.dp_tensor_get_flat(p, 0, one))
  return one[0]
end

-- All elements as doubles in row-major order (a double[numel] cdata) and the count.
function M.to_f64(x)
  local p = args.ptr(x, "to_f64", 1)
  local n = tonumber(C.dp_tensor_numel(p))
  local buf = ffi.new("double[?]", math.max(n, 1))
  check(C.dp_tensor_to_f64(p, buf))
  return buf, n
end

-- Nested Lua tables (a number for a 0-d tensor).
function M.totable(x)
  local p = args.ptr(x, "totable", 1)
  local buf, n = M.to_f64(x)
  if p.ndim == 0 then return buf[0] end
  local shape = {}
  for d = 0, p.ndim - 1 do shape[d + 1] = tonumber(p.shape[d]) end
  local pos = 0
  local function build(d)
    local t = {}
    if d == #shape then
      for k = 1, shape[d] do t[k] = buf[pos]; pos = pos + 1 end
    else
      for k = 1, shape[d] do t[k] = build(d + 1) end
    end
    return t
  end
  local out = build(1)
  assert(pos == n)
  return out
end

-- Shape and flat double array of a number or a (nested) table of numbers, for dp.tensor.
-- Ragged tables and non-numbers raise errors naming the position ([2][1], 1-based).
function M.from_nested(data, op)
  if type(data) == "number" or type(data) == "boolean" then
    local buf = ffi.new("double[1]")
    buf[0] = data == true and 1 or (data == false and 0 or data)
    return {}, buf, 1
  end
  local shape, probe = {}, data
  while type(probe) == "table" do
    shape[#shape + 1] = #probe
    probe = probe[1]
  end
  if #shape > 8 then raise(("%s: at most 8 dims, got %d"):format(op, #shape)) end
  local n = 1
  for _, size in ipairs(shape) do n = n * size end
  local buf = ffi.new("double[?]", math.max(n, 1))
  local pos = 0
  local function where(path) return "[" .. table.concat(path, "][") .. "]" end
  local function fill(t, d, path)
    if type(t) ~= "table" then
      raise(("%s: element %s is a %s, expected a table of %d"):format(op, where(path),
            args.describe(t), shape[d]))
    end
    if #t ~= shape[d] then
      raise(("%s: ragged table: %s has %d elements, expected %d"):format(op,
            #path == 0 and "the outer table" or where(path), #t, shape[d]))
    end
    for k = 1, #t do
      local v = t[k]
      path[d] = k
      if d < #shape then
        fill(v, d + 1, path)
      else
        if type(v) == "boolean" then v = v and 1 or 0 end
        if type(v) ~= "number" then
          raise(("%s: element %s is a %s, expected a number"):format(op, where(path),
                args.describe(v)))
        end
        buf[pos] = v
        pos = pos + 1
      end
    end
    path[d] = nil
  end
  fill(data, 1, {})
  return shape, buf, n
end

return M
