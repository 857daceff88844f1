-- dp.tensor_format: tostring(t), NumPy-style: the values (the first and last 3 of any dim longer
-- than 6, with "..." between), then shape, dtype, device and autograd state; and display(t), the
-- REPL's Torch7-style form: the values, then a line "[2x3] f32 cpu".
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"
local dtype = require "dp.dtype"

local C = dpffi.C

local M = {}

M.edge = 3        -- elements shown at each end of a long dim
M.threshold = 6   -- dims longer than this are abbreviated

-- 0-based indices shown along a dim of the given size; false marks the "..." gap.
local function shown(size)
  local out = {}
  if size <= M.threshold then
    for i = 0, size - 1 do out[#out + 1] = i end
  else
    for i = 0, M.edge - 1 do out[#out + 1] = i end
    out[#out + 1] = false
    for i = size - M.edge, size - 1 do out[#out + 1] = i end
  end
  return out
end

local function number_format(values, is_float)
  local integral, max_abs, min_abs = true, 0, math.huge
  for _, v in ipairs(values) do
    if v == v and v ~= math.huge and v ~= -math.huge then
      if v % 1 ~= 0 then integral = false end
      local a = math.abs(v)
      if a > max_abs then max_abs = a end
      if a > 0 and a < min_abs then min_abs = a end
    end
  end
  if not is_float or (integral and max_abs < 1e9) then
    return function(v) return is_float and ("%.0f."):format(v) or ("%d"):format(v) end
  end
  local pattern = (max_abs >= 1e5 or min_abs < 1e-4) and "%.4e" or "%.4f"
  return function(v) return pattern:format(v) end
end

local function special(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
end

-- The bracketed values of a CPU tensor, indented by indent columns after the first line.
local function body(p, indent)
  local ndim = p.ndim
  local idx = ffi.new("int64_t[8]")
  local value = ffi.new("double[1]")
  local picks = {}
  for d = 0, ndim - 1 do picks[d] = shown(tonumber(p.shape[d])) end
  local values = {}
  local function collect(d)
    if d == ndim then
      dpffi.check(C.dp_tensor_get(p, idx, value))
      values[#values + 1] = value[0]
      return
    end
    for _, i in ipairs(picks[d]) do
      if i then idx[d] = i; collect(d + 1) end
    end
  end
  collect(0)
  local fmt = number_format(values, dtype.is_float(p.dtype))
  local strings, width = {}, 0
  for k, v in ipairs(values) do
    strings[k] = special(v) or fmt(v)
    width = math.max(width, #strings[k])
  end
  local pos = 0
  local function render(d)
    if d == ndim then
      pos = pos + 1
      return (" "):rep(width - #strings[pos]) .. strings[pos]
    end
    local parts = {}
    for _, i in ipairs(picks[d]) do
      parts[#parts + 1] = i and render(d + 1) or "..."
    end
    if d == ndim - 1 then return "[" .. table.concat(parts, ", ") .. "]" end
    local sep = ",\n" .. ("\n"):rep(ndim - d - 2) .. (" "):rep(indent + d + 1)
    return "[" .. table.concat(parts, sep) .. "]"
  end
  return render(0)
end

function M.tostring(x)
  local p = x.ptr
  if p == nil then return "tensor(released)" end
  local host = x
  if p.device ~= 0 then   -- element reads go through host memory
    host = dpffi.wrap(C.dp_tensor_empty(p.dtype, 0, p.ndim, p.shape))
    dpffi.check(C.dp_copy_(host.ptr, p))
  end
  local shape = {}
  for d = 0, p.ndim - 1 do shape[#shape + 1] = tostring(tonumber(p.shape[d])) end
  local text = body(host.ptr, #"tensor(")
  local extra = ""
  local op = ffi.string(C.dp_tensor_op_name(p))
  if op ~= "" then
    extra = ", grad_fn=" .. op
  elseif p.requires_grad ~= 0 then
    extra = ", requires_grad=true"
  end
  return ("tensor(%s, shape=[%s], dtype=%s, device=%s%s)"):format(text,
         table.concat(shape, ","), dtype.name(p.dtype), dtype.device_names[tonumber(p.device)],
         extra)
end

-- The values on their own lines, then "[2x3] f32 cpu" (plus autograd state), as Torch7 printed.
function M.display(x)
  local p = x.ptr
  if p == nil then return "tensor(released)" end
  local text = M.tostring(x)
  local values = text:match("^tensor%((.*), shape=%[")
  local shape = {}
  for d = 0, p.ndim - 1 do shape[#shape + 1] = tostring(tonumber(p.shape[d])) end
  local extra = text:match(", (grad_fn=[%w_]+)%)$") or text:match(", (requires_grad=true)%)$")
  -- tostring indents continuation lines under "tensor(": take that indent back out.
  values = values:gsub("\n" .. (" "):rep(#"tensor("), "\n")
  return ("%s\n[%s] %s %s%s"):format(values, #shape > 0 and table.concat(shape, "x") or "scalar",
                                    dtype.name(p.dtype), dtype.device_names[tonumber(p.device)],
                                    extra and (" " .. extra) or "")
end

M.desc = function(x) return args.desc(x.ptr) end

return M
