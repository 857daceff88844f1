-- dp.ffi: the C API for the rest of the library: the cdef'd namespace C, check/wrap turning C
-- failures into Lua errors at the caller's line, and the ownership of tensor handles.
local ffi = require "ffi"

-- One instance per process: the handles' registry below must be shared even when the module is
-- loaded again (busted's insulation resets package.loaded between spec files).
local registry = debug.getregistry()
if registry["dp.ffi"] then return registry["dp.ffi"] end

local cdef = require "dp.cdef"

local C = cdef.C
local M = {
  C = C,
  library = cdef.library,
  header = cdef.header,
  lua_dir = cdef.lua_dir,
  header_text = cdef.header_text,
}

-- Chunk names of this library's own files start with this prefix; an error is reported at the
-- first frame outside them, i.e. at the line of the script that called into dp.
local own_prefix = debug.getinfo(1, "S").source:match("^(@.*dp[/\\])ffi%.lua$")

local function caller_level()
  local level = 3   -- 1 is this function, 2 the raiser
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return 2 end
    if info.what ~= "C" and not (own_prefix and info.source:sub(1, #own_prefix) == own_prefix) then
      return level - 1   -- as seen from the raiser, which calls error()
    end
    level = level + 1
  end
end

-- Raise msg at the first stack frame outside lua/dp, or at an explicit level (as error() counts
-- it from the function calling raise).
function M.raise(msg, level)
  error(msg, level and level + 1 or caller_level())
end
local raise = M.raise

-- rc from a C call returning a dp_status: nonzero raises dp_last_error().
function M.check(rc, level)
  if rc ~= 0 then raise(ffi.string(C.dp_last_error()), level and level + 1) end
  return rc
end

-- ---------------------------------------------------------------- handle ownership
-- Each tensor handle owns one C reference. Rather than a finalizer per handle (LuaJIT's cost
-- about 0.4 us each, more than the rest of a small op), handles sit in a weak table by slot;
-- once per GC cycle a sentinel's finalizer flags a sweep, and the next wrap() releases the
-- references of the slots whose handle was collected. Sweeping there rather than inside the
-- finalizer lets the JIT compile the loop (finalizers run interpreted). So collectgarbage()
-- alone frees C memory only at the next op: dp.collectgarbage() (M.collect) frees it now.

local owners = setmetatable({}, { __mode = "v" })   -- slot -> handle, cleared by the GC
local capacity = 1024
local owned = ffi.new("dp_tensor *[?]", capacity + 1)   -- slot -> reference to drop
local in_use = ffi.new("uint8_t[?]", capacity + 1)
local free_slots, n_free, top = {}, 0, 0

local function grow()
  local bigger = capacity * 2
  local o, u = ffi.new("dp_tensor *[?]", bigger + 1), ffi.new("uint8_t[?]", bigger + 1)
  ffi.copy(o, owned, ffi.sizeof("dp_tensor *") * (capacity + 1))
  ffi.copy(u, in_use, capacity + 1)
  owned, in_use, capacity = o, u, bigger
end

local sweep_pending = false
local function sweep()
  sweep_pending = false
  for slot = 1, top do
    if in_use[slot] ~= 0 and owners[slot] == nil then
      local p = owned[slot]
      owned[slot], in_use[slot] = nil, 0
      if p ~= nil then C.dp_tensor_release(p) end
      n_free = n_free + 1
      free_slots[n_free] = slot
    end
  end
end
M.sweep = sweep

local function arm()
  local sentinel = newproxy(true)
  getmetatable(sentinel).__gc = function()
    sweep_pending = true
    arm()
  end
end
arm()

-- Drop a handle's reference now (x.ptr becomes NULL); its slot frees when the handle dies.
function M.release(x)
  local p = x.ptr
  if p ~= nil then
    x.ptr = nil
    owned[x.slot] = nil
    C.dp_tensor_release(p)
  end
end

-- ---------------------------------------------------------------- memory pressure
-- Lua's collector does not see tensor storage, so collect when the C side has grown by
-- gc_step bytes or by half since the last collection (whichever is more), on the CPU or, where
-- there is one, the GPU (device tensors should still be released explicitly where it matters).
local gc_step = 256 * 1024 * 1024
local gc_next = { [0] = gc_step, [1] = gc_step }
local has_cuda = C.dp_device_available(1) ~= 0

local function collect()
  collectgarbage("collect")
  sweep()
  for device = 0, has_cuda and 1 or 0 do
    local now = tonumber(C.dp_mem_current(device))
    gc_next[device] = now + math.max(gc_step, now / 2)
  end
end
M.collect = collect

function M.set_gc_step(bytes)
  gc_step = bytes
  for device = 0, 1 do gc_next[device] = tonumber(C.dp_mem_current(device)) + gc_step end
end

local ref_type = ffi.typeof("dp_tensor_ref")
M.ref_type = ref_type

-- A dp_tensor* returned by C (one reference, now ours) becomes a handle; collecting the handle
-- drops the reference. NULL raises dp_last_error() at the caller's line.
function M.wrap(ptr, level)
  if ptr == nil then raise(ffi.string(C.dp_last_error()), level and level + 1) end
  local slot
  if n_free > 0 then
    slot = free_slots[n_free]
    n_free = n_free - 1
  else
    top = top + 1
    slot = top
    if slot > capacity then grow() end
  end
  if sweep_pending then sweep() end
  local t = ref_type(ptr, slot)
  owners[slot] = t
  owned[slot] = ptr
  in_use[slot] = 1
  if C.dp_mem_current(0) > gc_next[0] or (has_cuda and C.dp_mem_current(1) > gc_next[1]) then
    collect()
  end
  return t
end

registry["dp.ffi"] = M
return M
