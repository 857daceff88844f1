-- Specs for dp.train.nli: the synthetic set is written once and reused, tokenised pairs match the
-- tokenizer's own pair encoding, a malformed jsonl line surfaces as an error naming the file and
-- line, and accuracy counts hits in eval mode and restores the training flag.
local dp = require "dp"
local nli = require "dp.train.nli"

local root = os.tmpname()
os.remove(root)

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

describe("dp.train.nli", function()
  teardown(function() os.execute("rm -rf '" .. root .. "'") end)
  local dir, vocab = nli.synthetic(root .. "/syn", { seed = 2, train = 40, dev = 12, test = 12 })
  local tok = dp.text.new(vocab)

  it("writes the synthetic set once and reuses it", function()
    local f = assert(io.open(dir .. "/train.jsonl", "rb"))
    local first = f:read("*a")
    f:close()
    write(dir .. "/marker", "x")
    local again = nli.synthetic(root .. "/syn", { seed = 2, train = 40, dev = 12, test = 12 })
    assert.equal(dir, again)
    f = assert(io.open(dir .. "/train.jsonl", "rb"))
    assert.equal(first, f:read("*a"))
    f:close()
    local _, n = first:gsub("\n", "")
    assert.equal(40, n)
  end)

  it("encodes each pair as the tokenizer does, padded to the split's longest", function()
    local s = nli.load(dir, tok, { max_length = 32, cache_dir = root .. "/cache" })
    local raw = dp.data.snli.read(dir .. "/dev.jsonl")
    local ids, mask, types = s.dev.input_ids:totable(), s.dev.attention_mask:totable(), s.dev.token_type_ids:totable()
    assert.equal(12, s.dev.n)
    local T = #ids[1]
    for i = 1, 12 do
      local e = tok:encode(raw.premises[i], raw.hypotheses[i], { max_length = 32 })
      for t = 1, T do
        assert.equal(e.input_ids[t] or tok.pad_id, ids[i][t])
        assert.equal(e.token_type_ids[t] or 0, types[i][t])
        assert.equal(e.input_ids[t] and 1 or 0, mask[i][t])
      end
    end
    assert.same(raw.labels, s.dev.labels:totable())
    -- a second load comes from the cache with the same tensors
    local again = nli.load(dir, tok, { max_length = 32, cache_dir = root .. "/cache" })
    assert.same(ids, again.dev.input_ids:totable())
  end)

  it("a malformed jsonl line is an error naming the file and the line", function()
    local bad = root .. "/bad"
    nli.mkdirs(bad)
    local good = '{"sentence1": "a dog runs .", "sentence2": "an animal runs .", "gold_label": "entailment"}\n'
    write(bad .. "/train.jsonl", good .. '{"sentence1": "a cat", "gold_label": "neutral"}\n')
    write(bad .. "/dev.jsonl", good)
    write(bad .. "/test.jsonl", good)
    -- pcall, not error_matches: luassert strips a leading "file:line: " from messages
    local ok, err = pcall(nli.load, bad, tok)
    assert.is_false(ok)
    assert.truthy(err:find(bad .. "/train.jsonl:2: field 'sentence2' is missing", 1, true), err)
  end)

  it("counts accuracy in eval mode and restores training mode", function()
    local s = nli.load(dir, tok, { max_length = 32 })
    local model = dp.nn.BertForSequenceClassification({ vocab_size = tok.vocab.size, hidden_size = 8,
      num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 16, max_position_embeddings = 32,
      num_labels = 3, hidden_dropout_prob = 0.5 }, { seed = 1 })
    model:train()
    local acc = nli.accuracy(model, s.test, 5)   -- batches of 5, 5, 2
    assert.is_true(model.training)
    -- independent count: eval mode, one forward over the whole split
    model:eval()
    local pred = dp.no_grad(function()
      return model:forward{ input_ids = s.test.input_ids, token_type_ids = s.test.token_type_ids,
                            attention_mask = s.test.attention_mask }:argmax(2):totable()
    end)
    local hits = 0
    for i, l in ipairs(s.test.labels:totable()) do if pred[i] == l then hits = hits + 1 end end
    assert.equal(hits / 12, acc)
  end)
end)
