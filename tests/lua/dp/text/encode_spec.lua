-- Specs for dp.text.encode (the BERT tokenizer object): tokenising with a small vocab, pair
-- encoding with token types, longest-first truncation, padding, batches and decoding. Expected
-- ids are written by hand from the vocab in support.text_vocab.
local text = require "dp.text"
local H = require "support.text_vocab"

local id = H.id
local CLS, SEP, PAD, UNK = id("[CLS]"), id("[SEP]"), id("[PAD]"), id("[UNK]")

local function ids(list)
  local out = {}
  for i, t in ipairs(list) do out[i] = id(t) end
  return out
end

describe("dp.text.encode", function()
  local path, tok
  setup(function()
    path = H.write_vocab()
    tok = text.new(path)
  end)
  teardown(function() os.remove(path) end)

  it("tokenizes into WordPiece tokens, [UNK] for what the vocab cannot cover", function()
    assert.are.same({ "un", "##aff", "##able", "cafe", ",", "the", "dog", "'", "[UNK]", "!" },
                    tok:tokenize("Unaffable CAFÉ, the dog's!"))
    assert.are.same({ "don", "'", "t", "!", "北", "京", "abc" }, tok:tokenize("don't!北京abc"))
    assert.are.same({ "run", "##ning", "d", "##s" }, tok:tokenize("RUNNING ds"))
  end)

  it("keeps special tokens written in the text, even glued to words", function()
    assert.are.same({ "hello", "[SEP]", "world", "[MASK]" }, tok:tokenize("hello[SEP]world [MASK]"))
    -- lowercase lookalikes are ordinary text: "[", "sep", "]" are not in the vocab
    assert.are.same({ "[UNK]", "[UNK]", "[UNK]" }, tok:tokenize("[sep]"))
  end)

  it("maps a word longer than 100 characters to one [UNK]", function()
    assert.are.same({ "a", "[UNK]", "b" }, tok:tokenize("a " .. ("a"):rep(101) .. " b"))
  end)

  it("encodes a pair as [CLS] a [SEP] b [SEP] with token types 0 then 1", function()
    local e = tok:encode("the dog", "a cat")
    assert.are.same({ CLS, id("the"), id("dog"), SEP, id("a"), id("cat"), SEP }, e.input_ids)
    assert.are.same({ 0, 0, 0, 0, 1, 1, 1 }, e.token_type_ids)
    assert.are.same({ 1, 1, 1, 1, 1, 1, 1 }, e.attention_mask)
    local s = tok:encode("hello world")
    assert.are.same({ CLS, id("hello"), id("world"), SEP }, s.input_ids)
    assert.are.same({ 0, 0, 0, 0 }, s.token_type_ids)
  end)

  describe("longest-first truncation", function()
    it("cuts a single sentence to max_length - 2", function()
      assert.are.same({ CLS, id("a"), id("b"), SEP },
                      tok:encode("a b c d e", { max_length = 4 }).input_ids)
    end)

    it("cuts the much longer side first, then both", function()
      -- 5 + 2 tokens into a budget of 3: a loses 3 (to 2 = b's length), then the tie takes b's
      local e = tok:encode("a b c d e", "x x", { max_length = 6 })
      assert.are.same({ CLS, id("a"), id("b"), SEP, id("x"), SEP }, e.input_ids)
      assert.are.same({ 0, 0, 0, 0, 1, 1 }, e.token_type_ids)
    end)

    it("takes from the second sequence when both are equally long", function()
      local e = tok:encode("a b c", "d e x", { max_length = 8 })
      assert.are.same({ CLS, id("a"), id("b"), id("c"), SEP, id("d"), id("e"), SEP }, e.input_ids)
    end)

    it("keeps everything when truncation = false", function()
      local e = tok:encode("a b c d e", { max_length = 4, truncation = false })
      assert.are.equal(7, #e.input_ids)
    end)
  end)

  it("pads to max_length with [PAD], type 0 and mask 0", function()
    local e = tok:encode("the dog", { max_length = 8, padding = "max_length" })
    assert.are.same({ CLS, id("the"), id("dog"), SEP, PAD, PAD, PAD, PAD }, e.input_ids)
    assert.are.same({ 0, 0, 0, 0, 0, 0, 0, 0 }, e.token_type_ids)
    assert.are.same({ 1, 1, 1, 1, 0, 0, 0, 0 }, e.attention_mask)
    -- "longest" and false leave a single example unpadded
    assert.are.equal(4, #tok:encode("the dog", { max_length = 8, padding = "longest" }).input_ids)
    assert.are.equal(4, #tok:encode("the dog", { max_length = 8, padding = false }).input_ids)
  end)

  it("rejects bad options", function()
    assert.has_error(function() tok:encode("a", { padding = "max" }) end,
      "encode: padding must be \"max_length\", \"longest\" or false (got max)")
    assert.has_error(function() tok:encode("a", { max_length = 2 }) end,
      "encode: max_length must be an integer >= 3 (got 2)")
  end)

  describe("encode_batch", function()
    it("pads to the longest example and returns i64 (B, T) tensors", function()
      local b = tok:encode_batch({ { "the dog", "a cat" }, "hello" })
      assert.are.equal("i64", b.input_ids:dtype())
      assert.are.same({ 2, 7 }, b.input_ids:size())
      assert.are.same({ 7, 3 }, b.lengths)
      assert.are.same({ { CLS, id("the"), id("dog"), SEP, id("a"), id("cat"), SEP },
                        { CLS, id("hello"), SEP, PAD, PAD, PAD, PAD } }, b.input_ids:totable())
      assert.are.same({ { 0, 0, 0, 0, 1, 1, 1 }, { 0, 0, 0, 0, 0, 0, 0 } },
                      b.token_type_ids:totable())
      assert.are.same({ { 1, 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 0, 0, 0, 0 } },
                      b.attention_mask:totable())
    end)

    it("pads to max_length and truncates with padding = \"max_length\"", function()
      local b = tok:encode_batch({ "a b c d e", "x" }, { max_length = 5, padding = "max_length" })
      assert.are.same({ { CLS, id("a"), id("b"), id("c"), SEP }, { CLS, id("x"), SEP, PAD, PAD } },
                      b.input_ids:totable())
    end)

    it("refuses unequal lengths with padding = false", function()
      local ok, msg = pcall(tok.encode_batch, tok, { "a b", "a" }, { padding = false })
      assert.is_false(ok)
      assert.truthy(tostring(msg):find("example 2 has 3 tokens but the longest has 4", 1, true))
      local b = tok:encode_batch({ "a b", "c d" }, { padding = false })
      assert.are.same({ 2, 4 }, b.input_ids:size())
    end)
  end)

  describe("decode", function()
    it("glues ## pieces and cleans spaces before punctuation", function()
      local e = tok:encode("Unaffable don't!")
      assert.are.equal("[CLS] unaffable don't! [SEP]", tok:decode(e.input_ids))
      assert.are.equal("unaffable don't!", tok:decode(e.input_ids, { skip_special_tokens = true }))
      assert.are.equal("unaffable don ' t !",
                       tok:decode(e.input_ids, { skip_special_tokens = true, clean_up = false }))
    end)

    it("names an id outside the vocab", function()
      assert.has_error(function() tok:decode({ 1, 999 }) end,
        ("decode: id 999 at position 2 is outside the vocab (0..%d)"):format(#H.tokens - 1))
    end)
  end)

  it("is reachable as dp.text", function()
    assert.are.equal(text, require("dp").text)
  end)

  it("needs a vocab with the BERT specials", function()
    local bad = H.write_vocab({ "[PAD]", "[UNK]", "hello" })
    local ok, msg = pcall(text.new, bad)
    os.remove(bad)
    assert.is_false(ok)
    assert.truthy(tostring(msg):find(bad, 1, true))
    assert.truthy(tostring(msg):find("[CLS]", 1, true))
  end)
end)
