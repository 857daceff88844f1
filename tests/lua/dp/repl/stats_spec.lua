-- Specs for dp.repl.stats: percentiles and the histogram against hand computations.
local stats = require "dp.repl.stats"

describe("dp.repl.stats", function()
  it("interpolates percentiles between order statistics", function()
    local s = { 1, 2, 4, 8, 16 }
    -- (n - 1) p = 2 -> 4; 0.9: position 3.6 -> 8 + 0.6 * 8 = 12.8
    assert.equal(4, stats.percentile(s, 0.5))
    assert.near(12.8, stats.percentile(s, 0.9), 1e-12)
    assert.equal(1, stats.percentile(s, 0))
    assert.equal(16, stats.percentile(s, 1))
    assert.near(1.5, stats.percentile({ 1, 2 }, 0.5), 1e-12)
  end)

  it("summarises unsorted values, counting NaN and Inf apart", function()
    local r = stats.summary({ 3, 0 / 0, 1, math.huge, 2, 10 })
    assert.same({ n = 6, min = 1, median = 2.5, max = 10, nonfinite = 2 },
                { n = r.n, min = r.min, median = r.median, max = r.max, nonfinite = r.nonfinite })
    assert.near(3 + 0.7 * 7, r.p90, 1e-12)   -- position 2.7 in {1,2,3,10}
  end)

  it("bins values into equal-width bins with the maximum in the last", function()
    local counts, lo, hi = stats.bin({ 0, 0.5, 1, 2.5, 3.9, 4 }, 4)
    assert.same({ 2, 1, 1, 2 }, counts)
    assert.equal(0, lo)
    assert.equal(4, hi)
  end)

  it("draws bars proportional to the counts within COLUMNS and marks the threshold", function()
    local text = stats.histogram({ 0, 0.5, 1, 2.5, 3.9, 4 }, { bins = 4, ascii = true, mark = 1.5, mark_label = "clip" })
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(4, #lines)
    local bars = {}
    for i, l in ipairs(lines) do bars[i] = #(l:match("|(#*)")) end
    assert.equal(bars[1], bars[4])
    assert.near(bars[1] / 2, bars[2], 1)
    assert.truthy(lines[2]:find("<- clip", 1, true))
    for _, l in ipairs(lines) do assert.truthy(#l <= 80, l) end
  end)
end)
