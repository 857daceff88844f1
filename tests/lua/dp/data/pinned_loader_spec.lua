-- Specs for batches staged through pinned host memory (dp.data.tensors:to_device, dp.data.staging)
-- and the pinned-tensor bindings (t:pin, t:is_pinned, dp.device.empty_pinned, dp.device.sync).
-- The staged path copies rows as bytes; its batches must equal, byte for byte, both the plain
-- collate (dp_index_select_rows) and rows picked from the Lua source tables. On the CPU the
-- staging buffers are plain memory; with a GPU they are page-locked and the batches land there.
local ffi = require "ffi"
local dp = require "dp"
local C = dp.C

local has_cuda = dp.cuda_available()

-- The raw bytes of a tensor (any device), for bitwise comparison.
local function bytes(t)
  local n = t:numel() * C.dp_dtype_size(t.ptr.dtype)
  local buf = ffi.new("uint8_t[?]", math.max(n, 1))
  assert(C.dp_tensor_to_raw(t.ptr, buf) == 0, ffi.string(C.dp_last_error()))
  return ffi.string(buf, n)
end

local function pick(rows, indices)
  local out = {}
  for i, k in ipairs(indices) do out[i] = rows[k] end
  return out
end

local N = 23
local ids_rows, label_rows, feat_rows = {}, {}, {}
for i = 1, N do
  ids_rows[i] = { i * 3, i * 3 + 1, -i }
  label_rows[i] = i % 3
  feat_rows[i] = { i / 4, -i * 0.125, (i % 2 == 0) and -0.0 or 1e-30 }
end

local function dataset()
  return dp.data.tensors{ input_ids = dp.tensor(ids_rows, "i64"), labels = dp.tensor(label_rows, "i32"),
                          features = dp.tensor(feat_rows, "f32"), half = dp.tensor(feat_rows, "bf16") }
end

-- Batches of varying size (Poisson batches vary), with repeats, an empty one and one that grows
-- the staging buffers after they were made.
local batches = { { 1, 2, 3 }, { 23, 5, 5, 9, 1, 17, 2 }, { 4 }, {}, { 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21 },
                  { 6, 6 }, { 22, 3, 8, 10, 7, 1, 2, 3, 4 } }

describe("dp.data.tensors:to_device (staged batches)", function()
  it("gives byte-identical batches to the plain collate and to the source rows, kept intact", function()
    local plain = dataset()
    local staged = dataset():to_device("cpu", { staging = true })
    local kept = {}
    for k, idx in ipairs(batches) do
      local a, b = plain:collate(idx), staged:collate(idx)
      assert.are.equal(#idx, b.n)
      for _, name in ipairs(plain:fields()) do
        assert.are.equal("cpu", b[name]:device())
        assert.are.equal(a[name]:dtype(), b[name]:dtype())
        assert.are.same(a[name]:size(), b[name]:size())
        assert.are.equal(bytes(a[name]), bytes(b[name]), ("batch %d field %s"):format(k, name))
      end
      if #idx > 0 then
        assert.are.same(pick(ids_rows, idx), b.input_ids:totable())
        assert.are.same(pick(label_rows, idx), b.labels:totable())
      end
      kept[k] = { idx = idx, batch = b, want = bytes(a.features) }
    end
    assert.are.equal(11, staged.rings.input_ids[1]:size(1), "the staged path ran")
    -- Each batch is its own tensor, not a view of a staging buffer later rewritten.
    for k, e in ipairs(kept) do
      assert.are.equal(e.want, bytes(e.batch.features), "batch " .. k .. " changed afterwards")
    end
  end)

  it("reuses two buffers per field, grown to the largest batch, waiting before each rewrite", function()
    local d = dataset():to_device("cpu", { staging = true })
    d:collate({ 1, 2, 3, 4, 5 })
    d:collate({ 6, 7, 8 })
    local ring = d.rings.input_ids
    local first, second = ring[1], ring[2]
    assert.are.equal(5, first:size(1))
    assert.are.equal(has_cuda, first:is_pinned())
    assert.are.equal(has_cuda, second:is_pinned())
    local v1, v2 = first:version(), second:version()
    for k = 1, 6 do d:collate({ k, k + 1, k + 2 }) end   -- fits both: nothing new
    assert.are.equal(first, ring[1])
    assert.are.equal(second, ring[2])
    assert.are.equal(v1 + 3, first:version(), "one counted write (and wait) per batch")
    assert.are.equal(v2 + 3, second:version())
    assert.is_nil(ring[3])
    d:collate({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 })   -- the next buffer in turn grows
    assert.are.equal(11, ring[1]:size(1))
    assert.are.equal(second, ring[2])
  end)

  it("gathers a strided field with dp_index_select_rows (no byte copy), staged or not", function()
    local src = dp.tensor(ids_rows, "i64")
    local t = src:transpose(1, 2):contiguous():transpose(1, 2)   -- same values, column-major
    assert.is_false(t:is_contiguous())
    for _, opts in ipairs{ { staging = true }, { staging = false } } do
      local d = dp.data.tensors{ x = t }:to_device("cpu", opts)
      for _, idx in ipairs(batches) do
        local b = d:collate(idx)
        if #idx > 0 then assert.are.same(pick(ids_rows, idx), b.x:totable()) end
        assert.are.same({ #idx, 3 }, b.x:size())
      end
      assert.is_nil(d.rings.x[1])
    end
  end)

  it("to_device(nil) goes back to batches where the data lives; bad arguments are errors", function()
    local d = dataset():to_device("cpu", { staging = true })
    assert.are.equal(d, d:to_device(nil))
    assert.is_nil(d.rings)
    assert.are.same(pick(ids_rows, { 2, 1 }), d:collate({ 2, 1 }).input_ids:totable())
    assert.error_matches(function() d:to_device("tpu") end, "unknown device tpu", nil, true)
    assert.error_matches(function() d:to_device("cpu", 3) end, "opts must be a table", nil, true)
  end)

  it("puts batches on the GPU when there is one, else says why not", function()
    local d = dataset()
    if not has_cuda then
      assert.error_matches(function() d:to_device("cuda") end, "no CUDA device is usable", nil, true)
      return
    end
    local plain = dataset()
    d:to_device("cuda")
    assert.is_true(d.staging)
    for k, idx in ipairs(batches) do
      local a, b = plain:collate(idx), d:collate(idx)
      for _, name in ipairs(plain:fields()) do
        assert.are.equal("cuda", b[name]:device())
        assert.are.equal(bytes(a[name]), bytes(b[name]), ("batch %d field %s"):format(k, name))
      end
    end
    assert.is_true(d.rings.labels[1]:is_pinned())
    -- staging = false: gathered on the host with dp_index_select_rows, then copied.
    local unstaged = dataset():to_device("cuda", { staging = false })
    assert.are.equal(bytes(plain:collate({ 9, 2, 2 }).features), bytes(unstaged:collate({ 9, 2, 2 }).features))
    assert.is_nil(unstaged.rings.features[1])
    -- With the data moved to the GPU first, batches are gathered there (no staging).
    local on = dp.device.move_tensors(dataset(), "cuda"):to_device("cuda")
    assert.are.equal(bytes(plain:collate({ 3, 1 }).half), bytes(on:collate({ 3, 1 }).half))
    assert.is_nil(on.rings.half[1])
  end)
end)

describe("pinned tensors from Lua", function()
  it("empty_pinned and pin give CPU tensors, pinned exactly when a GPU is usable", function()
    local e = dp.device.empty_pinned({ 2, 3 }, "f64")
    assert.are.same({ 2, 3 }, e:size())
    assert.are.equal("f64", e:dtype())
    assert.are.equal("cpu", e:device())
    assert.are.equal(has_cuda, e:is_pinned())
    local x = dp.tensor({ { 1.5, -2 }, { 3, 4.25 } })
    assert.is_false(x:is_pinned())
    local p = x:t():pin()   -- strided source: a contiguous copy
    assert.are.same({ { 1.5, 3 }, { -2, 4.25 } }, p:totable())
    assert.is_true(p:is_contiguous())
    assert.are.equal(has_cuda, p:is_pinned())
    if has_cuda then assert.are.equal(p, p:pin()) end
    p:fill(7)
    assert.are.same({ { 7, 7 }, { 7, 7 } }, p:totable())
    assert.error_matches(function() dp.device.empty_pinned({ -1 }) end, "negative size", nil, true)
  end)

  it("sync is a no-op on the CPU and an error naming cuda without a GPU", function()
    dp.device.sync("cpu")
    if has_cuda then dp.device.sync("cuda") else
      assert.error_matches(function() dp.device.sync("cuda") end, "device_sync: cuda", nil, true)
    end
  end)
end)
