-- dp.data.synthetic_nli: a built-in synthetic NLI task, so the BERT recipe needs no download.
--
--   local s = synthetic_nli.generate{ seed = 1, train = 20000, dev = 2000, test = 2000 }
--   -- s.train/s.dev/s.test: { premises, hypotheses, labels, rules, dropped = 0 } as dp.data.snli
--   synthetic_nli.write(dir, s)          -- train.jsonl, dev.jsonl, test.jsonl (SNLI format)
--   synthetic_nli.write_vocab(dir .. "/vocab.txt", synthetic_nli.vocab(s))
--
-- A premise is "det [adj] subject verb [object] [in the place] ." over a small lexicon with
-- hypernym trees (poodle -> dog -> animal). The hypothesis applies one rule (rules[i] names it):
--   entailment     hypernym_subject, hypernym_object, drop_adjective, drop_place, synonym
--   neutral        hyponym_subject, hyponym_object, add_adjective, add_place
--   contradiction  negation, antonym_verb, antonym_adjective, other_subject, other_place
-- As in SNLI, a pair describes one scene with one main subject, so a different place, a disjoint
-- subject (poodle vs tabby, dog vs cat) or an incompatible posture verb contradicts.
-- Held-out splits: every (subject, verb) pair of the premises belongs to exactly one split (a
-- Latin-square assignment over a seed-shuffled subject order: each subject keeps most verbs in
-- train), so dev and test premises never share a subject-verb pair with train: they measure the
-- rules on unseen combinations of known words, not memorised premises.
local snli = require "dp.data.snli"

local M = {}

-- ------------------------------------------------------------------ lexicon

-- Trees as parent maps; nouns without a parent are roots.
local function tree(spec)
  local parent, nodes = {}, {}
  for _, e in ipairs(spec) do
    nodes[#nodes + 1] = e[1]
    parent[e[1]] = e[2]
  end
  return { parent = parent, nodes = nodes }
end

local subjects = tree{
  { "animal" }, { "dog", "animal" }, { "cat", "animal" }, { "bird", "animal" },
  { "horse", "animal" },
  { "poodle", "dog" }, { "beagle", "dog" }, { "terrier", "dog" },
  { "tabby", "cat" }, { "siamese", "cat" }, { "persian", "cat" },
  { "sparrow", "bird" }, { "robin", "bird" }, { "parrot", "bird" },
  { "pony", "horse" }, { "stallion", "horse" }, { "mare", "horse" },
  { "person" }, { "child", "person" }, { "adult", "person" },
  { "boy", "child" }, { "girl", "child" }, { "man", "adult" }, { "woman", "adult" },
}
local objects = tree{
  { "toy" }, { "ball", "toy" }, { "kite", "toy" }, { "frisbee", "toy" },
  { "fruit" }, { "apple", "fruit" }, { "banana", "fruit" }, { "pear", "fruit" },
  { "vehicle" }, { "car", "vehicle" }, { "truck", "vehicle" }, { "bus", "vehicle" },
  { "sedan", "car" }, { "coupe", "car" },
}

-- Posture verbs exclude one another (a subject cannot sleep and run at once); the transitive
-- ones do not, so antonym_verb only applies to the first group. base = form after "does not".
local verbs = {
  { s = "sleeps", base = "sleep", posture = true }, { s = "sits", base = "sit", posture = true },
  { s = "stands", base = "stand", posture = true }, { s = "runs", base = "run", posture = true },
  { s = "walks", base = "walk", posture = true },
  { s = "chases", base = "chase", objects = { "toy", "vehicle" } },
  { s = "carries", base = "carry", objects = { "toy", "fruit" } },
  { s = "watches", base = "watch", objects = { "toy", "fruit", "vehicle" } },
  { s = "holds", base = "hold", objects = { "toy", "fruit" } },
}

-- Adjectives by subject root. Same scale and pole = synonyms; other pole = antonyms. Colours are
-- each their own pole, so two colours contradict.
local adjectives = {
  animal = { { "big", "size", 1 }, { "large", "size", 1 }, { "small", "size", 2 },
             { "little", "size", 2 }, { "black", "colour", 1 }, { "white", "colour", 2 },
             { "brown", "colour", 3 } },
  person = { { "tall", "height", 1 }, { "short", "height", 2 }, { "happy", "mood", 1 },
             { "glad", "mood", 1 }, { "sad", "mood", 2 } },
}
-- Places exclude one another except for the synonym pair street/road.
-- { noun, exclusion group, preposition }.
local places = { { "park", 1, "in" }, { "kitchen", 2, "in" }, { "beach", 3, "on" },
                 { "street", 4, "in" }, { "road", 4, "on" }, { "barn", 5, "in" },
                 { "forest", 6, "in" } }

M.lexicon = { subjects = subjects, objects = objects, verbs = verbs, adjectives = adjectives,
              places = places }

local function is_ancestor(t, a, b)   -- a is a proper ancestor of b
  local p = t.parent[b]
  while p do
    if p == a then return true end
    p = t.parent[p]
  end
  return false
end

local function depth(t, w)
  local d, p = 0, t.parent[w]
  while p do d, p = d + 1, t.parent[p] end
  return d
end

local function root(t, w)
  while t.parent[w] do w = t.parent[w] end
  return w
end

local function filter(list, keep)
  local out = {}
  for _, v in ipairs(list) do if keep(v) then out[#out + 1] = v end end
  return out
end

-- ------------------------------------------------------------------ random numbers

-- Park-Miller "minimal standard" generator (multiplier 48271 mod 2^31 - 1): exact in doubles, so
-- every Lua gives the same sequence; math.random's sequence is not portable.
local function rng(seed)
  local m = 2147483646   -- the state lives in 1..m; fold the seed's high part in too
  local state = (seed % m + math.floor(seed / m) % m * 16807) % m + 1
  local r = {}
  function r.int(n)   -- uniform in 1..n
    state = state * 48271 % 2147483647
    return math.floor((state - 1) / 2147483646 * n) + 1
  end
  function r.pick(list) return list[r.int(#list)] end
  function r.chance(p) return r.int(1000000) <= p * 1000000 end
  function r.shuffle(list)
    for i = #list, 2, -1 do
      local j = r.int(i)
      list[i], list[j] = list[j], list[i]
    end
    return list
  end
  for _ = 1, 10 do r.int(2) end   -- small seeds start with small states: stir them first
  return r
end

-- ------------------------------------------------------------------ sentences

local vowels = { a = true, e = true, i = true, o = true, u = true }
local function article(word) return vowels[word:sub(1, 1)] and "an" or "a" end

local function copy(s)
  local c = {}
  for k, v in pairs(s) do c[k] = v end
  return c
end

local function render(s)
  local w = {}
  local first = s.adj and s.adj[1] or s.subject
  w[#w + 1] = article(first)
  if s.adj then w[#w + 1] = s.adj[1] end
  w[#w + 1] = s.subject
  if s.negated then w[#w + 1] = "does not " .. s.verb.base else w[#w + 1] = s.verb.s end
  if s.object then w[#w + 1] = article(s.object) .. " " .. s.object end
  if s.place then w[#w + 1] = s.place[3] .. " the " .. s.place[1] end
  return table.concat(w, " ") .. " ."
end

local function random_premise(r, subject, verb)
  local s = { subject = subject, verb = verb }
  if verb.objects then
    local kind = r.pick(verb.objects)
    s.object = r.pick(filter(objects.nodes, function(o) return root(objects, o) == kind end))
  end
  if r.chance(0.5) then s.adj = r.pick(adjectives[root(subjects, subject)]) end
  if r.chance(0.5) then s.place = r.pick(places) end
  return s
end

-- Each rule: label, and a function (premise, rng) -> hypothesis, or nil when it does not apply.
local rules = {
  hypernym_subject = { "entailment", function(p, r)
    local up = {}
    local a = subjects.parent[p.subject]
    while a do up[#up + 1] = a; a = subjects.parent[a] end
    if #up == 0 then return nil end
    local h = copy(p); h.subject = r.pick(up); return h end },
  hypernym_object = { "entailment", function(p, r)
    if not p.object or not objects.parent[p.object] then return nil end
    local h = copy(p); h.object = objects.parent[p.object]; return h end },
  drop_adjective = { "entailment", function(p)
    if not p.adj then return nil end
    local h = copy(p); h.adj = nil; return h end },
  drop_place = { "entailment", function(p)
    if not p.place then return nil end
    local h = copy(p); h.place = nil; return h end },
  synonym = { "entailment", function(p, r)
    local options = {}
    if p.adj then
      for _, a in ipairs(adjectives[root(subjects, p.subject)]) do
        if a[1] ~= p.adj[1] and a[2] == p.adj[2] and a[3] == p.adj[3] then
          local h = copy(p); h.adj = a; options[#options + 1] = h
        end
      end
    end
    if p.place then
      for _, pl in ipairs(places) do
        if pl[1] ~= p.place[1] and pl[2] == p.place[2] then
          local h = copy(p); h.place = pl; options[#options + 1] = h
        end
      end
    end
    if #options == 0 then return nil end
    return r.pick(options) end },
  hyponym_subject = { "neutral", function(p, r)
    local down = filter(subjects.nodes, function(w) return is_ancestor(subjects, p.subject, w) end)
    if #down == 0 then return nil end
    local h = copy(p); h.subject = r.pick(down); return h end },
  hyponym_object = { "neutral", function(p, r)
    if not p.object then return nil end
    local down = filter(objects.nodes, function(w) return is_ancestor(objects, p.object, w) end)
    if #down == 0 then return nil end
    local h = copy(p); h.object = r.pick(down); return h end },
  add_adjective = { "neutral", function(p, r)
    if p.adj then return nil end
    local h = copy(p); h.adj = r.pick(adjectives[root(subjects, p.subject)]); return h end },
  add_place = { "neutral", function(p, r)
    if p.place then return nil end
    local h = copy(p); h.place = r.pick(places); return h end },
  negation = { "contradiction", function(p)
    local h = copy(p); h.negated = true; return h end },
  antonym_verb = { "contradiction", function(p, r)
    if not p.verb.posture then return nil end
    local h = copy(p)
    h.verb = r.pick(filter(verbs, function(v) return v.posture and v ~= p.verb end))
    return h end },
  antonym_adjective = { "contradiction", function(p, r)
    if not p.adj then return nil end
    local other = filter(adjectives[root(subjects, p.subject)], function(a)
      return a[2] == p.adj[2] and a[3] ~= p.adj[3] end)
    if #other == 0 then return nil end
    local h = copy(p); h.adj = r.pick(other); return h end },
  other_subject = { "contradiction", function(p, r)
    -- Same depth, neither above nor below: a poodle is not a tabby, a boy is not a girl.
    local d = depth(subjects, p.subject)
    local other = filter(subjects.nodes, function(w)
      return w ~= p.subject and depth(subjects, w) == d
        and root(subjects, w) == root(subjects, p.subject)
    end)
    if #other == 0 then return nil end
    local h = copy(p); h.subject = r.pick(other); return h end },   -- same root: adj still fits
  other_place = { "contradiction", function(p, r)
    if not p.place then return nil end
    local h = copy(p)
    h.place = r.pick(filter(places, function(pl) return pl[2] ~= p.place[2] end))
    return h end },
}

-- Rule names by label, in a fixed order (pairs() order is not deterministic).
local by_label = {
  entailment = { "hypernym_subject", "hypernym_object", "drop_adjective", "drop_place", "synonym" },
  neutral = { "hyponym_subject", "hyponym_object", "add_adjective", "add_place" },
  contradiction = { "negation", "antonym_verb", "antonym_adjective", "other_subject",
                    "other_place" },
}
M.rules = {}
for name, rule in pairs(rules) do M.rules[name] = rule[1] end

-- ------------------------------------------------------------------ splits

-- The (subject, verb) pairs each split's premises draw from: split = (i + j) mod 10 over a
-- seed-shuffled subject order i and verb index j; 0 -> dev, 1 -> test, the rest -> train.
local function combos(r)
  local order = r.shuffle(filter(subjects.nodes, function() return true end))
  local out = { train = {}, dev = {}, test = {} }
  for i, subject in ipairs(order) do
    for j, verb in ipairs(verbs) do
      local k = (i + j) % 10
      local split = k == 0 and "dev" or k == 1 and "test" or "train"
      out[split][#out[split] + 1] = { subject, verb }
    end
  end
  return out
end

local label_order = { "entailment", "neutral", "contradiction" }

local function make_split(r, pairs_, n)
  local d = { premises = {}, hypotheses = {}, labels = {}, rules = {}, dropped = 0 }
  -- Exact balance: labels cycle, then the order is shuffled.
  local labels = {}
  for i = 1, n do labels[i] = label_order[(i - 1) % 3 + 1] end
  r.shuffle(labels)
  for i = 1, n do
    local label = labels[i]
    while true do
      local c = r.pick(pairs_)
      local p = random_premise(r, c[1], c[2])
      local name = r.pick(by_label[label])
      local h = rules[name][2](p, r)
      if h then
        d.premises[i], d.hypotheses[i] = render(p), render(h)
        d.labels[i], d.rules[i] = snli.label_ids[rules[name][1]], name
        break
      end
    end
  end
  return d
end

local function count(opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then
    error(("synthetic_nli.generate: %s must be a non-negative integer, got %s"):format(
      key, tostring(v)), 3)
  end
  return v
end

-- generate{seed = 1, train = 20000, dev = 2000, test = 2000} -> { train =, dev =, test = }.
function M.generate(opts)
  opts = opts or {}
  local seed = opts.seed or 1
  if type(seed) ~= "number" or seed % 1 ~= 0 or seed < 0 or seed >= 2 ^ 53 then
    error("synthetic_nli.generate: seed must be an integer in [0, 2^53), got " .. tostring(seed), 2)
  end
  local sizes = { train = count(opts, "train", 20000), dev = count(opts, "dev", 2000),
                  test = count(opts, "test", 2000) }
  local r = rng(seed)
  local c = combos(r)
  local out = {}
  -- Each split has its own stream, so the dev set does not change with the train size.
  for _, split in ipairs({ "train", "dev", "test" }) do
    out[split] = make_split(rng(r.int(2147483646)), c[split], sizes[split])
  end
  return out
end

-- ------------------------------------------------------------------ files

-- write(dir, splits): dir/train.jsonl, dev.jsonl, test.jsonl in SNLI's format (sentence1,
-- sentence2, gold_label), all or nothing, which dp.data.snli.read_dir reads back. Creates dir.
function M.write(dir, splits) return snli.write_dir(dir, splits) end

-- vocab(splits) -> sorted list of every lowercase word and punctuation mark in the sentences.
function M.vocab(splits)
  local seen, words = {}, {}
  for _, d in pairs(splits) do
    for _, list in ipairs({ d.premises, d.hypotheses }) do
      for _, s in ipairs(list) do
        for w in s:lower():gmatch("[%w]+") do
          if not seen[w] then seen[w] = true; words[#words + 1] = w end
        end
        for w in s:gmatch("[%p]") do
          if not seen[w] then seen[w] = true; words[#words + 1] = w end
        end
      end
    end
  end
  table.sort(words)
  return words
end

M.specials = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }

-- write_vocab(path, words): a WordPiece vocab.txt, the special tokens first, one token a line.
function M.write_vocab(path, words)
  local lines, seen = {}, {}
  for _, w in ipairs(M.specials) do lines[#lines + 1] = w; seen[w] = true end
  for _, w in ipairs(words) do
    if not seen[w] then lines[#lines + 1] = w; seen[w] = true end
  end
  lines[#lines + 1] = ""
  snli.write_atomically({ { path, table.concat(lines, "\n") } }, "synthetic_nli.write_vocab")
end

return M
