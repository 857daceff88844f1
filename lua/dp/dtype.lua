-- dp.dtype: dtype and device names <-> the C enums, with errors that list what is accepted.
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local C, raise = dpffi.C, dpffi.raise

local M = {}

M.names = {}   -- enum value -> canonical name ("f32", "bf16", ...)
M.list = {}    -- canonical names in enum order (exposed as dp.dtypes)
for value = 0, C.DP_NUM_DTYPES - 1 do
  local name = ffi.string(C.dp_dtype_name(value))
  M.names[value] = name
  M.list[#M.list + 1] = name
end

M.device_names = { [0] = "cpu", [1] = "cuda" }
local devices = { cpu = 0, cuda = 1 }

local default_dtype = 0   -- f32
local default_device = 0  -- cpu; dp.device("cuda") changes it (lua/dp/device.lua)
local by_name = {}        -- cache of dp_dtype_from_name results (aliases included)

-- The enum value for a dtype given by name or value; op names the caller in errors.
function M.parse(dtype, op)
  if dtype == nil then return default_dtype end
  if type(dtype) == "number" then
    if M.names[dtype] then return dtype end
  elseif type(dtype) == "string" then
    local value = by_name[dtype]
    if value then return value end
    value = C.dp_dtype_from_name(dtype)
    if value >= 0 then
      by_name[dtype] = value
      return value
    end
  end
  raise(("%s: unknown dtype %s (expected one of %s)"):format(op or "dtype", tostring(dtype),
        table.concat(M.list, ", ")))
end

function M.name(value) return M.names[tonumber(value)] end

function M.is_float(value) return C.dp_dtype_is_float(value) ~= 0 end

function M.size(value) return C.dp_dtype_size(value) end

function M.parse_device(device, op)
  if device == nil then return 0 end
  local value = devices[device] or (M.device_names[device] and device)
  if value then return value end
  raise(("%s: unknown device %s (expected cpu or cuda)"):format(op or "device", tostring(device)))
end

-- The device for a constructor's opts.device: that device, or the default one when nil.
function M.resolve_device(device, op)
  if device == nil then return default_device end
  return M.parse_device(device, op)
end

function M.set_default_device(device)
  default_device = M.parse_device(device, "set_default_device")
end
function M.get_default_device() return M.device_names[default_device] end

function M.set_default(dtype) default_dtype = M.parse(dtype, "set_default_dtype") end
function M.get_default() return M.names[default_dtype] end

return M
