-- dp.text.cache: keeps tokenised datasets on disk. A cache file holds a version, the key it was
-- built for and a compact binary dump of plain Lua data; it is written to a temporary file and
-- renamed into place, and a corrupted or unreadable file is rebuilt with a warning.
local ffi = require "ffi"
local atomic = require "dp.util.atomic"

local M = {}
M.VERSION = 1
local MAGIC = "DPTXTCACHE\n"

local dbl, i32 = ffi.typeof("double[1]"), ffi.typeof("int32_t[?]")

-- Whether t is a non-empty array of integers that fit int32 (stored packed).
local function int_array(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  if count ~= n then return false end
  for i = 1, n do
    local v = t[i]
    if type(v) ~= "number" or v ~= math.floor(v) or v < -2147483648 or v > 2147483647 then
      return false
    end
  end
  return true
end

local function dump(v, buf, seen)
  local tv = type(v)
  if tv == "number" then
    local d = dbl(v)
    buf[#buf + 1] = "N" .. ffi.string(d, 8)
  elseif tv == "string" then
    buf[#buf + 1] = "S" .. #v .. ":" .. v
  elseif tv == "boolean" then
    buf[#buf + 1] = v and "T" or "F"
  elseif tv == "table" then
    if seen[v] then error("cache: cannot store a table that contains itself", 0) end
    seen[v] = true
    if int_array(v) then
      local n = #v
      local a = i32(n)
      for i = 1, n do a[i - 1] = v[i] end
      buf[#buf + 1] = "I" .. n .. ":" .. ffi.string(a, 4 * n)
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = k end
      buf[#buf + 1] = "H" .. #keys .. ":"
      for _, k in ipairs(keys) do dump(k, buf, seen); dump(v[k], buf, seen) end
    end
    seen[v] = nil
  else
    error(("cache: cannot store a %s (only numbers, strings, booleans and tables)"):format(tv), 0)
  end
end

-- Serialise plain data (numbers, strings, booleans, nested tables) to a string.
function M.serialize(v)
  local buf = {}
  dump(v, buf, {})
  return table.concat(buf)
end

-- Inverse of serialize; raises on anything malformed (never reads past the end).
function M.deserialize(s)
  local pos = 1
  local function count()
    local digits = s:match("^%d+:", pos)
    if not digits or #digits > 12 then error("bad length at byte " .. pos, 0) end
    pos = pos + #digits
    return tonumber(digits:sub(1, -2))
  end
  local function need(n)
    if pos + n - 1 > #s then error("truncated at byte " .. pos, 0) end
  end
  local function read()
    need(1)
    local tag = s:sub(pos, pos)
    pos = pos + 1
    if tag == "N" then
      need(8)
      local d = dbl()
      ffi.copy(d, s:sub(pos, pos + 7), 8)
      pos = pos + 8
      return d[0]
    elseif tag == "S" then
      local n = count()
      need(n)
      local v = s:sub(pos, pos + n - 1)
      pos = pos + n
      return v
    elseif tag == "T" then return true
    elseif tag == "F" then return false
    elseif tag == "I" then
      local n = count()
      need(4 * n)
      local a = i32(math.max(n, 1))
      ffi.copy(a, s:sub(pos, pos + 4 * n - 1), 4 * n)
      pos = pos + 4 * n
      local t = {}
      for i = 1, n do t[i] = a[i - 1] end
      return t
    elseif tag == "H" then
      local n, t = count(), {}
      for _ = 1, n do
        local k = read()
        if k == nil or k ~= k then error("bad table key at byte " .. pos, 0) end
        t[k] = read()
      end
      return t
    end
    error(("unknown tag %q at byte %d"):format(tag, pos - 1), 0)
  end
  local v = read()
  if pos ~= #s + 1 then error(("%d stray bytes at the end"):format(#s + 1 - pos), 0) end
  return v
end

-- "path:size:mtime" for a file (mtime from lfs when installed, else from stat(1)); errors when
-- the file is missing.
function M.file_key(path)
  local f, err = io.open(path, "rb")
  if not f then error(("cache.file_key: cannot open %s (%s)"):format(path, err), 2) end
  local size = f:seek("end")
  f:close()
  local mtime
  local ok, lfs = pcall(require, "lfs")
  if ok then
    mtime = lfs.attributes(path, "modification")
  else
    local p = io.popen("stat -c %Y '" .. path:gsub("'", "'\\''") .. "' 2>/dev/null")
    mtime = p and p:read("*l")
    if p then p:close() end
  end
  return ("%s:%d:%s"):format(path, size, tostring(mtime or "?"))
end

local function warn(msg) io.stderr:write("dp.text.cache: warning: ", msg, "\n") end

-- true and the cached value in path for key (nil when there is no file, or it was made for another
-- key or format version), or false and why the file is corrupted.
local function read_cache(path, key)
  local f = io.open(path, "rb")
  if not f then return true, nil end
  local s = f:read("*a")
  f:close()
  return pcall(function()
    if s:sub(1, #MAGIC) ~= MAGIC then error("not a dp.text cache file (bad magic)", 0) end
    local version, klen, pos = s:match("^(%d+)\n(%d+)\n()", #MAGIC + 1)
    if not version then error("bad header", 0) end
    if tonumber(version) ~= M.VERSION then return nil, "stale" end
    local k = s:sub(pos, pos + tonumber(klen) - 1)
    pos = pos + tonumber(klen)
    local plen, ppos = s:match("^\n(%d+)\n()", pos)
    if not plen then error("bad header", 0) end
    if k ~= key then return nil, "stale" end
    local payload = s:sub(ppos, ppos + tonumber(plen) - 1)
    if #payload ~= tonumber(plen) or s:sub(ppos + tonumber(plen)) ~= "END\n" then
      error("truncated file", 0)
    end
    return M.deserialize(payload)
  end)
end

-- cache(path, key, build) -> value, hit. key: a string or an array of strings/numbers (for
-- instance {file_key(vocab), file_key(data), max_length}); build() makes the value on a miss.
-- The value is written atomically (dp.util.atomic), so readers never see half a file.
-- A corrupted file is rebuilt with a warning; a failed write only warns.
function M.cache(path, key, build)
  if type(key) == "table" then
    local parts = {}
    for i, k in ipairs(key) do parts[i] = tostring(k) end
    key = table.concat(parts, "\n")
  end
  if type(key) ~= "string" then error("cache: key must be a string or an array", 2) end
  local ok, value = read_cache(path, key)
  if ok and value ~= nil then return value, true end
  if not ok then warn(("%s is corrupted (%s); rebuilding it"):format(path, tostring(value))) end
  value = build()
  local payload = M.serialize(value)
  local ok_write, err = pcall(atomic.write, path, function(f)
    assert(f:write(MAGIC, tostring(M.VERSION), "\n", tostring(#key), "\n", key, "\n",
                   tostring(#payload), "\n", payload, "END\n"))
  end, "cache")
  if not ok_write then warn(("cannot write %s (%s); not cached"):format(path, tostring(err))) end
  return value, false
end

return M
