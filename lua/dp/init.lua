-- dp: the dprun library. require "dp" gives tensors, ops, autograd and random numbers; the
-- submodules (dp.nn, dp.optim, dp.privacy, ...) load on first use as dp.<name>.
-- Positions in the Lua API are 1-based: dims, t[i], narrow/select/slice starts. Values inside
-- integer tensors (labels, token ids, argmax results) are 0-based ids, as in the data.
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local dtype = require "dp.dtype"
local tensor = require "dp.tensor"
local F = require "dp.functional"
local V = require "dp.tensor_view"
local factory = require "dp.factory"
local autograd = require "dp.autograd"
local rng = require "dp.rng"

local C = dpffi.C

local dp = {}

for name, fn in pairs(F) do dp[name] = fn end
for name, fn in pairs(V) do dp[name] = fn end
for name, fn in pairs(factory) do dp[name] = fn end

dp.C = C                        -- the raw C API (dp.h), for code that needs it directly
dp.ffi = dpffi
dp.is_tensor = tensor.is_tensor
dp.Tensor = tensor.methods      -- extend the tensor type by adding methods here
dp.dtypes = dtype.list
dp.set_default_dtype = dtype.set_default
dp.get_default_dtype = dtype.get_default

dp.rng = rng.new
dp.manual_seed = rng.manual_seed
dp.default_rng = rng.default

dp.no_grad = autograd.no_grad
dp.enable_grad = autograd.enable_grad
dp.set_grad_enabled = autograd.set_grad_enabled
dp.is_grad_enabled = autograd.is_grad_enabled
dp.backward = autograd.backward
dp.grad = autograd.grad

function dp.version() return ffi.string(C.dp_version()) end
function dp.set_num_threads(n) C.dp_set_num_threads(n) end
function dp.get_num_threads() return C.dp_get_num_threads() end
function dp.cuda_available() return C.dp_device_available(1) ~= 0 end

-- Bytes held by tensor storage on a device ("cpu" or "cuda"), now and at peak.
function dp.memory(device)
  local d = dtype.parse_device(device, "memory")
  dpffi.sweep()   -- count what collected handles still hold as freed
  return tonumber(C.dp_mem_current(d)), tonumber(C.dp_mem_peak(d))
end
function dp.live_tensors()
  dpffi.sweep()
  return tonumber(C.dp_live_tensors())
end
dp.memory_report = require "dp.memory"   -- memory by category (parameters, activations, ...)
for name, fn in pairs(require "dp.quant") do dp[name] = fn end   -- fake_quant, grad_quant, fp8_scale_for, matmul_fp8
-- A full collection that also frees the C side of every collected tensor at once.
dp.collectgarbage = dpffi.collect
dp.set_gc_step = dpffi.set_gc_step

-- Submodules written elsewhere (dp.nn, dp.optim, dp.privacy, dp.util, ...) load on first access.
return require("dp.lazy")("dp", dp)
