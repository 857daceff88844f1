-- dp.testing.gradcheck: compares autograd gradients with central finite differences in f64.
-- The scalar checked is sum(f(inputs) * r) for a fixed random r, so every output element counts.
local ffi = require "ffi"
local dp = require "dp"

local C = dp.C

local M = {}

local function multi_index(p, k, idx)
  for d = p.ndim - 1, 0, -1 do
    local size = tonumber(p.shape[d])
    idx[d] = k % size
    k = (k - k % size) / size
  end
end

-- The loss tensor sum(f(inputs...) * r); r is made on the first call from the output's shape.
local function loss_of(fn, inputs, state)
  local y = fn(unpack(inputs, 1, table.maxn(inputs)))
  if not dp.is_tensor(y) then error("gradcheck: the function must return a tensor", 0) end
  if y:dtype() ~= "f64" then
    error("gradcheck: the function returned " .. y:desc() .. "; run it in f64", 0)
  end
  state.r = state.r or dp.randn(y:size(), { seed = state.seed, dtype = "f64" })
  return (y * state.r):sum()
end

-- check(fn, inputs, opts) -> ok, report. inputs: a list of tensors (and other values passed
-- through); those with requires_grad are checked. opts: eps (1e-6), atol (1e-5), rtol (1e-4),
-- seed (7), max_elements (check at most this many elements per input, evenly spread).
function M.check(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-4
  local state = { seed = opts.seed or 7 }
  for _, x in ipairs(inputs) do
    if dp.is_tensor(x) and x:requires_grad() then x:zero_grad() end
  end
  local loss = loss_of(fn, inputs, state)
  loss:backward()
  local failures, worst = {}, 0
  local idx = ffi.new("int64_t[8]")
  local value = ffi.new("double[1]")
  for i, x in ipairs(inputs) do
    if dp.is_tensor(x) and x:requires_grad() then
      local p = x.ptr
      if x:dtype() ~= "f64" then error("gradcheck: input " .. i .. " is " .. x:desc() .. ", not f64", 0) end
      local g = x.grad
      if g == nil then
        failures[#failures + 1] = ("input %d (%s): no gradient reached it"):format(i, x:desc())
      else
        local flat = dp.reshape(g, -1):totable()
        local n = x:numel()
        local stride = math.max(1, math.floor(n / (opts.max_elements or n)))
        for k = 0, n - 1, stride do
          multi_index(p, k, idx)
          C.dp_tensor_get(p, idx, value)
          local x0 = value[0]
          local sides = {}
          for s, delta in ipairs { eps, -eps } do
            C.dp_tensor_set(p, idx, x0 + delta)
            sides[s] = dp.no_grad(function() return loss_of(fn, inputs, state):item() end)
          end
          C.dp_tensor_set(p, idx, x0)
          local numeric = (sides[1] - sides[2]) / (2 * eps)
          local a = flat[k + 1]
          local err = math.abs(a - numeric)
          worst = math.max(worst, err / (atol + rtol * math.abs(numeric)))
          if err > atol + rtol * math.abs(numeric) and #failures < 8 then
            failures[#failures + 1] = ("input %d (%s) element %d: autograd %.10g, finite " ..
              "difference %.10g"):format(i, x:desc(), k + 1, a, numeric)
          end
        end
      end
    end
  end
  if #failures > 0 then return false, table.concat(failures, "\n") end
  return true, ("ok (worst error %.3g of tolerance)"):format(worst)
end

-- Like check, raising an error with the report on mismatch.
function M.assert(fn, inputs, opts)
  local ok, report = M.check(fn, inputs, opts)
  if not ok then error("gradcheck failed:\n" .. report, 2) end
  return true
end

return M
