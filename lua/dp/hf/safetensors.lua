-- dp.hf.safetensors: reads and writes the safetensors format (Hugging Face): an 8-byte
-- little-endian header length N, N bytes of JSON naming each tensor's dtype, shape and byte
-- range in the data section that follows. Every malformed header is an error naming the file,
-- the tensor and what was expected; writes are atomic (dp.util.atomic).
local ffi = require "ffi"
local dpffi = require "dp.ffi"
local json = require "dp.util.json"
local atomic = require "dp.util.atomic"

local C, wrap = dpffi.C, dpffi.wrap
local M = {}

M.max_header = 100 * 1024 * 1024   -- the reference implementation's limit too

-- safetensors dtype -> {dp dtype, element size, widen = C type read and widened to i32}.
-- I8, I16 and BOOL have no dp dtype: I8/I16 widen to i32, BOOL (one byte, 0 or 1) reads as u8.
local dtypes = {
  F32 = { dp = "f32", size = 4 }, F64 = { dp = "f64", size = 8 }, BF16 = { dp = "bf16", size = 2 },
  F16 = { dp = "f16", size = 2 }, I64 = { dp = "i64", size = 8 }, I32 = { dp = "i32", size = 4 },
  U8 = { dp = "u8", size = 1 }, BOOL = { dp = "u8", size = 1 },
  I16 = { dp = "i32", size = 2, widen = "int16_t" }, I8 = { dp = "i32", size = 1, widen = "int8_t" },
  F8_E4M3 = { dp = "fp8_e4m3", size = 1 }, F8_E5M2 = { dp = "fp8_e5m2", size = 1 },
}
M.dtypes = dtypes
local known = "F32, F64, BF16, F16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2"

-- dp dtype name -> safetensors dtype, for writing.
local st_name = { f32 = "F32", f64 = "F64", bf16 = "BF16", f16 = "F16", i64 = "I64", i32 = "I32",
                  u8 = "U8", fp8_e4m3 = "F8_E4M3", fp8_e5m2 = "F8_E5M2" }
M.dtype_for = st_name

local function fail(path, fmt, ...)
  error(("safetensors: %s: " .. fmt):format(path, ...), 0)
end

local function describe(v)
  if type(v) == "string" then   -- bytes outside ASCII as \ddd: the name may not be UTF-8
    return (("%q"):format(v):gsub("[\128-\255]", function(c) return "\\" .. c:byte() end))
  end
  if type(v) == "table" then return v == json.null and "null" or json.encode(v) end
  return tostring(v)
end

-- JSON arrays and objects both decode to tables: tell them apart (an empty one by its encoding).
local function is_list(v)
  if type(v) ~= "table" or v == json.null then return false end
  if next(v) == nil then return json.encode(v) == "[]" end
  local n = #v
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end
local function is_object(v)
  if type(v) ~= "table" or v == json.null then return false end
  if next(v) == nil then return json.encode(v) == "{}" end
  for k in pairs(v) do if type(k) ~= "string" then return false end end
  return true
end
M.is_list, M.is_object = is_list, is_object

local function is_count(v) return type(v) == "number" and v >= 0 and v % 1 == 0 and v < 2 ^ 53 end

-- One entry of the header, checked; returns {dtype=, dp_dtype=, shape=, numel=, offsets=}.
local function check_entry(path, name, e)
  local where = ("tensor %q"):format(name)
  if not is_object(e) then fail(path, "%s: expected an object {dtype, shape, data_offsets}, got %s", where, describe(e)) end
  local d = dtypes[e.dtype]
  if not d then fail(path, "%s: unknown dtype %s (expected one of %s)", where, describe(e.dtype), known) end
  if not is_list(e.shape) then fail(path, "%s: shape must be a list of non-negative integers, got %s", where, describe(e.shape)) end
  if #e.shape > 8 then fail(path, "%s: shape %s has %d dims, at most 8 are supported", where, describe(e.shape), #e.shape) end
  local numel = 1
  for i, s in ipairs(e.shape) do
    if not is_count(s) then
      fail(path, "%s: shape must be a list of non-negative integers, got %s (element %d)", where, describe(e.shape), i)
    end
    numel = numel * s
  end
  local o = e.data_offsets
  if not is_list(o) or #o ~= 2 or not is_count(o[1]) or not is_count(o[2]) or o[1] > o[2] then
    fail(path, "%s: data_offsets must be [begin, end] with 0 <= begin <= end, got %s", where, describe(o))
  end
  return { dtype = e.dtype, dp_dtype = d.dp, shape = e.shape, numel = numel,
           offsets = { o[1], o[2] }, nbytes = o[2] - o[1] }
end

-- read_header(path) -> {names (sorted), entries = {name -> entry}, metadata, data_start, data_size}
-- without reading tensor data. file may be an open handle to reuse (then it stays open).
function M.read_header(path, file)
  local f = file or io.open(path, "rb")
  if not f then fail(path, "cannot open the file") end
  local ok, out = pcall(function()
    local size = f:seek("end")
    f:seek("set", 0)
    if size < 8 then fail(path, "file is %d bytes, shorter than the 8-byte header length", size) end
    local b = { f:read(8):byte(1, 8) }
    local n = 0
    for i = 8, 1, -1 do n = n * 256 + b[i] end
    if n > M.max_header then fail(path, "header length %.0f is absurd (more than %d bytes)", n, M.max_header) end
    if 8 + n > size then fail(path, "header length %d runs past the end of the %d-byte file", n, size) end
    local text = n > 0 and f:read(n) or ""
    local decoded, value = pcall(json.decode, text)
    if not decoded then fail(path, "header is not valid JSON: %s", tostring(value)) end
    if not is_object(value) then fail(path, "header must be a JSON object, got %s", describe(value)) end
    local h = { names = {}, entries = {}, metadata = {}, data_start = 8 + n, data_size = size - 8 - n }
    for name, e in pairs(value) do
      if name == "__metadata__" then
        if not is_object(e) then fail(path, "__metadata__ must be an object of strings, got %s", describe(e)) end
        for k, v in pairs(e) do
          if type(v) ~= "string" then fail(path, "__metadata__ %q must be a string, got %s", k, describe(v)) end
          h.metadata[k] = v
        end
      else
        local entry = check_entry(path, name, e)
        local d = dtypes[entry.dtype]
        if entry.offsets[2] > h.data_size then
          fail(path, "tensor %q: data_offsets end %d is past the %d-byte data section", name, entry.offsets[2], h.data_size)
        end
        if entry.nbytes ~= entry.numel * d.size then
          fail(path, "tensor %q: data_offsets cover %d bytes, expected %d (shape %s, %d elements of %s, %d bytes each)",
               name, entry.nbytes, entry.numel * d.size, describe(entry.shape), entry.numel, entry.dtype, d.size)
        end
        h.entries[name] = entry
        h.names[#h.names + 1] = name
      end
    end
    table.sort(h.names)
    -- The ranges must tile the data section exactly: no overlap, no hole (as the spec requires).
    local by_offset = {}
    for i, name in ipairs(h.names) do by_offset[i] = name end
    table.sort(by_offset, function(a, b)
      local ea, eb = h.entries[a].offsets, h.entries[b].offsets
      if ea[1] ~= eb[1] then return ea[1] < eb[1] end
      if ea[2] ~= eb[2] then return ea[2] < eb[2] end
      return a < b
    end)
    local pos, prev = 0, nil
    for _, name in ipairs(by_offset) do
      local o = h.entries[name].offsets
      if o[1] < pos then
        fail(path, "tensor %q: data_offsets [%d, %d] overlap tensor %q, which ends at %d", name, o[1], o[2], prev, pos)
      elseif o[1] > pos then
        fail(path, "tensor %q: data_offsets begin at %d, leaving bytes %d..%d of the data section unused",
             name, o[1], pos, o[1] - 1)
      end
      pos, prev = o[2], name
    end
    if pos ~= h.data_size then
      fail(path, "the data section has %d bytes but the tensors cover only %d (bytes after the last tensor)", h.data_size, pos)
    end
    return h
  end)
  if not file then f:close() end
  if not ok then error(out, 0) end
  return out
end

local dp_dtype_value = {}
local function dp_value(name)
  local v = dp_dtype_value[name]
  if not v then
    v = C.dp_dtype_from_name(name)
    assert(v >= 0, name)
    dp_dtype_value[name] = v
  end
  return v
end

-- A CPU tensor from one entry's bytes (read from the open file f).
function M.load_entry(path, f, h, name)
  local e = h.entries[name]
  if not e then fail(path, "no tensor named %q in the file", name) end
  local bytes = ""
  if e.nbytes > 0 then
    f:seek("set", h.data_start + e.offsets[1])
    bytes = f:read(e.nbytes)
    if not bytes or #bytes ~= e.nbytes then
      fail(path, "tensor %q: read %d of its %d bytes (file changed while reading?)", name, bytes and #bytes or 0, e.nbytes)
    end
  end
  local ndim = #e.shape
  local dims = ffi.new("int64_t[?]", math.max(ndim, 1))
  for i = 1, ndim do dims[i - 1] = e.shape[i] end
  local src = ffi.cast("const uint8_t *", bytes)
  local d = dtypes[e.dtype]
  if d.widen then   -- I8/I16: widen to i32 element by element
    local narrow = ffi.cast("const " .. d.widen .. " *", src)
    local wide = ffi.new("int32_t[?]", math.max(e.numel, 1))
    for i = 0, e.numel - 1 do wide[i] = narrow[i] end
    src = wide
  end
  if ffi.abi("be") then fail(path, "reading needs a little-endian host") end
  local t = C.dp_tensor_from_raw(dp_value(e.dp_dtype), ndim, dims, src)
  if t == nil then fail(path, "tensor %q: %s", name, ffi.string(C.dp_last_error())) end
  return wrap(t)
end

-- read(path, {names = {...}}) -> {tensors = {name -> CPU tensor}, names = sorted, metadata}.
-- opts.names limits which tensors are loaded (each must exist).
function M.read(path, opts)
  local f = io.open(path, "rb")
  if not f then fail(path, "cannot open the file") end
  local ok, out = pcall(function()
    local h = M.read_header(path, f)
    local names = h.names
    if opts and opts.names then names = opts.names end
    local tensors = {}
    for _, name in ipairs(names) do tensors[name] = M.load_entry(path, f, h, name) end
    return { tensors = tensors, names = h.names, metadata = h.metadata, header = h }
  end)
  f:close()
  if not ok then error(out, 0) end
  return out
end

-- Valid UTF-8 (no overlongs or surrogates are checked beyond the byte structure).
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c < 0xE0) and 2 or (c >= 0xE0 and c < 0xF0) and 3
                or (c >= 0xF0 and c < 0xF5) and 4 or nil
    if not len or i + len - 1 > n then return false end
    for k = i + 1, i + len - 1 do
      local b = s:byte(k)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

-- write(path, tensors, {metadata = {str = str}, order = {names}}): tensors maps name -> tensor
-- (any device, any layout; written row-major in its own dtype). Data is laid out in order
-- (default: sorted names); the header is padded with spaces to a multiple of 8 bytes.
function M.write(path, tensors, opts)
  opts = opts or {}
  if type(tensors) ~= "table" then fail(path, "write: tensors must be a table name -> tensor, got %s", type(tensors)) end
  local order = opts.order
  if not order then
    order = {}
    for name in pairs(tensors) do order[#order + 1] = name end
    table.sort(order, function(a, b) return tostring(a) < tostring(b) end)
  end
  local header, seen, pos = json.object({}), {}, 0
  for _, name in ipairs(order) do
    if type(name) ~= "string" or name == "" or name == "__metadata__" or not valid_utf8(name) then
      fail(path, "write: tensor name %s cannot be written (expected a non-empty UTF-8 string other than __metadata__)",
           describe(name))
    end
    if seen[name] then fail(path, "write: tensor %q appears twice in order", name) end
    seen[name] = true
    local t = tensors[name]
    if not dpffi.ref_type or not ffi.istype(dpffi.ref_type, t) or t.ptr == nil then
      fail(path, "write: tensor %q is not a live dp tensor (got %s)", name, type(t))
    end
    local dt = st_name[ffi.string(C.dp_dtype_name(t.ptr.dtype))]
    local shape = {}
    for d = 0, t.ptr.ndim - 1 do shape[d + 1] = tonumber(t.ptr.shape[d]) end
    local nbytes = tonumber(C.dp_tensor_numel(t.ptr)) * C.dp_dtype_size(t.ptr.dtype)
    header[name] = { dtype = dt, shape = shape, data_offsets = { pos, pos + nbytes } }
    pos = pos + nbytes
  end
  for name in pairs(tensors) do
    if not seen[name] then fail(path, "write: tensor %s is missing from order", describe(name)) end
  end
  if opts.metadata then
    local meta = json.object({})
    for k, v in pairs(opts.metadata) do
      if type(k) ~= "string" or type(v) ~= "string" or not valid_utf8(k) or not valid_utf8(v) then
        fail(path, "write: metadata must map UTF-8 strings to UTF-8 strings, got %s = %s", describe(k), describe(v))
      end
      meta[k] = v
    end
    header.__metadata__ = meta
  end
  local text = json.encode(header)
  text = text .. (" "):rep((8 - #text % 8) % 8)
  local n = #text
  local len = {}
  for i = 1, 8 do len[i] = string.char(n % 256); n = math.floor(n / 256) end
  atomic.write(path, function(f)
    assert(f:write(table.concat(len), text))
    for _, name in ipairs(order) do
      local p = tensors[name].ptr
      local nbytes = header[name].data_offsets[2] - header[name].data_offsets[1]
      if nbytes > 0 then
        local buf = ffi.new("uint8_t[?]", nbytes)
        dpffi.check(C.dp_tensor_to_raw(p, buf))
        assert(f:write(ffi.string(buf, nbytes)))
      end
    end
  end, "safetensors: write")
end

return M
