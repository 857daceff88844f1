-- Specs for dp.data.tensors: batches gather the rows named by 1-based indices, field by field,
-- in each field's dtype, checked against the source rows read back from Lua tables.
local dp = require "dp"

-- Rows of a nested table (the source) picked by 1-based indices.
local function pick(rows, indices)
  local out = {}
  for i, k in ipairs(indices) do out[i] = rows[k] end
  return out
end

describe("dp.data.tensors", function()
  local ids_rows = { { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 }, { 10, 11, 12 }, { 13, 14, 15 } }
  local labels_rows = { 0, 2, 1, 1, 0 }
  local feats_rows = { { 0.5, -1 }, { 0.25, 2 }, { -3, 4.5 }, { 8, 0 }, { 1.5, 1.25 } }
  local mask_rows = { { 1, 1, 0 }, { 1, 0, 0 }, { 1, 1, 1 }, { 0, 0, 0 }, { 1, 0, 1 } }

  local function dataset()
    return dp.data.tensors{
      input_ids = dp.tensor(ids_rows, "i64"), labels = dp.tensor(labels_rows, "i32"),
      features = dp.tensor(feats_rows, "f32"), mask = dp.tensor(mask_rows, "u8"),
    }
  end

  it("is reachable as require('dp').data.tensors", function()
    assert.are.equal(require("dp.data.tensors"), dp.data.tensors)
  end)

  it("knows its size and fields", function()
    local d = dataset()
    assert.are.equal(5, d:size())
    assert.are.same({ "features", "input_ids", "labels", "mask" }, d:fields())
  end)

  it("collates rows in the order given, repeats included, keeping dtypes", function()
    local d = dataset()
    local indices = { 5, 1, 3, 3 }
    local b = d:collate(indices)
    assert.are.equal(4, b.n)
    assert.are.same(pick(ids_rows, indices), b.input_ids:totable())
    assert.are.same(pick(labels_rows, indices), b.labels:totable())
    assert.are.same(pick(feats_rows, indices), b.features:totable())
    assert.are.same(pick(mask_rows, indices), b.mask:totable())
    assert.are.same({ "i64", "i32", "f32", "u8" }, { b.input_ids:dtype(), b.labels:dtype(), b.features:dtype(), b.mask:dtype() })
    assert.is_false(b.features:requires_grad())
  end)

  it("gathers from non-contiguous fields", function()
    local cols = dp.tensor({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 } }, "f64")
    local d = dp.data.tensors{ x = cols:transpose(1, 2) }   -- (4, 2), not contiguous
    assert.are.equal(4, d:size())
    assert.are.same({ { 4, 8 }, { 1, 5 } }, d:collate{ 4, 1 }.x:totable())
  end)

  it("gives zero-row tensors for an empty index list", function()
    local b = dataset():collate{}
    assert.are.equal(0, b.n)
    assert.are.same({ 0, 3 }, b.input_ids:size())
    assert.are.same({ 0 }, b.labels:size())
    assert.are.same({ 0, 2 }, b.features:size())
  end)

  it("rejects fields that do not share dim 1, naming them", function()
    assert.error_matches(function()
      dp.data.tensors{ input_ids = dp.zeros({ 6, 4 }, "i64"), labels = dp.zeros({ 5 }, "i64") }
    end, "fields must share dim 1 (the examples): labels is [5] i64 cpu with 5, but input_ids is [6,4] i64 cpu with 6",
      nil, true)
  end)

  it("rejects other bad datasets", function()
    assert.error_matches(function() dp.data.tensors{} end, "expected at least one named tensor", nil, true)
    assert.error_matches(function() dp.data.tensors(3) end, "expected a table of named tensors", nil, true)
    assert.error_matches(function() dp.data.tensors{ x = { 1, 2 } } end, "field x must be a tensor, got table", nil, true)
    assert.error_matches(function() dp.data.tensors{ x = dp.tensor(1) } end, "field x must have a dim 1", nil, true)
    assert.error_matches(function() dp.data.tensors{ n = dp.zeros(3) } end, "the field name n is taken", nil, true)
  end)

  it("rejects bad indices naming the position", function()
    local d = dataset()
    assert.error_matches(function() d:collate{ 1, 6 } end,
      "collate: indices[2] = 6 is not an example number (valid: integers 1..5)", nil, true)
    assert.error_matches(function() d:collate{ 0 } end, "indices[1] = 0 is not an example number", nil, true)
    assert.error_matches(function() d:collate{ 2, 1.5 } end, "indices[2] = 1.5", nil, true)
    assert.error_matches(function() d:collate(3) end, "indices must be a Lua array of example numbers, got number", nil, true)
  end)
end)
