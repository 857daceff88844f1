-- dp.device: choosing where tensors live. dp.device("cuda" | "cpu" | "auto") resolves the name
-- (auto: the GPU when one is usable, else the CPU with a one-line message), makes it the default
-- device of new tensors (dp.zeros, dp.randn, dp.tensor, ...) and returns it; dp.device() returns
-- the default. Helpers move what was built elsewhere: a model's parameters (move_module) and the
-- tensors of a table such as a data split or a dataset (move_tensors); empty_pinned makes
-- page-locked staging buffers and sync waits for the device.
--
--   local dev = dp.device(cfg.device)          -- before building the model: it is built there
--   dp.device.move_tensors(splits.dev, dev)    -- the data stays on the GPU: no per-step copies
--   data:to_device(dev)                        -- or batches copied there (dp.data.tensors)
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local dtype = require "dp.dtype"
local args = require "dp.tensor_args"

local C, wrap, raise, check = dpffi.C, dpffi.wrap, dpffi.raise, dpffi.check

local M = {}

local CUDA = 1
local choices = "cuda, cpu or auto"

-- Where auto's fallback line goes; tests replace it to read the line.
M.print = function(line) io.stderr:write(line, "\n") end

function M.cuda_available() return C.dp_device_available(CUDA) ~= 0 end

-- Why no CUDA device can be used ("" when one can): the core's message from a failed allocation
-- ("cannot load the CUDA backend ...; build with -DDP_CUDA=ON", "no CUDA device found", ...).
function M.unavailable_reason()
  if M.cuda_available() then return "" end
  local shape = ffi.new("int64_t[1]", 1)
  local t = C.dp_tensor_empty(0, CUDA, 1, shape)
  if t ~= nil then   -- cannot happen while dp_device_available says no; release to be safe
    C.dp_tensor_release(t)
    return "the CUDA backend reports no usable device"
  end
  local msg = ffi.string(C.dp_last_error()):gsub("^cuda: ", "")
  C.dp_clear_error()
  return msg
end

-- "cuda" | "cpu" | "auto" -> "cuda" or "cpu", without changing the default. "cuda" without a
-- usable GPU is an error that says why; "auto" then prints one line and gives "cpu".
function M.resolve(name)
  if name == nil then name = "auto" end
  if name == "cpu" then return "cpu" end
  if name == "cuda" then
    if not M.cuda_available() then
      raise("dp.device: cuda requested but no CUDA device is usable: " .. M.unavailable_reason()
            .. " (use --device cpu or auto)")
    end
    return "cuda"
  end
  if name == "auto" then
    if M.cuda_available() then return "cuda" end
    M.print("dp.device: no CUDA device (" .. M.unavailable_reason() .. "); running on the CPU")
    return "cpu"
  end
  raise(("dp.device: unknown device %s (expected %s)"):format(tostring(name), choices))
end

-- The default device of new tensors.
function M.get() return dtype.get_default_device() end

-- dp.device(name): resolve, make it the default, return it. dp.device(): the default.
function M.set(name)
  local dev = M.resolve(name)
  dtype.set_default_device(dev)
  return dev
end

-- A copy of tensor t on dev (t itself when it is there already), keeping requires_grad, the
-- parameter mark and the memory category; outside the autograd graph.
local function moved(t, dev)
  local p = args.ptr(t, "dp.device.move", 1)
  if p.device == dev then return t end
  local out = wrap(C.dp_tensor_empty(p.dtype, dev, p.ndim, p.shape))
  check(C.dp_copy_(out.ptr, p))
  check(C.dp_tensor_set_mem_category(out.ptr, C.dp_tensor_mem_category(p)))
  if p.is_param ~= 0 then out:is_param(true) end
  if p.requires_grad ~= 0 then out:requires_grad(true) end
  return out
end

local function device_value(dev, who)
  if dev == nil then raise(who .. ": expected a device (" .. choices .. ")") end
  return dtype.parse_device(dev == "auto" and M.resolve("auto") or dev, who)
end

-- dp.device.empty_pinned(shape, dtype = default): an uninitialised contiguous CPU tensor in
-- page-locked memory when a CUDA device is usable (copies from it to the GPU are asynchronous;
-- writes through dp ops wait for those copies), in plain memory otherwise. Shape as dp.empty.
function M.empty_pinned(...)
  local n, dims, opts = args.shape("dp.device.empty_pinned", ...)
  local o = args.options(opts)
  return wrap(C.dp_tensor_empty_pinned(dtype.parse(o.dtype, "dp.device.empty_pinned"), n, dims))
end

-- Wait until every op queued on dev (default: the default device) has finished: for timing, or
-- before reading memory written behind the library's back. A no-op on the CPU.
function M.sync(dev)
  check(C.dp_device_sync(dtype.parse_device(dev or M.get(), "dp.device.sync")))
end

-- Every tensor value of table tbl moved to dev, in place (other values untouched); returns tbl.
-- Works for a data split { input_ids =, labels =, n = } and for a dp.data.tensors dataset.
function M.move_tensors(tbl, dev)
  local who = "dp.device.move_tensors"
  if type(tbl) ~= "table" then raise(who .. ": expected a table of tensors, got " .. type(tbl)) end
  local d = device_value(dev, who)
  local target = tbl.tensors and getmetatable(tbl) and tbl.tensors or tbl   -- a Dataset
  for k, v in pairs(target) do
    if args.is_tensor(v) then target[k] = moved(v, d) end
  end
  return tbl
end

-- Every parameter of model (a dp.nn module) moved to dev, and the tensors each module keeps
-- beside its parameters (buffers, and caches such as BERT's position ids, one table deep).
-- Parameters shared between modules stay shared. Call it before dp.precision.apply, LoRA
-- merging and dp.private: those keep references to the parameters they saw.
-- model:to(dev) (lua/dp/nn/module.lua) is this with the module's name in its errors.
function M.move_module(model, dev)
  local who = "dp.device.move_module"
  if type(model) ~= "table" or type(model.named_modules) ~= "function" then
    raise(who .. ": expected a dp.nn module")
  end
  local d = device_value(dev, who)
  local done = {}   -- old tensor -> new (tied weights stay tied)
  local function move(t)
    local key = tostring(t.ptr)
    if not done[key] then done[key] = moved(t, d) end
    return done[key]
  end
  for _, e in ipairs(model:named_modules()) do
    local m = e.module
    if m._precision ~= nil then
      raise(("%s: module '%s' has a precision policy; move the model before dp.precision.apply")
            :format(who, e.name == "" and "(root)" or e.name))
    end
  end
  for _, e in ipairs(model:named_modules()) do
    local m = e.module
    for name, t in pairs(m._params) do
      local new = move(t)
      m._params[name] = new
      if m[name] == t then m[name] = new end
    end
    for key, v in pairs(m) do
      if key ~= "_params" and key ~= "_modules" and key ~= "_entries" then
        if args.is_tensor(v) then
          m[key] = move(v)
        elseif type(v) == "table" and getmetatable(v) == nil then
          for k2, v2 in pairs(v) do
            if args.is_tensor(v2) then v[k2] = move(v2) end
          end
        end
      end
    end
  end
  return model
end

return setmetatable(M, { __call = function(_, name) if name == nil then return M.get() end return M.set(name) end })
