-- dp.cdef: reads core/include/dp.h into ffi.cdef and finds libdpcore (used through dp.ffi).
local ffi = require "ffi"

local M = {}

-- Directory holding dp/ (the lua/ dir), from this file's own chunk name, so that the header and
-- the library are found the same way under dprun, busted and a plain luajit.
local function lua_dir()
  local source = debug.getinfo(1, "S").source
  local dir = source:sub(1, 1) == "@" and source:sub(2):match("^(.*)dp[/\\]cdef%.lua$")
  if not dir or dir == "" then return "." end
  return (dir:gsub("[/\\]$", ""))
end
M.lua_dir = lua_dir()

local function readable(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function find_header()
  local env = os.getenv("DP_HEADER")
  if env and env ~= "" then return env end
  local dir = M.lua_dir
  local candidates = {
    dir .. "/../core/include/dp.h",      -- source tree
    dir .. "/../include/dp.h",           -- <prefix>/share/dprun/include after install
    dir .. "/../../../include/dp.h",     -- <prefix>/include after install
  }
  for _, path in ipairs(candidates) do
    if readable(path) then return path end
  end
  error("dp.ffi: cannot find dp.h (tried " .. table.concat(candidates, ", ") ..
        "); set DP_HEADER to its path", 0)
end

-- The header minus what ffi.cdef cannot read: preprocessor lines and the extern "C" braces.
function M.header_text(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  local out, in_extern = {}, false
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    if line:match("^%s*#") then
      line = ""
    elseif line:match('^%s*extern%s+"C"%s*{%s*$') then
      line, in_extern = "", true
    elseif in_extern and line:match("^%s*}%s*$") then
      line = ""
    end
    out[#out + 1] = line
  end
  return table.concat(out, "\n")
end

-- cdef once per process, even if this module is loaded twice under different names.
local defined = pcall(ffi.typeof, "dp_tensor")
if not defined then
  M.header = find_header()
  ffi.cdef(M.header_text(M.header))
  -- The Lua-side handle of a tensor (see dp.tensor and dp.ffi.wrap): a struct, not a bare
  -- pointer, so that t[1] reaches the metatable instead of doing pointer arithmetic, and so that
  -- methods such as :dtype() are not shadowed by the C fields of the same name.
  ffi.cdef [[
    typedef struct dp_tensor_ref { dp_tensor *ptr; int32_t slot; } dp_tensor_ref;
    typedef struct dp_timespec { long tv_sec; long tv_nsec; } dp_timespec;
    int clock_gettime(int clock_id, dp_timespec *tp);
  ]]
end

local function has_symbols(lib)
  return pcall(function() return lib.dp_version ~= nil end)
end

local function try_load(path)
  if not readable(path) then return nil end
  local ok, lib = pcall(ffi.load, path)
  if ok and has_symbols(lib) then return lib end
  return nil
end

-- Inside dprun the executable links libdpcore, so its symbols are already in ffi.C.
local function find_library()
  if has_symbols(ffi.C) then return ffi.C, "(linked into the executable)" end
  local env = os.getenv("DP_LIBRARY")
  if env and env ~= "" then
    local ok, lib = pcall(ffi.load, env)
    if not ok then error("dp.ffi: DP_LIBRARY=" .. env .. " does not load: " .. tostring(lib), 0) end
    return lib, env
  end
  local dir = M.lua_dir
  local candidates = {
    dir .. "/../build/libdpcore.so", dir .. "/../build-release/libdpcore.so",
    dir .. "/../build-lua/libdpcore.so", dir .. "/../lib/libdpcore.so",
    dir .. "/../../../lib/libdpcore.so", dir .. "/../../../lib64/libdpcore.so",
    dir .. "/../../../lib/x86_64-linux-gnu/libdpcore.so",
    dir .. "/../../../lib/aarch64-linux-gnu/libdpcore.so",
  }
  for _, path in ipairs(candidates) do
    local lib = try_load(path)
    if lib then return lib, path end
  end
  local ok, lib = pcall(ffi.load, "dpcore")
  if ok and has_symbols(lib) then return lib, "libdpcore.so (default search path)" end
  error("dp.ffi: cannot find libdpcore.so (set DP_LIBRARY to its path; tried " ..
        table.concat(candidates, ", ") .. " and the default search path)", 0)
end

M.C, M.library = find_library()
return M

