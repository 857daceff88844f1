-- Specs for dp.text.cache: the binary dump round-trips plain data; a cache hits on the same key,
-- rebuilds on another key or version, and rebuilds a corrupted file with a warning.
local cache = require "dp.text.cache"
local text = require "dp.text"
local H = require "support.text_vocab"

-- Run f with io.stderr captured; returns f's results packed and what was written.
local function capture(f)
  local written, real = {}, io.stderr
  io.stderr = { write = function(_, ...)
    for _, s in ipairs({ ... }) do written[#written + 1] = s end
  end }
  local res = { pcall(f) }
  io.stderr = real
  if not res[1] then error(res[2], 0) end
  return { unpack(res, 2) }, table.concat(written)
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

describe("dp.text.cache", function()
  local path
  before_each(function()
    path = os.tmpname()
    os.remove(path)   -- start with no cache file at all
  end)
  after_each(function() os.remove(path) end)

  it("round-trips nested data through serialize", function()
    local v = { ids = { { 2, 7, 3 }, { 2, -1, 2147483647 } }, labels = { 0, 2, 1 },
                name = "snli\0\n",
                big = { 2 ^ 40, 0.5 }, flag = true, off = false, empty = {}, [3] = "three" }
    assert.are.same(v, cache.deserialize(cache.serialize(v)))
    assert.has_error(function() cache.serialize({ f = print }) end)
  end)

  it("misses, stores, then hits without calling build", function()
    local calls = 0
    local function build() calls = calls + 1; return { { 2, 5, 3 }, { 2, 3 } } end
    local res, err = capture(function() return cache.cache(path, { "k", 1 }, build) end)
    local v1, hit1 = res[1], res[2]
    assert.are.equal("", err)   -- a plain miss is silent
    local v2, hit2 = cache.cache(path, { "k", 1 }, build)
    assert.are.same({ false, true, 1 }, { hit1, hit2, calls })
    assert.are.same({ { 2, 5, 3 }, { 2, 3 } }, v2)
    assert.are.same(v1, v2)
    -- no temporary file left next to the cache
    local p = io.popen("ls -a '" .. path .. "'.tmp-* 2>/dev/null")
    assert.are.equal("", p:read("*a"))
    p:close()
  end)

  it("rebuilds for another key or another format version", function()
    cache.cache(path, "a", function() return { 1 } end)
    local v, hit = cache.cache(path, "b", function() return { 2 } end)
    assert.are.same({ { 2 }, false }, { v, hit })
    write(path, read(path):gsub("^DPTXTCACHE\n1\n", "DPTXTCACHE\n99\n"))
    v, hit = cache.cache(path, "b", function() return { 3 } end)
    assert.are.same({ { 3 }, false }, { v, hit })
  end)

  it("rebuilds a corrupted file with a warning, then hits again", function()
    cache.cache(path, "k", function() return { 1, 2, 3, 4, 5 } end)
    local good = read(path)
    for _, bad in ipairs({ good:sub(1, #good - 9),          -- truncated
                           "garbage",                         -- not a cache file
                           good:gsub("I5:", "I9:"),           -- count past the end
                           "" }) do                           -- empty file
      write(path, bad)
      local res, err = capture(function()
        return cache.cache(path, "k", function() return { 9 } end)
      end)
      assert.are.same({ { 9 }, false }, res)
      assert.truthy(err:find("warning: " .. path .. " is corrupted", 1, true))
      local v, hit = cache.cache(path, "k", function() error("not called") end)
      assert.are.same({ { 9 }, true }, { v, hit })
    end
  end)

  it("returns the value with a warning when it cannot write", function()
    local res, err = capture(function()
      return cache.cache("/nonexistent/dir/c.bin", "k", function() return { 1 } end)
    end)
    assert.are.same({ { 1 }, false }, res)
    assert.truthy(err:find("cannot write", 1, true))
  end)

  it("keys a tokenizer's cache on the data file and max_length", function()
    local vocab = H.write_vocab()
    local data = os.tmpname()
    write(data, "the dog\n")
    local tok = text.new(vocab)
    local calls = 0
    local function build() calls = calls + 1; return tok:encode("the dog").input_ids end
    tok:cached(path, data, 128, build)
    local v, hit = tok:cached(path, data, 128, build)
    assert.are.same({ true, 1 }, { hit, calls })
    assert.are.same({ H.id("[CLS]"), H.id("the"), H.id("dog"), H.id("[SEP]") }, v)
    _, hit = tok:cached(path, data, 64, build)                 -- another max_length
    assert.are.same({ false, 2 }, { hit, calls })
    write(data, "the dog and the cat\n")                        -- the data file changed size
    _, hit = tok:cached(path, data, 64, build)
    assert.are.same({ false, 3 }, { hit, calls })
    os.remove(vocab)
    os.remove(data)
  end)
end)
