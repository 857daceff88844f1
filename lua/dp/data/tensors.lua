-- dp.data.tensors: an in-memory dataset whose examples are the rows (dim 1) of named tensors,
-- e.g. dp.data.tensors{ input_ids = ids, labels = labels }, batched by gathering rows
-- (dp_index_select_rows: any dtype, any device, no autograd). dataset:to_device("cuda") makes
-- the batches land on the GPU while the data stays in host memory (dp.data.staging).
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local args = require "dp.tensor_args"
local staging = require "dp.data.staging"

local C, wrap, raise, check = dpffi.C, dpffi.wrap, dpffi.raise, dpffi.check

local DP_I64 = C.DP_I64

local Dataset = {}
Dataset.__index = Dataset

-- Number of examples.
function Dataset:size() return self.n end

-- Field names, sorted.
function Dataset:fields()
  local out = {}
  for i, name in ipairs(self.names) do out[i] = name end
  return out
end

-- indices (a 1-based Lua array) -> a CPU i64 tensor of 0-based rows, checked against n.
local function row_tensor(indices, n)
  if type(indices) ~= "table" then
    raise("collate: indices must be a Lua array of example numbers, got " .. type(indices))
  end
  local count = #indices
  local buf = ffi.new("int64_t[?]", math.max(count, 1))
  for i = 1, count do
    local k = indices[i]
    if type(k) ~= "number" or k ~= math.floor(k) or k < 1 or k > n then
      raise(("collate: indices[%d] = %s is not an example number (valid: integers 1..%d)")
            :format(i, tostring(k), n))
    end
    buf[i - 1] = k - 1
  end
  local shape = ffi.new("int64_t[1]", count)
  return wrap(C.dp_tensor_from_raw(DP_I64, 1, shape, buf)), count
end

-- The index tensor on a device (copied once per device met in a batch).
local function on_device(rows, device, cache)
  if device == 0 then return rows end
  local t = cache[device]
  if not t then
    local p = rows.ptr
    t = wrap(C.dp_tensor_empty(p.dtype, device, p.ndim, p.shape))
    check(C.dp_copy_(t.ptr, p))
    cache[device] = t
  end
  return t
end

-- The examples at indices (1-based, in the order given, repeats allowed) as a table with the
-- dataset's fields, each (#indices, ...) in its own dtype and on its own device (the device set
-- by to_device, if any), and n = #indices. An empty list gives n = 0 and tensors with zero rows.
function Dataset:collate(indices)
  local rows, count = row_tensor(indices, self.n)
  local batch, cache = { n = count }, {}
  local target = self.device
  for _, name in ipairs(self.names) do
    local x = args.ptr(self.tensors[name], "collate (field " .. name .. ")", 1)
    local at = tonumber(x.device)
    if target ~= nil and self.staging and staging.can_stage(x) then
      batch[name] = self.rings[name]:gather(x, indices, count, target)
    elseif target == nil or target == at then
      batch[name] = wrap(C.dp_index_select_rows(x, on_device(rows, at, cache).ptr))
    else   -- gathered where the field lives, then copied
      local g = wrap(C.dp_index_select_rows(x, on_device(rows, at, cache).ptr))
      batch[name] = staging.copy_to(g.ptr, target)
    end
  end
  return batch
end

-- Batches on device ("cuda", "cpu", "auto"; nil: where each field lives, as before). Fields on
-- the CPU are gathered on the CPU and copied over for each batch, so the dataset never has to
-- fit on the GPU. With opts.staging (the default when device is not the CPU) the rows are
-- gathered into page-locked staging buffers, two per field used in turn, and copied
-- asynchronously: the GPU can still be reading batch k's buffer while batch k+1 is gathered
-- into the other one (rewriting a buffer waits for its own copy only). staging = false gathers
-- with dp_index_select_rows into fresh host tensors instead. Fields already on device are
-- gathered there (dp.device.move_tensors(dataset, dev) first keeps the whole set on the GPU).
-- Returns the dataset.
function Dataset:to_device(device, opts)
  local who = "dp.data.tensors:to_device"
  opts = opts or {}
  if type(opts) ~= "table" then raise(who .. ": opts must be a table such as { staging = false }") end
  if device == nil then
    self.device, self.staging, self.rings = nil, false, nil
    return self
  end
  self.device = require("dp.dtype").parse_device(require("dp.device").resolve(device), who)
  if opts.staging == nil then self.staging = self.device ~= 0 else self.staging = opts.staging and true or false end
  self.rings = {}
  for _, name in ipairs(self.names) do self.rings[name] = staging.ring(name) end
  return self
end

local function new(tensors)
  local fn = "dp.data.tensors"
  if type(tensors) ~= "table" then
    raise(fn .. ": expected a table of named tensors, e.g. { input_ids = ids, labels = labels }")
  end
  local names = {}
  for name, t in pairs(tensors) do
    if type(name) ~= "string" then
      raise(("%s: field names must be strings, got %s"):format(fn, tostring(name)))
    end
    if name == "n" then raise(fn .. ": the field name n is taken (batch.n is the batch size)") end
    if not args.is_tensor(t) or t.ptr == nil then
      raise(("%s: field %s must be a tensor, got %s"):format(fn, name, args.describe(t)))
    end
    if t.ptr.ndim < 1 then
      raise(("%s: field %s must have a dim 1 (its examples), got the 0-d tensor %s")
            :format(fn, name, args.desc(t.ptr)))
    end
    names[#names + 1] = name
  end
  if #names == 0 then raise(fn .. ": expected at least one named tensor") end
  table.sort(names)
  local first = names[1]
  local n = tonumber(tensors[first].ptr.shape[0])
  local own = {}
  for _, name in ipairs(names) do
    local p = tensors[name].ptr
    if tonumber(p.shape[0]) ~= n then
      raise(("%s: fields must share dim 1 (the examples): %s is %s with %d, but %s is %s with %d")
            :format(fn, name, args.desc(p), tonumber(p.shape[0]), first, args.desc(tensors[first].ptr), n))
    end
    own[name] = tensors[name]
  end
  return setmetatable({ tensors = own, names = names, n = n }, Dataset)
end

return setmetatable({ Dataset = Dataset, new = new }, {
  __call = function(_, tensors) return new(tensors) end,
})
