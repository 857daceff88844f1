-- dp.util.json: a small JSON encoder and decoder for bench output, metrics and configs.
-- Decoding errors name the line, column and byte; encoding errors name the path ($.a[2]).
local M = {}

-- Decoded JSON null (a unique value, so arrays keep their length and keys are not lost).
M.null = setmetatable({}, { __tostring = function() return "null" end })

-- Tables marked with json.object({}) encode as {} even when empty (an empty table is []).
local object_mark = setmetatable({}, { __mode = "k" })
function M.object(t)
  t = t or {}
  object_mark[t] = true
  return t
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t",
}

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function is_array(t)
  if object_mark[t] then return false end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = math.max(n, k)
  end
  return n == #t or next(t) == nil
end

local function encode_number(v, path)
  if v ~= v or v == math.huge or v == -math.huge then
    error(("json.encode: %s is %s, which JSON cannot represent"):format(path, tostring(v)), 0)
  end
  if v % 1 == 0 and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
  -- The shortest of 15..17 digits that reads back as the same double.
  for digits = 15, 16 do
    local s = ("%." .. digits .. "g"):format(v)
    if tonumber(s) == v then return s end
  end
  return ("%.17g"):format(v)
end

local function encode(v, path, indent, depth, seen, out)
  local kind = type(v)
  if v == nil or v == M.null then
    out[#out + 1] = "null"
  elseif kind == "boolean" then
    out[#out + 1] = tostring(v)
  elseif kind == "number" then
    out[#out + 1] = encode_number(v, path)
  elseif kind == "string" then
    out[#out + 1] = encode_string(v)
  elseif kind == "table" then
    if seen[v] then error(("json.encode: %s is a cycle"):format(path), 0) end
    seen[v] = true
    local newline = indent and "\n" .. indent:rep(depth + 1) or ""
    local close = indent and "\n" .. indent:rep(depth) or ""
    local colon = indent and ": " or ":"
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]" else
        out[#out + 1] = "["
        for i = 1, #v do
          out[#out + 1] = (i > 1 and "," or "") .. newline
          encode(v[i], ("%s[%d]"):format(path, i), indent, depth + 1, seen, out)
        end
        out[#out + 1] = close .. "]"
      end
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" and type(k) ~= "number" then
          error(("json.encode: %s has a %s key"):format(path, type(k)), 0)
        end
        keys[#keys + 1] = k
      end
      -- Sorted keys: the same table always encodes to the same text.
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      if #keys == 0 then out[#out + 1] = "{}" else
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          out[#out + 1] = (i > 1 and "," or "") .. newline .. encode_string(tostring(k)) .. colon
          encode(v[k], path .. "." .. tostring(k), indent, depth + 1, seen, out)
        end
        out[#out + 1] = close .. "}"
      end
    end
    seen[v] = nil
  else
    error(("json.encode: %s is a %s, which JSON cannot represent"):format(path, kind), 0)
  end
end

-- encode(value, {indent = "  "}) -> string.
function M.encode(value, opts)
  local out = {}
  encode(value, "$", opts and opts.indent, 0, {}, out)
  return table.concat(out)
end

-- ------------------------------------------------------------------ decoding

local function fail(s, pos, what)
  local line, col = 1, 1
  for i = 1, math.min(pos - 1, #s) do
    if s:byte(i) == 10 then line, col = line + 1, 1 else col = col + 1 end
  end
  local near = pos <= #s and ("near '%s'"):format(s:sub(pos, pos + 9)) or "at the end of input"
  error(("json.decode: %s at line %d column %d (byte %d), %s"):format(what, line, col, pos, near), 0)
end

local function skip(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local function utf8(code)
  if code < 0x80 then return string.char(code) end
  if code < 0x800 then
    return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
  end
  if code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40,
                       0x80 + code % 0x40)
  end
  return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
                     0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

local unescape = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                   r = "\r", t = "\t" }

local function decode_string(s, pos)
  local parts, i = {}, pos + 1
  while true do
    local j = s:find('["\\%c]', i)
    if not j then fail(s, pos, "unterminated string") end
    parts[#parts + 1] = s:sub(i, j - 1)
    local c = s:sub(j, j)
    if c == '"' then return table.concat(parts), j + 1 end
    if c ~= "\\" then fail(s, j, "control character in string") end
    local e = s:sub(j + 1, j + 1)
    if e == "u" then
      local hex = s:match("^%x%x%x%x", j + 2)
      if not hex then fail(s, j, "bad \\u escape") end
      local code, nexti = tonumber(hex, 16), j + 6
      if code >= 0xD800 and code <= 0xDBFF then   -- a surrogate pair
        local low = s:match("^\\u(%x%x%x%x)", nexti)
        local lo = low and tonumber(low, 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then fail(s, j, "lone surrogate in \\u escape") end
        code, nexti = 0x10000 + (code - 0xD800) * 0x400 + (lo - 0xDC00), nexti + 6
      end
      parts[#parts + 1] = utf8(code)
      i = nexti
    elseif unescape[e] then
      parts[#parts + 1] = unescape[e]
      i = j + 2
    else
      fail(s, j, "bad escape '\\" .. e .. "'")
    end
  end
end

local decode_value

local function decode_array(s, pos, depth)
  local out, n = {}, 0
  pos = skip(s, pos + 1)
  if s:sub(pos, pos) == "]" then return out, pos + 1 end
  while true do
    local v
    v, pos = decode_value(s, pos, depth)
    n = n + 1
    out[n] = v
    pos = skip(s, pos)
    local c = s:sub(pos, pos)
    if c == "]" then return out, pos + 1 end
    if c ~= "," then fail(s, pos, "expected ',' or ']' in array") end
    pos = skip(s, pos + 1)
  end
end

local function decode_object(s, pos, depth)
  local out = M.object({})
  pos = skip(s, pos + 1)
  if s:sub(pos, pos) == "}" then return out, pos + 1 end
  while true do
    if s:sub(pos, pos) ~= '"' then fail(s, pos, "expected a string key in object") end
    local key
    key, pos = decode_string(s, pos)
    pos = skip(s, pos)
    if s:sub(pos, pos) ~= ":" then fail(s, pos, "expected ':' after object key") end
    out[key], pos = decode_value(s, skip(s, pos + 1), depth)
    pos = skip(s, pos)
    local c = s:sub(pos, pos)
    if c == "}" then return out, pos + 1 end
    if c ~= "," then fail(s, pos, "expected ',' or '}' in object") end
    pos = skip(s, pos + 1)
  end
end

local literals = { ["true"] = true, ["false"] = false }

-- -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][-+]?[0-9]+)?, as RFC 8259 has it.
local function decode_number(s, pos)
  local i = pos
  if s:sub(i, i) == "-" then i = i + 1 end
  local int = s:match("^0", i) or s:match("^[1-9]%d*", i)
  if not int then fail(s, pos, "bad number") end
  i = i + #int
  local frac = s:match("^%.%d+", i)
  if frac then i = i + #frac elseif s:sub(i, i) == "." then fail(s, pos, "bad number") end
  local exp = s:match("^[eE][-+]?%d+", i)
  if exp then i = i + #exp elseif s:match("^[eE]", i) then fail(s, pos, "bad number") end
  return tonumber(s:sub(pos, i - 1)), i
end

function decode_value(s, pos, depth)
  if depth > 200 then fail(s, pos, "nesting deeper than 200") end
  local c = s:sub(pos, pos)
  if c == "{" then return decode_object(s, pos, depth + 1) end
  if c == "[" then return decode_array(s, pos, depth + 1) end
  if c == '"' then return decode_string(s, pos) end
  if c == "-" or c:match("%d") then return decode_number(s, pos) end
  local word = s:match("^%a+", pos)
  if word == "null" then return M.null, pos + 4 end
  if literals[word] ~= nil then return literals[word], pos + #word end
  if pos > #s then fail(s, pos, "unexpected end of input") end
  fail(s, pos, "unexpected character '" .. c .. "'")
end

-- decode(text) -> value; objects and arrays become tables, null becomes json.null.
function M.decode(s)
  if type(s) ~= "string" then error("json.decode: expected a string, got " .. type(s), 2) end
  local value, pos = decode_value(s, skip(s, 1), 0)
  pos = skip(s, pos)
  if pos <= #s then fail(s, pos, "trailing characters after the value") end
  return value
end

return M
