-- dp.text.encode: the BERT tokenizer object: text -> WordPiece tokens -> ids, pair encoding
-- [CLS] a [SEP] b [SEP] with token types, longest-first truncation, padding, batches as dp
-- tensors, and decoding back to text. Follows transformers' (slow) BertTokenizer, uncased.
local vocab = require "dp.text.vocab"
local basic = require "dp.text.basic"
local wordpiece = require "dp.text.wordpiece"
local cache = require "dp.text.cache"

local M = {}
local Tokenizer = {}
Tokenizer.__index = Tokenizer
M.Tokenizer = Tokenizer

-- new(vocab_path, opts): opts.lower (default true; accents are stripped when lowercasing),
-- opts.max_chars_per_word (default 100).
function M.new(path, opts)
  opts = opts or {}
  local v = vocab.load(path)
  local self = setmetatable({ vocab = v, path = path, lower = opts.lower ~= false }, Tokenizer)
  self.never_split = {}
  for _, s in ipairs(vocab.specials) do self.never_split[s] = true end
  self.pad_id, self.unk_id = v.ids["[PAD]"], v.ids["[UNK]"]
  self.cls_id, self.sep_id, self.mask_id = v.ids["[CLS]"], v.ids["[SEP]"], v.ids["[MASK]"]
  self.wordpiece = wordpiece.new(v.ids,
    { unk = "[UNK]", max_chars = opts.max_chars_per_word or 100 })
  return self
end

-- Append to out the WordPiece tokens of a piece of text holding no special token.
function Tokenizer:_pieces(text, out)
  local words = basic.tokenize(text, { lower = self.lower, final_sigma = false })
  for _, word in ipairs(words) do
    for _, piece in ipairs(self.wordpiece(word)) do out[#out + 1] = piece end
  end
end

-- WordPiece tokens of text. Special tokens ("[SEP]", ...) written in the text are kept whole,
-- wherever they stand, as transformers splits them out before tokenising the rest.
function Tokenizer:tokenize(text)
  if type(text) ~= "string" then
    error(("Tokenizer:tokenize: text must be a string (got %s)"):format(type(text)), 2)
  end
  local out, pos = {}, 1
  while true do
    local first, last   -- the earliest special token at or after pos
    if text:find("[", pos, true) then
      for s in pairs(self.never_split) do
        local i = text:find(s, pos, true)
        if i and (not first or i < first) then first, last = i, i + #s - 1 end
      end
    end
    if not first then break end
    self:_pieces(text:sub(pos, first - 1), out)
    out[#out + 1] = text:sub(first, last)
    pos = last + 1
  end
  self:_pieces(text:sub(pos), out)
  return out
end

function Tokenizer:convert_tokens_to_ids(tokens)
  local ids, map, unk = {}, self.vocab.ids, self.unk_id
  for i, t in ipairs(tokens) do ids[i] = map[t] or unk end
  return ids
end

function Tokenizer:ids(text) return self:convert_tokens_to_ids(self:tokenize(text)) end

local paddings = { max_length = true, longest = true, [false] = true }

local function options(opts, op)
  opts = opts or {}
  local max_length = opts.max_length or 128
  if type(max_length) ~= "number" or max_length ~= math.floor(max_length) or max_length < 3 then
    error(("%s: max_length must be an integer >= 3 (got %s)"):format(op, tostring(max_length)), 3)
  end
  local padding = opts.padding
  if padding == nil then padding = op == "encode" and false or "longest" end
  if not paddings[padding] then
    error(("%s: padding must be \"max_length\", \"longest\" or false (got %s)"):format(
      op, tostring(padding)), 3)
  end
  return max_length, padding, opts.truncation ~= false
end

-- Drop tokens from the end of a and b until #a + #b <= budget, one at a time from the longer
-- (from b when they tie), as transformers' truncation="longest_first".
local function truncate_longest_first(a, b, budget)
  while #a + #b > budget do
    if #a > #b then a[#a] = nil else b[#b] = nil end
  end
end

-- Pad an encoding in place to length n.
local function pad(enc, n, pad_id)
  for i = #enc.input_ids + 1, n do
    enc.input_ids[i], enc.token_type_ids[i], enc.attention_mask[i] = pad_id, 0, 0
  end
end

-- encode(a[, b][, opts]) -> {input_ids, token_type_ids, attention_mask} (Lua arrays of 0-based
-- ids). opts: max_length (128), truncation (true: longest first), padding ("max_length",
-- "longest" (nothing to pad for one example) or false, the default).
function Tokenizer:encode(a, b, opts)
  if type(b) == "table" and opts == nil then b, opts = nil, b end
  local max_length, padding, truncation = options(opts, "encode")
  local ia = self:ids(a)
  local ib = b ~= nil and self:ids(b) or {}
  if truncation then
    truncate_longest_first(ia, ib, max_length - (b ~= nil and 3 or 2))
  end
  local ids, types = { self.cls_id }, { 0 }
  for _, id in ipairs(ia) do ids[#ids + 1] = id; types[#types + 1] = 0 end
  ids[#ids + 1] = self.sep_id; types[#types + 1] = 0
  if b ~= nil then
    for _, id in ipairs(ib) do ids[#ids + 1] = id; types[#types + 1] = 1 end
    ids[#ids + 1] = self.sep_id; types[#types + 1] = 1
  end
  local mask = {}
  for i = 1, #ids do mask[i] = 1 end
  local enc = { input_ids = ids, token_type_ids = types, attention_mask = mask }
  if padding == "max_length" then pad(enc, max_length, self.pad_id) end
  return enc
end

-- encode_batch(examples, opts) -> {input_ids, token_type_ids, attention_mask} as i64 (B, T) dp
-- tensors, plus lengths (Lua array of unpadded lengths). examples[i] is a string or {a, b}.
-- opts as encode, but padding defaults to "longest"; with padding=false all lengths must agree.
function Tokenizer:encode_batch(examples, opts)
  local max_length, padding = options(opts, "encode_batch")
  if type(examples) ~= "table" or #examples == 0 then
    error("encode_batch: examples must be a non-empty array of strings or {a, b} pairs", 2)
  end
  local encs, lengths, longest = {}, {}, 0
  local one = { max_length = max_length, truncation = not (opts and opts.truncation == false),
                padding = false }
  for i, p in ipairs(examples) do
    if type(p) == "table" then encs[i] = self:encode(p[1], p[2], one)
    else encs[i] = self:encode(p, nil, one) end
    lengths[i] = #encs[i].input_ids
    longest = math.max(longest, lengths[i])
  end
  local T = padding == "max_length" and math.max(max_length, longest) or longest
  if padding == false then
    for i, n in ipairs(lengths) do
      if n ~= longest then
        error(("encode_batch: example %d has %d tokens but the longest has %d; use "
               .. "padding=\"longest\" or \"max_length\""):format(i, n, longest), 2)
      end
    end
  end
  local B = #examples
  local flat = { input_ids = {}, token_type_ids = {}, attention_mask = {} }
  for i, enc in ipairs(encs) do
    pad(enc, T, self.pad_id)
    for name, arr in pairs(flat) do
      local src, base = enc[name], (i - 1) * T
      for t = 1, T do arr[base + t] = src[t] end
    end
  end
  local dp = require "dp"
  local out = { lengths = lengths }
  for name, arr in pairs(flat) do out[name] = dp.from_f64(arr, { B, T }, "i64") end
  return out
end

-- cached(cache_path, data_path, max_length, build) -> value, hit: build() (tokenising data_path)
-- run once and kept in cache_path, keyed by the vocab file's and the data file's path, size and
-- mtime and by max_length (see dp.text.cache).
function Tokenizer:cached(cache_path, data_path, max_length, build)
  local key = { "dp.text", cache.file_key(self.path), cache.file_key(data_path),
                "max_length=" .. tostring(max_length) }
  return cache.cache(cache_path, key, build)
end

-- The strings transformers' clean_up_tokenization removes a space before.
local cleanups = { { " %.", "." }, { " %?", "?" }, { " !", "!" }, { " ,", "," }, { " ' ", "'" },
                   { " n't", "n't" }, { " 'm", "'m" }, { " 's", "'s" }, { " 've", "'ve" },
                   { " 're", "'re" } }

-- decode(ids[, opts]) -> text: tokens joined by spaces, "##" pieces glued to the previous one.
-- opts.skip_special_tokens (default false), opts.clean_up (default true, as BERT's tokenizer).
function Tokenizer:decode(ids, opts)
  opts = opts or {}
  local words = {}
  for i = 1, #ids do
    local id = tonumber(ids[i])
    local tok = self.vocab.tokens[id]
    if tok == nil then
      error(("decode: id %s at position %d is outside the vocab (0..%d)"):format(
        tostring(ids[i]), i, self.vocab.size - 1), 2)
    end
    if not (opts.skip_special_tokens and self.never_split[tok]) then words[#words + 1] = tok end
  end
  local text = table.concat(words, " "):gsub(" ##", "")
  if opts.clean_up ~= false then
    for _, c in ipairs(cleanups) do text = text:gsub(c[1], c[2]) end
  end
  return text
end

return M
