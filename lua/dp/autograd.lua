-- dp.autograd: grad mode and backward. The tape itself lives in C (each op records its node when
-- an input requires grad and grad mode is on); Lua only switches the mode and starts backward.
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"

local C, check = dpffi.C, dpffi.check

local M = {}

function M.is_grad_enabled() return C.dp_is_grad_enabled() ~= 0 end

function M.set_grad_enabled(enabled) C.dp_set_grad_enabled(enabled and 1 or 0) end

-- Run fn(...) with grad mode set to enabled, restoring the previous mode even when fn fails.
local function with_mode(enabled, fn, ...)
  local previous = C.dp_is_grad_enabled()
  C.dp_set_grad_enabled(enabled)
  local results = { pcall(fn, ...) }
  C.dp_set_grad_enabled(previous)
  if not results[1] then error(results[2], 0) end
  return unpack(results, 2, table.maxn(results))
end

-- dp.no_grad(fn, ...): fn's results, computed without recording a graph (evaluation, updates).
function M.no_grad(fn, ...) return with_mode(0, fn, ...) end

-- dp.enable_grad(fn, ...): the opposite, inside a no_grad region.
function M.enable_grad(fn, ...) return with_mode(1, fn, ...) end

-- dp.backward(root, grad = nil, {retain_graph = false}): accumulate into the leaves' .grad.
function M.backward(root, grad, opts)
  local retain = type(opts) == "table" and opts.retain_graph or opts == true
  check(C.dp_backward(args.ptr(root, "backward", 1),
                      grad ~= nil and args.ptr(grad, "backward", 2) or nil, retain and 1 or 0))
end

-- Gradients of root with respect to each tensor in inputs (a list), as a list; the inputs' .grad
-- are left as they were.
function M.grad(root, inputs, grad)
  local saved = {}
  for k, x in ipairs(inputs) do
    saved[k] = x.grad
    check(C.dp_tensor_set_grad(args.ptr(x, "grad", 2), nil))
  end
  M.backward(root, grad)
  local out = {}
  for k, x in ipairs(inputs) do
    out[k] = x.grad
    check(C.dp_tensor_set_grad(x.ptr, saved[k] and saved[k].ptr or nil))
  end
  return out
end

return M
