-- dp.text.basic: BERT's BasicTokenizer (Hugging Face BertTokenizer, uncased): cleaning, CJK
-- spacing, whitespace split, lowercasing, accent stripping and punctuation split, on code points
-- decoded from UTF-8 by hand. Tables come from the generated dp.text.unicode_data.
local U = require "dp.text.unicode_data"

local M = {}

local floor, char, concat = math.floor, string.char, table.concat
local byte = string.byte

-- Whether cp lies in a flat, sorted range array {lo1, hi1, lo2, hi2, ...} (binary search).
local function in_ranges(r, cp)
  local lo, hi = 1, #r / 2
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    if cp < r[2 * mid - 1] then hi = mid - 1
    elseif cp > r[2 * mid] then lo = mid + 1
    else return true end
  end
  return false
end
M.in_ranges = in_ranges

-- Code points of s. A byte that does not start a valid UTF-8 sequence decodes as U+FFFD, which
-- cleaning drops (Python would refuse to decode such a file at all).
function M.decode(s)
  local out, n, i, len = {}, 0, 1, #s
  while i <= len do
    local c, cp, need = byte(s, i), 0xFFFD, 0
    if c < 0x80 then cp = c
    elseif c >= 0xC2 and c < 0xE0 then cp, need = c - 0xC0, 1
    elseif c >= 0xE0 and c < 0xF0 then cp, need = c - 0xE0, 2
    elseif c >= 0xF0 and c < 0xF5 then cp, need = c - 0xF0, 3 end
    local j = i + 1
    for _ = 1, need do
      local d = byte(s, j)
      if not d or d < 0x80 or d > 0xBF then cp, need = 0xFFFD, 0; break end
      cp = cp * 64 + (d - 0x80)
      j = j + 1
    end
    -- overlong forms, surrogates and values past U+10FFFF are invalid too
    if (need == 2 and (cp < 0x800 or (cp >= 0xD800 and cp <= 0xDFFF)))
        or (need == 3 and (cp < 0x10000 or cp > 0x10FFFF)) then
      cp = 0xFFFD
    end
    n = n + 1
    out[n] = cp
    i = (cp == 0xFFFD and need == 0 and c >= 0x80) and i + 1 or j
  end
  return out
end

-- UTF-8 for code points cps[i..j].
function M.encode(cps, i, j)
  local buf = {}
  for k = i or 1, j or #cps do
    local cp = cps[k]
    if cp < 0x80 then buf[#buf + 1] = char(cp)
    elseif cp < 0x800 then buf[#buf + 1] = char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
    elseif cp < 0x10000 then
      buf[#buf + 1] = char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
    else
      buf[#buf + 1] = char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
                           0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
    end
  end
  return concat(buf)
end

-- The code point classes BERT uses (transformers' _is_whitespace, _is_control, _is_punctuation,
-- _is_chinese_char).
local function is_whitespace(cp)
  return cp == 32 or cp == 9 or cp == 10 or cp == 13 or in_ranges(U.space_sep, cp)
end
local function is_control(cp) return in_ranges(U.control, cp) end
local function is_punct(cp)
  if (cp >= 33 and cp <= 47) or (cp >= 58 and cp <= 64) or (cp >= 91 and cp <= 96)
      or (cp >= 123 and cp <= 126) then
    return true
  end
  return cp > 127 and in_ranges(U.punct, cp)
end
local function is_cjk(cp)
  return (cp >= 0x4E00 and cp <= 0x9FFF) or (cp >= 0x3400 and cp <= 0x4DBF)
      or (cp >= 0x20000 and cp <= 0x2A6DF) or (cp >= 0x2A700 and cp <= 0x2B73F)
      or (cp >= 0x2B740 and cp <= 0x2B81F) or (cp >= 0x2B820 and cp <= 0x2CEAF)
      or (cp >= 0xF900 and cp <= 0xFAFF) or (cp >= 0x2F800 and cp <= 0x2FA1F)
end
-- Python's str.split() separators left after cleaning: the space and U+2028/U+2029.
local function is_split_space(cp) return cp == 32 or (cp > 127 and in_ranges(U.extra_space, cp)) end
M.is_whitespace, M.is_control, M.is_punct, M.is_cjk = is_whitespace, is_control, is_punct, is_cjk

-- Memoised class of each code point seen: 0 drop, 1 space, 2 CJK, 3 other.
local class_memo = {}
local function class(cp)
  local k = class_memo[cp]
  if k then return k end
  if is_whitespace(cp) then k = 1
  elseif cp == 0 or cp == 0xFFFD or is_control(cp) then k = 0
  elseif is_cjk(cp) then k = 2
  else k = 3 end
  class_memo[cp] = k
  return k
end

-- Cleaned text split into words (arrays of code points): cleaning, CJK spacing, whitespace split.
local function words(cps)
  local out, cur = {}, {}
  local function flush()
    if #cur > 0 then out[#out + 1] = cur; cur = {} end
  end
  for i = 1, #cps do
    local cp = cps[i]
    local k = class(cp)
    if k == 1 then flush()
    elseif k == 2 then flush(); out[#out + 1] = { cp }
    elseif k == 3 then
      if is_split_space(cp) then flush() else cur[#cur + 1] = cp end
    end
  end
  flush()
  return out
end

-- Python's str.lower() of a word, with the Final_Sigma rule for U+03A3 when final_sigma is set
-- (BertTokenizer itself lowercases one character at a time first, so there U+03A3 -> U+03C3).
local function lower(w, final_sigma)
  local out, lmap = {}, U.lower
  for i = 1, #w do
    local cp = w[i]
    if cp == 0x03A3 and final_sigma then
      local j = i - 1
      while j >= 1 and in_ranges(U.case_ignorable, w[j]) do j = j - 1 end
      local final = j >= 1 and in_ranges(U.cased, w[j])
      if final then
        j = i + 1
        while j <= #w and in_ranges(U.case_ignorable, w[j]) do j = j + 1 end
        final = j > #w or not in_ranges(U.cased, w[j])
      end
      out[#out + 1] = final and 0x03C2 or 0x03C3
    elseif cp < 65 then out[#out + 1] = cp
    else
      local m = lmap[cp]
      if m then
        for k = 1, #m do out[#out + 1] = m[k] end
      else
        out[#out + 1] = cp
      end
    end
  end
  return out
end

-- NFD, then drop category Mn. Canonical reordering is skipped: it only permutes combining marks,
-- and the nonspacing ones are dropped right after.
local function strip_accents(w)
  local out, nfd, mn = {}, U.nfd, U.mn
  local function put(cp)
    if cp < 0x300 or not in_ranges(mn, cp) then out[#out + 1] = cp end
  end
  for i = 1, #w do
    local cp = w[i]
    if cp >= 0xAC00 and cp <= 0xD7A3 then
      -- Hangul syllable -> leading, vowel and optional trailing jamo (Unicode ch. 3.12)
      local s = cp - 0xAC00
      put(0x1100 + floor(s / 588)); put(0x1161 + floor((s % 588) / 28))
      if s % 28 ~= 0 then put(0x11A7 + s % 28) end
    else
      local d = cp >= 0xC0 and nfd[cp]
      if d then
        for k = 1, #d do put(d[k]) end
      else
        put(cp)
      end
    end
  end
  return out
end

-- Append to out the pieces of w split around punctuation (each punctuation mark alone).
local function split_punct(w, out)
  local start = 1
  for i = 1, #w do
    if is_punct(w[i]) then
      if i > start then out[#out + 1] = M.encode(w, start, i - 1) end
      out[#out + 1] = M.encode(w, i, i)
      start = i + 1
    end
  end
  if #w >= start then out[#out + 1] = M.encode(w, start, #w) end
end

-- The same for pure ASCII text, with string patterns (LuaJIT's character classes are ASCII-only
-- and locale-free; %p is exactly BERT's ASCII punctuation). Most English text takes this path.
local function ascii_tokenize(text, do_lower, never, out)
  text = text:gsub("[%z\1-\8\11\12\14-\31\127]", "")   -- Cc other than \t \n \r
  for w in text:gmatch("[^ \t\n\r]+") do
    if never and never[w] then
      out[#out + 1] = w
    else
      if do_lower then w = w:lower() end
      local pos = 1
      while true do
        local i = w:find("%p", pos)
        if not i then
          if pos <= #w then out[#out + 1] = w:sub(pos) end
          break
        end
        if i > pos then out[#out + 1] = w:sub(pos, i - 1) end
        out[#out + 1] = w:sub(i, i)
        pos = i + 1
      end
    end
  end
  return out
end

-- Basic tokens (UTF-8 strings) of text. opts: lower (default true), strip_accents (default: as
-- lower), never_split (set of words kept whole, e.g. the special tokens), final_sigma (default
-- true: str.lower()'s context rule for U+03A3, as transformers' BasicTokenizer alone applies).
function M.tokenize(text, opts)
  opts = opts or {}
  local do_lower = opts.lower ~= false
  local strip = opts.strip_accents
  if strip == nil then strip = do_lower end
  local never = opts.never_split
  local out = {}
  if not text:find("[\128-\255]") then return ascii_tokenize(text, do_lower, never, out) end
  for _, w in ipairs(words(M.decode(text))) do
    local s = never and M.encode(w)
    if s and never[s] then
      out[#out + 1] = s
    else
      if do_lower then w = lower(w, opts.final_sigma ~= false) end
      if strip then w = strip_accents(w) end
      split_punct(w, out)
    end
  end
  return out
end

return M
