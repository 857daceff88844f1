-- dp.factory: tensor constructors (dp.tensor, dp.zeros, dp.randn, ...). Shapes are tables
-- ({2, 3}) or leading numbers (2, 3); options are a dtype name or {dtype=, device=,
-- requires_grad=}. The default dtype is f32 (dp.set_default_dtype), the default device the CPU
-- (dp.device("cuda") changes it).
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"
local dtype = require "dp.dtype"
local data = require "dp.tensor_data"
local rng = require "dp.rng"

local C, wrap, raise, check = dpffi.C, dpffi.wrap, dpffi.raise, dpffi.check

local M = {}

local function finish(t, opts)
  if opts.requires_grad then check(C.dp_tensor_set_requires_grad(t.ptr, 1)) end
  return t
end

-- The tensor moved to opts.device (or the default device) when that is not the CPU
-- (constructors from Lua values build on the host).
local function place(t, opts, op)
  local device = dtype.resolve_device(opts.device, op)
  if device == 0 then return t end
  local p = t.ptr
  local out = wrap(C.dp_tensor_empty(p.dtype, device, p.ndim, p.shape))
  check(C.dp_copy_(out.ptr, p))
  return out
end

-- dp.tensor(3.5), dp.tensor({1, 2, 3}), dp.tensor({{1, 2}, {3, 4}}, "f64"), or a copy of a
-- tensor (cast to opts.dtype when given).
function M.tensor(values, opts)
  opts = args.options(opts)
  if args.is_tensor(values) then
    local out = values:clone():detach()
    if opts.dtype then out = out:cast(opts.dtype) end
    return finish(place(out, opts, "tensor"), opts)
  end
  local shape, buf = data.from_nested(values, "tensor")
  local n = #shape
  local dims = ffi.new("int64_t[?]", math.max(n, 1))
  for d = 1, n do dims[d - 1] = shape[d] end
  local t = wrap(C.dp_tensor_from_f64(dtype.parse(opts.dtype, "tensor"), n, dims, buf))
  return finish(place(t, opts, "tensor"), opts)
end

-- dp.from_f64(double array or Lua array, shape, opts): a tensor copied from n doubles.
function M.from_f64(values, shape, opts)
  opts = args.options(opts)
  local n, dims = args.shape("from_f64", shape)
  local count = 1
  for d = 0, n - 1 do count = count * tonumber(dims[d]) end
  local buf = values
  if type(values) == "table" then
    if #values ~= count then
      raise(("from_f64: %d values for a shape of %d elements"):format(#values, count))
    end
    buf = ffi.new("double[?]", math.max(count, 1))
    for k = 1, count do buf[k - 1] = values[k] end
  end
  local t = wrap(C.dp_tensor_from_f64(dtype.parse(opts.dtype, "from_f64"), n, dims, buf))
  return finish(place(t, opts, "from_f64"), opts)
end

local function make(op, build)
  return function(...)
    local n, dims, opts = args.shape(op, ...)
    opts = args.options(opts)
    local t = wrap(build(dtype.parse(opts.dtype, op), dtype.resolve_device(opts.device, op), n,
                         dims, opts))
    return finish(t, opts)
  end
end

M.empty = make("empty", function(dt, dev, n, dims) return C.dp_tensor_empty(dt, dev, n, dims) end)
M.zeros = make("zeros", function(dt, dev, n, dims) return C.dp_tensor_zeros(dt, dev, n, dims) end)
M.ones = make("ones", function(dt, dev, n, dims) return C.dp_tensor_full(dt, dev, n, dims, 1) end)

-- dp.full(shape, value, opts)
function M.full(shape, value, opts)
  if type(value) ~= "number" then
    raise(("full: value must be a number, got %s"):format(args.describe(value)))
  end
  local n, dims = args.shape("full", shape)
  opts = args.options(opts)
  local t = wrap(C.dp_tensor_full(dtype.parse(opts.dtype, "full"),
                                  dtype.resolve_device(opts.device, "full"), n, dims, value))
  return finish(t, opts)
end

-- The generator for opts: opts.rng, a fresh one for opts.seed, else dp's default one.
local function generator(opts)
  if opts.rng then return opts.rng end
  if opts.seed then return rng.new(opts.seed) end
  return rng.default()
end

-- dp.randn(shape, {seed=, rng=, dtype=, mean=0, std=1}) and dp.rand(shape, {...}): U[0, 1).
M.randn = make("randn", function(dt, dev, n, dims, opts)
  local t = C.dp_tensor_empty(dt, dev, n, dims)
  if t ~= nil and C.dp_randn_(t, generator(opts), opts.mean or 0, opts.std or 1) ~= 0 then
    C.dp_tensor_release(t)
    return nil
  end
  return t
end)

M.rand = make("rand", function(dt, dev, n, dims, opts)
  local t = C.dp_tensor_empty(dt, dev, n, dims)
  if t ~= nil and C.dp_rand_(t, generator(opts)) ~= 0 then
    C.dp_tensor_release(t)
    return nil
  end
  return t
end)

-- dp.arange(stop) or dp.arange(start, stop, step): start, start+step, ... below stop (values, so
-- 0-based like NumPy). The last argument may be options.
function M.arange(a, b, c, d)
  local numbers, opts = {}, nil
  for _, v in ipairs { a, b, c, d } do
    if type(v) == "number" then numbers[#numbers + 1] = v else opts = v; break end
  end
  local start, stop, step = 0, numbers[1], 1
  if #numbers >= 2 then start, stop, step = numbers[1], numbers[2], numbers[3] or 1 end
  if not stop then raise("arange: expected arange(stop) or arange(start, stop, step)") end
  if step == 0 then raise("arange: step must not be 0") end
  local count = math.max(0, math.ceil((stop - start) / step))
  local buf = ffi.new("double[?]", math.max(count, 1))
  for k = 0, count - 1 do buf[k] = start + k * step end
  opts = args.options(opts)
  if not opts.dtype then
    local integral = start % 1 == 0 and step % 1 == 0
    opts = { dtype = integral and "i64" or nil, device = opts.device,
             requires_grad = opts.requires_grad }
  end
  return M.from_f64(buf, { count }, opts)
end

return M
