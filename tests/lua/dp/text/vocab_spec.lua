-- Specs for dp.text.vocab: ids are 0-based line numbers, and bad files give errors naming the
-- file, the line and what was expected.
local vocab = require "dp.text.vocab"
local H = require "support.text_vocab"

local function err(f, ...)
  local ok, msg = pcall(f, ...)
  assert.is_false(ok)
  return tostring(msg)
end

describe("dp.text.vocab", function()
  it("maps tokens to 0-based line numbers and back", function()
    local path = H.write_vocab()
    local v = vocab.load(path)
    os.remove(path)
    assert.are.equal(#H.tokens, v.size)
    assert.are.equal(0, v.ids["[PAD]"])
    assert.are.equal(5, v.ids["un"])
    assert.are.equal("##aff", v.tokens[6])
    assert.are.equal("x", v.tokens[v.size - 1])
  end)

  it("reads CRLF files and a last line without newline", function()
    local path = os.tmpname()
    local f = io.open(path, "wb")
    f:write("[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhi")
    f:close()
    local v = vocab.load(path)
    os.remove(path)
    assert.are.equal(6, v.size)
    assert.are.equal(4, v.ids["[MASK]"])
    assert.are.equal(5, v.ids["hi"])
  end)

  it("rejects a duplicate token, naming both lines", function()
    local path = H.write_vocab({ "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "a" })
    local msg = err(vocab.load, path)
    os.remove(path)
    assert.truthy(msg:find(path, 1, true))
    assert.truthy(msg:find("line 8: duplicate token \"a\" (first on line 6)", 1, true))
  end)

  it("rejects an empty line, naming it", function()
    local path = H.write_vocab({ "[PAD]", "[UNK]", "", "[CLS]", "[SEP]", "[MASK]" })
    local msg = err(vocab.load, path)
    os.remove(path)
    assert.truthy(msg:find(path .. " line 3: empty line", 1, true))
  end)

  it("names missing special tokens", function()
    local path = H.write_vocab({ "[PAD]", "[UNK]", "[CLS]", "hello" })
    local msg = err(vocab.load, path)
    assert.truthy(msg:find(path, 1, true))
    assert.truthy(msg:find("missing special tokens [SEP], [MASK]", 1, true))
    -- accepted when the caller asks for no specials
    assert.are.equal(4, vocab.load(path, { required = {} }).size)
    os.remove(path)
  end)

  it("names a missing or empty file", function()
    local msg = err(vocab.load, "/nonexistent/dir/vocab.txt")
    assert.truthy(msg:find("cannot open vocab file /nonexistent/dir/vocab.txt", 1, true))
    local path = os.tmpname()
    msg = err(vocab.load, path)
    os.remove(path)
    assert.truthy(msg:find(path .. ": no tokens", 1, true))
  end)
end)
