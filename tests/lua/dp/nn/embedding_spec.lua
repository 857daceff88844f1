-- Specs for dp.nn.embedding: rows of the table at 0-based ids.
local dp = require "dp"
local nn = require "dp.nn"

describe("dp.nn.Embedding", function()
  it("returns row id + 1 of the weight for every id", function()
    local e = nn.Embedding(5, 3, { rng = dp.rng(3), dtype = "f64" })
    assert.are.same({ 5, 3 }, e.weight:size())
    local ids = dp.tensor({ { 0, 4, 4 }, { 2, 1, 0 } }, "i64")
    local y, w, idt = e(ids):totable(), e.weight:totable(), ids:totable()
    for i = 1, 2 do for t = 1, 3 do assert.are.same(w[idt[i][t] + 1], y[i][t]) end end
    assert.are.same(dp.embedding(e.weight, ids):totable(), y)
    assert.error_matches(function() nn.Embedding(5, 0) end, "embedding_dim must be a positive integer")
  end)
end)
