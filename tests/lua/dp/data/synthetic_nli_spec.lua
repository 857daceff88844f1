-- Specs for dp.data.synthetic_nli: determinism, sizes, class balance, every label re-derived by a
-- checker with its own lexicon, dev/test premises disjoint from train by (subject, verb), the
-- write -> dp.data.snli.read_dir round trip, and the vocabulary.
local gen = require "dp.data.synthetic_nli"
local snli = require "dp.data.snli"

-- ------------------------------------------------------------------ the checker's own lexicon

local subject_parent = {
  dog = "animal", cat = "animal", bird = "animal", horse = "animal",
  poodle = "dog", beagle = "dog", terrier = "dog", tabby = "cat", siamese = "cat", persian = "cat",
  sparrow = "bird", robin = "bird", parrot = "bird", pony = "horse", stallion = "horse",
  mare = "horse", child = "person", adult = "person", boy = "child", girl = "child",
  man = "adult", woman = "adult", animal = false, person = false,
}
local object_parent = {
  ball = "toy", kite = "toy", frisbee = "toy", apple = "fruit", banana = "fruit", pear = "fruit",
  car = "vehicle", truck = "vehicle", bus = "vehicle", sedan = "car", coupe = "car",
  toy = false, fruit = false, vehicle = false,
}
local verb_base = { sleeps = "sleep", sits = "sit", stands = "stand", runs = "run", walks = "walk",
                    chases = "chase", carries = "carry", watches = "watch", holds = "hold" }
local posture = { sleeps = true, sits = true, stands = true, runs = true, walks = true }
-- adjective -> scale and pole; synonyms share both, antonyms share the scale only.
local adjective = {
  big = "size+", large = "size+", small = "size-", little = "size-",
  black = "colour1", white = "colour2", brown = "colour3",
  tall = "height+", short = "height-", happy = "mood+", glad = "mood+", sad = "mood-",
}
local place_group = { park = 1, kitchen = 2, beach = 3, street = 4, road = 4, barn = 5, forest = 6 }
local expected_label = {
  hypernym_subject = 0, hypernym_object = 0, drop_adjective = 0, drop_place = 0, synonym = 0,
  hyponym_subject = 1, hyponym_object = 1, add_adjective = 1, add_place = 1,
  negation = 2, antonym_verb = 2, antonym_adjective = 2, other_subject = 2, other_place = 2,
}

local function above(parent, a, b)   -- a is a proper ancestor of b
  local p = parent[b]
  while p do
    if p == a then return true end
    p = parent[p]
  end
  return false
end

local function article_ok(art, word)
  return art == (word:match("^[aeiou]") and "an" or "a")
end

-- "det [adj] subject (verb | does not base) [det object] [prep the place] ." -> slots, or error.
local function parse(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  local i, out = 2, {}
  assert(t[#t] == ".", s)
  if adjective[t[i]] then out.adj = t[i]; i = i + 1 end
  assert(article_ok(t[1], t[2]), "article in " .. s)
  out.subject = t[i]; i = i + 1
  assert(subject_parent[out.subject] ~= nil, "subject in " .. s)
  if t[i] == "does" then
    assert(t[i + 1] == "not", s)
    out.negated = true
    for v, b in pairs(verb_base) do if b == t[i + 2] then out.verb = v end end
    i = i + 3
  else
    out.verb = t[i]; i = i + 1
  end
  assert(verb_base[out.verb], "verb in " .. s)
  if t[i] == "a" or t[i] == "an" then
    out.object = t[i + 1]
    assert(object_parent[out.object] ~= nil and article_ok(t[i], t[i + 1]), "object in " .. s)
    i = i + 2
  end
  if t[i] == "in" or t[i] == "on" then
    assert(t[i + 1] == "the" and place_group[t[i + 2]], "place in " .. s)
    out.place = t[i + 2]; i = i + 3
  end
  assert(i == #t, "trailing words in " .. s)
  return out
end

local slots = { "adj", "subject", "negated", "verb", "object", "place" }

-- The slots in which p and h differ, as a set, and how many.
local function diff(p, h)
  local d, n = {}, 0
  for _, k in ipairs(slots) do
    if p[k] ~= h[k] then d[k] = true; n = n + 1 end
  end
  return d, n
end

-- Whether the pair (p, h) is an instance of the rule; the label is then expected_label[rule].
local checks = {
  hypernym_subject = function(p, h, d, n)
    return n == 1 and d.subject and above(subject_parent, h.subject, p.subject) end,
  hyponym_subject = function(p, h, d, n)
    return n == 1 and d.subject and above(subject_parent, p.subject, h.subject) end,
  hypernym_object = function(p, h, d, n)
    return n == 1 and d.object and above(object_parent, h.object, p.object) end,
  hyponym_object = function(p, h, d, n)
    return n == 1 and d.object and above(object_parent, p.object, h.object) end,
  drop_adjective = function(p, h, d, n) return n == 1 and p.adj and not h.adj end,
  add_adjective = function(p, h, d, n) return n == 1 and h.adj and not p.adj end,
  drop_place = function(p, h, d, n) return n == 1 and p.place and not h.place end,
  add_place = function(p, h, d, n) return n == 1 and h.place and not p.place end,
  synonym = function(p, h, d, n)
    if n ~= 1 then return false end
    if d.adj then return p.adj and h.adj and adjective[p.adj] == adjective[h.adj] end
    return d.place and p.place and h.place and place_group[p.place] == place_group[h.place]
  end,
  negation = function(p, h, d, n) return n == 1 and h.negated and not p.negated end,
  antonym_verb = function(p, h, d, n)
    return n == 1 and d.verb and posture[p.verb] and posture[h.verb] end,
  antonym_adjective = function(p, h, d, n)
    return n == 1 and p.adj and h.adj and adjective[p.adj]:sub(1, -2) == adjective[h.adj]:sub(1, -2)
      and adjective[p.adj] ~= adjective[h.adj] end,
  other_subject = function(p, h, d, n)
    return n == 1 and d.subject and not above(subject_parent, p.subject, h.subject)
      and not above(subject_parent, h.subject, p.subject) end,
  other_place = function(p, h, d, n)
    return n == 1 and p.place and h.place and place_group[p.place] ~= place_group[h.place] end,
}

local function words_of(s)
  local out = {}
  for w in s:gmatch("%S+") do out[#out + 1] = w end
  return out
end

describe("dp.data.synthetic_nli", function()
  local small = gen.generate{ seed = 3, train = 3000, dev = 600, test = 600 }

  it("is deterministic in the seed, and other seeds give other data", function()
    local again = gen.generate{ seed = 3, train = 3000, dev = 600, test = 600 }
    assert.are.same(small, again)
    local other = gen.generate{ seed = 4, train = 3000, dev = 600, test = 600 }
    local same = 0
    for i = 1, 3000 do
      if other.train.premises[i] == small.train.premises[i] then same = same + 1 end
    end
    assert.is_true(same < 300, "seeds 3 and 4 share " .. same .. " premises")
    -- Each split has its own stream: the dev set does not depend on the train size.
    local bigger = gen.generate{ seed = 3, train = 50, dev = 600, test = 10 }
    assert.are.same(small.dev, bigger.dev)
  end)

  it("has the asked sizes, and the defaults", function()
    local d = gen.generate{ seed = 1 }
    for split, n in pairs({ train = 20000, dev = 2000, test = 2000 }) do
      for _, key in ipairs({ "premises", "hypotheses", "labels", "rules" }) do
        assert.are.equal(n, #d[split][key], split .. "." .. key)
      end
      assert.are.equal(0, d[split].dropped)
    end
    assert.are.equal(0, #gen.generate{ seed = 1, train = 0, dev = 5, test = 5 }.train.labels)
    assert.has_error(function() gen.generate{ train = -1 } end)
    assert.has_error(function() gen.generate{ seed = 1.5 } end)
  end)

  it("balances the classes and uses every rule", function()
    for _, split in ipairs({ "train", "dev", "test" }) do
      local d, count = small[split], { [0] = 0, 0, 0 }
      for _, l in ipairs(d.labels) do count[l] = count[l] + 1 end
      for l = 0, 2 do
        assert.is_true(math.abs(count[l] - #d.labels / 3) <= 0.03 * #d.labels,
                       ("%s class %d: %d of %d"):format(split, l, count[l], #d.labels))
      end
    end
    local used = {}
    for _, r in ipairs(small.train.rules) do used[r] = (used[r] or 0) + 1 end
    for rule in pairs(expected_label) do
      assert.is_true((used[rule] or 0) >= 30, rule .. " used " .. tostring(used[rule]) .. " times")
    end
  end)

  it("labels every example as its rule says, checked by an independent parser", function()
    for _, split in ipairs({ "train", "dev", "test" }) do
      local d = small[split]
      for i = 1, #d.labels do
        local rule = d.rules[i]
        local p, h = parse(d.premises[i]), parse(d.hypotheses[i])
        assert.is_falsy(p.negated, d.premises[i])
        local dd, n = diff(p, h)
        local where = ("%s %d [%s] %s => %s"):format(split, i, rule, d.premises[i], d.hypotheses[i])
        assert.is_truthy(checks[rule], where)
        assert.is_truthy(checks[rule](p, h, dd, n), where)
        assert.are.equal(expected_label[rule], d.labels[i], where)
        -- "not" appears only in negation examples, which are all contradictions.
        assert.are.equal(rule == "negation", d.hypotheses[i]:find(" not ") ~= nil, where)
      end
    end
  end)

  it("holds out dev and test (subject, verb) pairs of the premises, over known words", function()
    local pairs_of, words = {}, {}
    for _, split in ipairs({ "train", "dev", "test" }) do
      pairs_of[split], words[split] = {}, {}
      local d = small[split]
      for i = 1, #d.labels do
        local p = parse(d.premises[i])
        pairs_of[split][p.subject .. " " .. p.verb] = true
        for _, s in ipairs({ d.premises[i], d.hypotheses[i] }) do
          for _, w in ipairs(words_of(s)) do words[split][w] = true end
        end
      end
    end
    for _, a in ipairs({ "train", "dev" }) do
      for _, b in ipairs({ "dev", "test" }) do
        if a ~= b then
          for key in pairs(pairs_of[b]) do
            assert.is_nil(pairs_of[a][key], key .. " in both " .. a .. " and " .. b)
          end
        end
      end
    end
    -- The held-out pairs still use words the model trained on.
    for _, split in ipairs({ "dev", "test" }) do
      for w in pairs(words[split]) do assert.is_true(words.train[w], w .. " not in train") end
    end
  end)

  it("writes SNLI jsonl that dp.data.snli.read_dir reads back, and a vocab.txt", function()
    local dir = os.tmpname()
    os.remove(dir)
    local ok, err = pcall(function()
      gen.write(dir .. "/nli", small)
      local back = snli.read_dir(dir .. "/nli")
      for _, split in ipairs({ "train", "dev", "test" }) do
        assert.are.same(small[split].premises, back[split].premises)
        assert.are.same(small[split].hypotheses, back[split].hypotheses)
        assert.are.same(small[split].labels, back[split].labels)
        assert.is_nil(io.open(dir .. "/nli/" .. split .. ".jsonl.tmp"))
      end
      local words = gen.vocab(small)
      gen.write_vocab(dir .. "/nli/vocab.txt", words)
      local lines = {}
      for l in io.lines(dir .. "/nli/vocab.txt") do lines[#lines + 1] = l end
      assert.are.same({ "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }, { unpack(lines, 1, 5) })
      assert.are.same(words, { unpack(lines, 6) })
    end)
    os.execute("rm -rf '" .. dir .. "'")
    if not ok then error(err, 0) end
  end)

  it("vocab is sorted, unique, and covers every word", function()
    local words = gen.vocab(small)
    local set = {}
    for i, w in ipairs(words) do
      assert.is_nil(set[w], "duplicate " .. w)
      set[w] = true
      if i > 1 then assert.is_true(words[i - 1] < w) end
      assert.are.equal(w:lower(), w)
    end
    for _, d in pairs(small) do
      for _, list in ipairs({ d.premises, d.hypotheses }) do
        for _, s in ipairs(list) do
          for _, w in ipairs(words_of(s)) do assert.is_true(set[w], w) end
        end
      end
    end
    assert.are.same({ ".", "a", "dog", "runs" },
      gen.vocab({ x = { premises = { "A dog runs." }, hypotheses = { "a dog." } } }))
  end)
end)
