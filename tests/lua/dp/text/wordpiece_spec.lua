-- Specs for dp.text.wordpiece: greedy longest-match-first subwords, "##" continuations, [UNK]
-- for unsegmentable or over-long words (length counted in characters, not bytes).
local wordpiece = require "dp.text.wordpiece"

local function set(list)
  local s = {}
  for i, t in ipairs(list) do s[t] = i - 1 end
  return s
end

describe("dp.text.wordpiece", function()
  local wp = wordpiece.new(set({ "[UNK]", "un", "##aff", "##able", "unaff", "##a", "##ffable",
                                 "é", "##é", "a", "##b" }))

  it("takes the longest vocab entry first", function()
    -- "unaff" beats "un"; then "##able" (no "##aff" left to match after it)
    assert.are.same({ "unaff", "##able" }, wp("unaffable"))
    -- greedy is not optimal: "un" + "##affable" is never tried once "unaff" matched
  end)

  it("marks continuations with ## and uses them only after the first piece", function()
    local wp2 = wordpiece.new(set({ "[UNK]", "un", "##aff", "##able", "able" }))
    assert.are.same({ "un", "##aff", "##able" }, wp2("unaffable"))
    assert.are.same({ "able" }, wp2("able"))
    -- "aff" alone is not in the vocab (only "##aff")
    assert.are.same({ "[UNK]" }, wp2("aff"))
  end)

  it("gives a single [UNK] for a word that cannot be fully segmented", function()
    assert.are.same({ "[UNK]" }, wp("unx"))
    assert.are.same({ "[UNK]" }, wp("zzz"))
  end)

  it("counts characters, not bytes, against max_chars", function()
    local w = wordpiece.new(set({ "[UNK]", "a", "##a", "é", "##é" }), { max_chars = 3 })
    assert.are.same({ "a", "##a", "##a" }, w("aaa"))
    assert.are.same({ "[UNK]" }, w("aaaa"))
    -- 3 characters in 6 bytes is still allowed
    assert.are.same({ "é", "##é", "##é" }, w("ééé"))
  end)

  it("defaults to 100 characters", function()
    local w = wordpiece.new(set({ "[UNK]", "a", "##a" }))
    assert.are.equal(100, #w(("a"):rep(100)))
    assert.are.same({ "[UNK]" }, w(("a"):rep(101)))
  end)

  it("uses the given unknown token", function()
    local w = wordpiece.new(set({ "<unk>" }), { unk = "<unk>" })
    assert.are.same({ "<unk>" }, w("q"))
  end)
end)
