-- dp.util.fs: file-system questions the loaders ask (plain Lua io, no FFI).
local M = {}

-- true when path names a file this process can open for reading.
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

return M
