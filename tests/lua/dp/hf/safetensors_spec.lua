-- Specs for dp.hf.safetensors: files built byte by byte are read as the format says, every dtype
-- round-trips, every malformed header gives an error naming the file and tensor, and writes are
-- atomic.
local ffi = require "ffi"
local dp = require "dp"
local st = require "dp.hf.safetensors"
local atomic = require "dp.util.atomic"

local base = os.tmpname()
os.remove(base)
local dir = base .. "_st"
atomic.ensure_dir(dir)

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function listing()
  local p = io.popen("ls -A " .. dir)
  local out = p:read("*a")
  p:close()
  return out
end

-- 8-byte little-endian length, computed digit by digit (independent of the module).
local function u64le(n)
  local b = {}
  for i = 1, 8 do b[i] = string.char(n % 256); n = math.floor(n / 256) end
  return table.concat(b)
end

local function bytes_of(ctype, values)
  local buf = ffi.new(ctype .. "[?]", #values, values)
  return ffi.string(buf, ffi.sizeof(ctype) * #values)
end

-- A file from a header text and a data section.
local function file_with(name, header, data)
  local path = dir .. "/" .. name
  spit(path, u64le(#header) .. header .. (data or ""))
  return path
end

-- All elements of a tensor, row-major, as Lua numbers.
local function flat(t)
  local out = {}
  local function walk(x)
    if type(x) == "table" then for _, v in ipairs(x) do walk(v) end else out[#out + 1] = x end
  end
  walk(t:totable())
  return out
end

describe("dp.hf.safetensors", function()
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("reads a file built by hand, byte by byte", function()
    local f32 = bytes_of("float", { 1.5, -2, 0.25, 8 })          -- [2, 2]
    local i64 = bytes_of("int64_t", { -3, 4000000000 })          -- [2]
    local bf16 = "\128\63" .. "\0\192"                           -- 1.0 (0x3F80), -2.0 (0xC000)
    local f16 = "\0\60" .. "\0\184"                              -- 1.0 (0x3C00), -0.5 (0xB800)
    local i8 = "\255\127"                                        -- -1, 127
    local i16 = "\0\128\1\0"                                     -- -32768, 1
    local bool = "\1\0\1"
    local header = '{"__metadata__":{"format":"pt"},' ..
      '"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},' ..
      '"ids":{"dtype":"I64","shape":[2],"data_offsets":[16,32]},' ..
      '"b":{"dtype":"BF16","shape":[2],"data_offsets":[32,36]},' ..
      '"h":{"dtype":"F16","shape":[2],"data_offsets":[36,40]},' ..
      '"c":{"dtype":"I8","shape":[2],"data_offsets":[40,42]},' ..
      '"s":{"dtype":"I16","shape":[2,1],"data_offsets":[42,46]},' ..
      '"m":{"dtype":"BOOL","shape":[3],"data_offsets":[46,49]},' ..
      '"e":{"dtype":"F32","shape":[0,3],"data_offsets":[49,49]},' ..
      '"z":{"dtype":"U8","shape":[],"data_offsets":[49,50]}}   '
    local path = file_with("hand.safetensors", header, f32 .. i64 .. bf16 .. f16 .. i8 .. i16 .. bool .. "\7")
    local r = st.read(path)
    assert.same({ "b", "c", "e", "h", "ids", "m", "s", "w", "z" }, r.names)
    assert.same({ format = "pt" }, r.metadata)
    local t = r.tensors
    assert.equal("f32", t.w:dtype())
    assert.same({ { 1.5, -2 }, { 0.25, 8 } }, t.w:totable())
    assert.equal("i64", t.ids:dtype())
    assert.same({ -3, 4000000000 }, t.ids:totable())
    assert.equal("bf16", t.b:dtype())
    assert.same({ 1, -2 }, t.b:totable())
    assert.equal("f16", t.h:dtype())
    assert.same({ 1, -0.5 }, t.h:totable())
    assert.equal("i32", t.c:dtype())
    assert.same({ -1, 127 }, t.c:totable())
    assert.same({ { -32768 }, { 1 } }, t.s:totable())
    assert.equal("u8", t.m:dtype())
    assert.same({ 1, 0, 1 }, t.m:totable())
    assert.same({ 0, 3 }, t.e:size())
    assert.equal(0, t.z:dim())
    assert.equal(7, t.z:item())

    local h = st.read_header(path)
    assert.equal(8 + #header, h.data_start)
    assert.equal(50, h.data_size)
    assert.same({ 36, 40 }, h.entries.h.offsets)
    assert.equal("F16", h.entries.h.dtype)
    assert.same({ 2, 1 }, h.entries.s.shape)
  end)

  -- Values exactly representable in each dtype, so element-wise equality is exact.
  local cases = {
    f32 = { 1.5, -3.25, 2 ^ -70, 65504 }, f64 = { 0.1, -1 / 3, 1e300, 5e-324 },
    bf16 = { 1, -0.5, 3.0e38 - 3.0e38 % 2 ^ 120, 2 ^ -130 }, f16 = { 1, -2.5, 65504, 2 ^ -24 },
    fp8_e4m3 = { 1, -448, 0.015625, 2 ^ -9 }, fp8_e5m2 = { 1, -57344, 0.25, 2 ^ -16 },
    i32 = { -2147483648, 2147483647, 0, 7 }, i64 = { -2 ^ 53, 2 ^ 53, -1, 123456789012 },
    u8 = { 0, 255, 1, 128 },
  }

  it("round-trips every dtype element by element, with metadata and order", function()
    local tensors, order = {}, {}
    for name, values in pairs(cases) do
      tensors["t." .. name] = dp.from_f64(values, { 2, 2 }, { dtype = name })
      order[#order + 1] = "t." .. name
    end
    table.sort(order, function(a, b) return a > b end)   -- reverse order: data laid out as asked
    local path = dir .. "/all.safetensors"
    st.write(path, tensors, { metadata = { format = "pt", note = "é" }, order = order })
    local bytes = slurp(path)
    local n = 0
    for i = 8, 1, -1 do n = n * 256 + bytes:byte(i) end
    assert.equal(0, n % 8)                                -- padded to 8
    assert.truthy(bytes:sub(9, 8 + n):match("^{.*} *$"))   -- JSON, then space padding
    local h = st.read_header(path)
    assert.same({ 0, 4 }, h.entries[order[1]].offsets)   -- t.u8 first: 4 bytes
    local r = st.read(path)
    assert.same({ format = "pt", note = "é" }, r.metadata)
    for name, values in pairs(cases) do
      local t = r.tensors["t." .. name]
      assert.equal(name, t:dtype())
      assert.same({ 2, 2 }, t:size())
      local got = flat(t)
      for k = 1, 4 do assert.equal(values[k], got[k], name .. "[" .. k .. "]") end
    end
  end)

  it("writes views and empty files correctly", function()
    local base = dp.from_f64({ 1, 2, 3, 4, 5, 6 }, { 2, 3 })
    local path = dir .. "/view.safetensors"
    st.write(path, { tt = base:transpose(1, 2) })
    assert.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, st.read(path).tensors.tt:totable())
    st.write(dir .. "/empty.safetensors", {})
    local r = st.read(dir .. "/empty.safetensors")
    assert.same({}, r.names)
  end)

  describe("names the file and tensor of a malformed header:", function()
    local function bad(name, header, data, pattern)
      local path = file_with(name, header, data)
      assert.error_matches(function() st.read(path) end, path .. ": " .. pattern, nil, true)
    end
    local function entry(body) return '{"x":' .. body .. '}' end

    it("short file, bad length, bad JSON", function()
      local short = dir .. "/short"
      spit(short, "\1\0\0")
      assert.error_matches(function() st.read(short) end, short .. ": file is 3 bytes, shorter than the 8-byte", nil, true)
      local long = dir .. "/long"
      spit(long, u64le(50) .. "{}")
      assert.error_matches(function() st.read(long) end, long .. ": header length 50 runs past the end", nil, true)
      local huge = dir .. "/huge"
      spit(huge, u64le(2 ^ 40) .. "{}")
      assert.error_matches(function() st.read(huge) end, huge .. ": header length 1099511627776 is absurd", nil, true)
      bad("json", '{"x": [1,}', "", "header is not valid JSON: json.decode: unexpected character '}' at line 1 column 10")
      bad("array", "[1, 2]", "", "header must be a JSON object")
      assert.error_matches(function() st.read(dir .. "/nope") end, dir .. "/nope: cannot open", nil, true)
    end)

    it("entries: not an object, dtype, shape, offsets", function()
      bad("e1", entry("[1]"), "", 'tensor "x": expected an object {dtype, shape, data_offsets}, got [1]')
      bad("e2", entry('{"dtype":"F31","shape":[1],"data_offsets":[0,4]}'), "1234",
          'tensor "x": unknown dtype "F31" (expected one of F32,')
      bad("e3", entry('{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}'), "1234",
          'tensor "x": shape must be a list of non-negative integers, got [-1]')
      bad("e4", entry('{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}'), "1234",
          'tensor "x": shape must be a list of non-negative integers')
      bad("e5", entry('{"dtype":"F32","shape":{},"data_offsets":[0,4]}'), "1234",
          'tensor "x": shape must be a list of non-negative integers, got {}')
      bad("e6", entry('{"dtype":"F32","shape":[1],"data_offsets":[4,0]}'), "1234",
          'tensor "x": data_offsets must be [begin, end] with 0 <= begin <= end, got [4,0]')
      bad("e7", entry('{"dtype":"F32","shape":[1],"data_offsets":[0]}'), "1234",
          'tensor "x": data_offsets must be [begin, end]')
      bad("e8", entry('{"dtype":"F32","shape":[1],"data_offsets":[0,8]}'), "1234",
          'tensor "x": data_offsets end 8 is past the 4-byte data section')
      bad("e9", entry('{"dtype":"F32","shape":[2],"data_offsets":[0,4]}'), "1234",
          'tensor "x": data_offsets cover 4 bytes, expected 8 (shape [2], 2 elements of F32, 4 bytes each)')
      bad("e10", '{"__metadata__":{"a":1}}', "", '__metadata__ "a" must be a string, got 1')
    end)

    it("overlaps, holes and trailing bytes", function()
      bad("o1", '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},' ..
                '"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}', "1234",
          'tensor "b": data_offsets [2, 4] overlap tensor "a", which ends at 4')
      bad("o2", '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},' ..
                '"b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}}', "1234",
          'tensor "b": data_offsets begin at 3, leaving bytes 2..2 of the data section unused')
      bad("o3", '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', "1234",
          "the data section has 4 bytes but the tensors cover only 2")
    end)
  end)

  describe("writes atomically:", function()
    local path = dir .. "/keep.safetensors"
    local function setup_existing()
      st.write(path, { a = dp.from_f64({ 1, 2 }, { 2 }) })
      return slurp(path)
    end

    it("a bad tensor name or value leaves the old file and no temp file", function()
      local before = setup_existing()
      local listed = listing()
      assert.error_matches(function() st.write(path, { ["\255bad"] = dp.zeros(2) }) end,
        path .. ": write: tensor name \"\\255bad\" cannot be written", nil, true)
      assert.error_matches(function() st.write(path, { a = "not a tensor" }) end,
        path .. ': write: tensor "a" is not a live dp tensor', nil, true)
      assert.error_matches(function() st.write(path, { a = dp.zeros(1) }, { metadata = { k = 1 } }) end,
        path .. ": write: metadata must map UTF-8 strings", nil, true)
      assert.equal(before, slurp(path))
      assert.equal(listed, listing())
    end)

    it("a failing rename (the path is a directory) removes the temp file", function()
      local target = dir .. "/adir"
      atomic.ensure_dir(target)
      local listed = listing()
      assert.error_matches(function() st.write(target, { a = dp.zeros(3) }) end,
        "cannot rename " .. target .. ".tmp-", nil, true)
      assert.equal(listed, listing())
      assert.is_nil(slurp(atomic.temp_name(target)))
    end)

    it("a missing directory creates nothing", function()
      assert.error_matches(function() st.write(dir .. "/no/such/x.safetensors", { a = dp.zeros(1) }) end,
        "cannot create " .. dir .. "/no/such/x.safetensors.tmp-", nil, true)
    end)

    it("overwrites an existing file with the new content", function()
      setup_existing()
      st.write(path, { b = dp.from_f64({ 5 }, { 1 }, "f64") })
      local r = st.read(path)
      assert.same({ "b" }, r.names)
      assert.same({ 5 }, r.tensors.b:totable())
    end)
  end)
end)
