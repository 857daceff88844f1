-- Specs for dp.text.basic (BERT's BasicTokenizer, uncased): each expectation is written by hand
-- from BERT's rules and would break if one rule (cleaning, CJK spacing, lowercasing, accent
-- stripping, punctuation split, UTF-8 decoding) were wrong.
local basic = require "dp.text.basic"
local U = require "dp.text.unicode_data"

local function toks(s, opts) return table.concat(basic.tokenize(s, opts), " ") end

describe("dp.text.basic", function()
  it("lowercases and strips accents (NFD, then drops Mn)", function()
    assert.are.equal("cafe naive", toks("Café naïve"))
    -- decomposed input (e + U+0301) gives the same as precomposed
    assert.are.equal("cafe", toks("Cafe\204\129"))
    -- U+0130 lowercases to i + U+0307, whose dot is then stripped
    assert.are.equal("istanbul", toks("\196\176stanbul"))
    -- Angstrom sign decomposes to A + ring; o-slash has no decomposition and stays
    assert.are.equal("a \195\184", toks("\226\132\171 \195\152"))
  end)

  it("keeps case and accents when lower = false", function()
    assert.are.equal("Café", toks("Café", { lower = false }))
  end)

  it("splits punctuation into single-character tokens", function()
    assert.are.equal("don ' t !", toks("don't!"))
    assert.are.equal("a . . . b", toks("a...b"))
    -- '$', '`', '~' and '^' are ASCII punctuation for BERT though not Unicode category P
    assert.are.equal("$ 5 ` ~ ^", toks("$5`~^"))
    -- U+201C/U+201D (category Pi/Pf) and U+00BF (Po) split too; U+00A9 (So) does not
    assert.are.equal("\226\128\156 hi \226\128\157 \194\191 x\194\169y",
                     toks("\226\128\156hi\226\128\157\194\191x\194\169y"))
  end)

  it("puts spaces around CJK ideographs only", function()
    assert.are.equal("北 京 abc", toks("北京abc"))
    -- U+3400 (extension A) is in BERT's ranges; hiragana U+3042 and hangul are not
    assert.are.equal("\227\144\128 x\227\129\130\227\129\130",
                     toks("\227\144\128x\227\129\130\227\129\130"))
    -- U+20000 (extension B, 4-byte UTF-8)
    assert.are.equal("a \240\160\128\128 b", toks("a\240\160\128\128b"))
  end)

  it("decomposes Hangul syllables into jamo (NFD)", function()
    -- U+D55C -> U+1112 U+1161 U+11AB
    assert.are.equal("\225\132\146\225\133\161\225\134\171", toks("\237\149\156"))
  end)

  it("drops control and format characters, NUL and U+FFFD", function()
    -- NUL, U+0001, vertical tab (Cc, not whitespace for BERT), U+200B (Cf), U+FFFD
    assert.are.equal("abcdef", toks("a\0b\1c\11d\226\128\139e\239\191\189f"))
    -- unassigned U+0378 and private-use U+E000 count as control too (category C*)
    assert.are.equal("xy", toks("x\205\184\238\128\128y"))
  end)

  it("treats tab, newline, CR and Zs spaces as separators", function()
    assert.are.equal("a b c d e f", toks(" a\tb\nc\r\nd\194\160e\227\128\128f "))
    -- U+2028 is not Zs, but Python's str.split() still splits on it
    assert.are.equal("a b", toks("a\226\128\168b"))
    assert.are.same({}, basic.tokenize(" \t\n"))
  end)

  it("applies str.lower()'s final-sigma rule within a word unless disabled", function()
    assert.are.equal("οδος σα", toks("ΟΔΟΣ ΣΑ"))
    assert.are.equal("οδοσ", toks("ΟΔΟΣ", { final_sigma = false }))
  end)

  it("keeps never_split words whole", function()
    assert.are.equal("[SEP] [ sep ]", toks("[SEP] [sep]", { never_split = { ["[SEP]"] = true } }))
  end)

  it("decodes invalid UTF-8 as U+FFFD, which is dropped", function()
    assert.are.same({ 0x61, 0xFFFD, 0x62, 0xFFFD, 0xFFFD }, basic.decode("a\255b\192\128"))
    assert.are.equal("ab", toks("a\255b"))
    assert.are.same({ 0x20AC, 0x10348 }, basic.decode("\226\130\172\240\144\141\136"))
  end)

  it("has sorted, disjoint generated ranges and records the generator's Python", function()
    assert.is_string(U.python_version)
    for _, name in ipairs({ "control", "space_sep", "punct", "mn", "case_ignorable", "cased" }) do
      local r = U[name]
      assert.is_true(#r > 0 and #r % 2 == 0, name)
      for i = 1, #r, 2 do
        assert.is_true(r[i] <= r[i + 1], name)
        if i > 1 then assert.is_true(r[i] > r[i - 1] + 1, name) end
      end
    end
    assert.is_true(basic.in_ranges(U.mn, 0x0301))
    assert.is_false(basic.in_ranges(U.mn, 0x0041))
  end)
end)

describe("dp.text.basic ASCII fast path", function()
  -- Appending a non-ASCII word sends the same text down the general code-point path, so the two
  -- paths must agree on every ASCII string (random bytes 0-127 from an LCG).
  it("agrees with the general path on random ASCII", function()
    local state = 12345
    for _ = 1, 300 do
      local chars = {}
      state = (state * 1103515245 + 12345) % 2147483648
      for k = 1, state % 40 do
        state = (state * 1103515245 + 12345) % 2147483648
        -- bias towards letters and spaces so that words form
        local r = math.floor(state / 65536) % 160
        chars[k] = string.char(r < 128 and r or (r < 150 and 97 + r % 26 or 32))
      end
      local s = table.concat(chars)
      local fast = basic.tokenize(s)
      local slow = basic.tokenize(s .. " \195\169")
      assert.are.equal("e", table.remove(slow))
      assert.are.same(slow, fast)
      local keep = { lower = false, never_split = { ["[X]"] = true } }
      local cased = basic.tokenize(s, keep)
      cased[#cased + 1] = "\195\169"
      assert.are.same(basic.tokenize(s .. " \195\169", keep), cased)
    end
  end)

  it("keeps never_split words and drops DEL", function()
    assert.are.same({ "[X]", "ab" },
                    basic.tokenize("[X] a\127B", { never_split = { ["[X]"] = true } }))
  end)
end)
