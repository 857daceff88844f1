-- dp.util.atomic: write a file so that readers see either the old file or the complete new one:
-- write <path>.tmp-<pid> beside it, flush, fsync, close, rename over <path>; on failure remove
-- the temporary file and leave <path> as it was.
local ffi = require "ffi"

-- Each declaration alone, so one already made elsewhere (same or other prototype) does not stop
-- the rest; the ones that fail to declare are looked up as whatever was declared before.
for _, decl in ipairs {
  "int open(const char *path, int flags, ...);",
  "int close(int fd);",
  "int fsync(int fd);",
  "int getpid(void);",
  "int mkdir(const char *path, unsigned int mode);",
} do pcall(ffi.cdef, decl) end

local C = ffi.C
local M = {}

local O_RDONLY = 0   -- 0 on every POSIX system we build on; the other flags vary, so none is used

-- fsync a path through a fresh read-only descriptor: on Linux this flushes the file's (or the
-- directory's) data and metadata whichever descriptor wrote them. Best effort for directories.
local function sync_path(path, required)
  local ok, fd = pcall(C.open, path, O_RDONLY)
  if not ok or fd < 0 then
    if required then error(("cannot open %s to fsync it"):format(path), 0) end
    return
  end
  local rc = C.fsync(fd)
  C.close(fd)
  if rc ~= 0 and required then error(("fsync of %s failed"):format(path), 0) end
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function pid()
  local ok, id = pcall(function() return C.getpid() end)
  return ok and tonumber(id) or math.random(1, 2 ^ 30)
end

-- Temporary name used for path (tests look for leftovers with it).
function M.temp_name(path)
  return ("%s.tmp-%d"):format(path, pid())
end

-- write(path, fn, what): fn(file) writes the content through file:write (it may raise). Errors
-- are raised as "<what>: <path>: ..." with no file left behind.
function M.write(path, fn, what)
  what = what or "write"
  local tmp = M.temp_name(path)
  local f, err = io.open(tmp, "wb")
  if not f then error(("%s: cannot create %s: %s"):format(what, tmp, tostring(err)), 0) end
  local ok, msg = pcall(function()
    fn(f)
    local flushed, ferr = f:flush()
    if not flushed then error(("%s: writing %s failed: %s"):format(what, tmp, tostring(ferr)), 0) end
    sync_path(tmp, true)
    local closed, cerr = f:close()
    f = nil
    if not closed then error(("%s: closing %s failed: %s"):format(what, tmp, tostring(cerr)), 0) end
    local renamed, rerr = os.rename(tmp, path)
    if not renamed then
      error(("%s: cannot rename %s over %s: %s"):format(what, tmp, path, tostring(rerr)), 0)
    end
  end)
  if not ok then
    if f then pcall(f.close, f) end
    os.remove(tmp)
    error(msg, 0)
  end
  sync_path(dirname(path), false)   -- make the rename itself durable
end

-- The whole content as a string, written atomically.
function M.write_string(path, text, what)
  M.write(path, function(f)
    local ok, err = f:write(text)
    if not ok then error(("%s: writing %s failed: %s"):format(what or "write", path, tostring(err)), 0) end
  end, what)
end

-- Create directory path if it does not exist (one level, like mkdir without -p).
function M.ensure_dir(path, what)
  local probe = io.open(path .. "/.", "rb")
  if probe then probe:close() return end
  if C.mkdir(path, tonumber("755", 8)) ~= 0 then
    error(("%s: cannot create directory %s"):format(what or "mkdir", path), 0)
  end
end

return M
