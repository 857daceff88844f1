-- Specs for dp.tensor_data: :item(), :totable() and nested tables to doubles.
local dp = require "dp"
local data = require "dp.tensor_data"

describe("dp.tensor_data", function()
  it("reads the single element with :item()", function()
    assert.equal(3.5, dp.tensor(3.5):item())
    assert.equal(2, dp.tensor({{2}}):item())
    assert.equal(-7, dp.tensor({-7}, "i64"):item())
    assert.error_matches(function() dp.zeros(2, 3):item() end,
      "item: expected a tensor with one element, got [2,3] f32 cpu", nil, true)
  end)

  it("reads all elements with :totable(), in row-major order", function()
    assert.same({{1, 2}, {3, 4}}, dp.tensor({{1, 2}, {3, 4}}):totable())
    assert.same({{1, 3}, {2, 4}}, dp.tensor({{1, 2}, {3, 4}}):t():totable())
    assert.same(5, dp.tensor(5):totable())
    assert.same({}, dp.zeros(0):totable())
    assert.same({{{0}}}, dp.zeros(1, 1, 1):totable())
  end)

  it("flattens nested tables and gives their shape", function()
    local shape, buf, n = data.from_nested({{1, 2, 3}, {4, 5, 6}}, "t")
    assert.same({2, 3}, shape)
    assert.equal(6, n)
    assert.equal(6, buf[5])
  end)
end)
