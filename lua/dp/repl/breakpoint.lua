-- dp.repl.breakpoint: dp.breakpoint() opens the REPL with the caller's locals and the script's
-- main-chunk locals in scope (assignments write back); leaving it resumes the script. Without a
-- terminal and outside `dprun -i` it is a no-op with a one-line note, so CI runs never hang.
local env_mod = require "dp.repl.env"

local M = {}

local noted = false

local function can_stop()
  local repl = require "dp.repl"
  if repl.interactive then return true end
  local ok, h = pcall(require, "dp.repl.host")
  return ok and h.isatty()
end

-- Frames from `level` (relative to the caller): that frame, then the nearest main chunk above
-- it (the script's, or a REPL line's).
local function frames_from(level)
  local here = level + 1
  local frames = { env_mod.capture(here) }
  local l = here
  while true do
    local info = debug.getinfo(l, "S")
    if not info then break end
    if info.what == "main" then
      if l ~= here then frames[#frames + 1] = env_mod.capture(l) end
      break
    end
    l = l + 1
  end
  return frames
end

local function stop(level, where)
  if not can_stop() then
    if not noted then
      noted = true
      io.stderr:write(("dp.breakpoint at %s: no terminal and not under dprun -i; going on\n"):format(where))
    end
    return
  end
  require("dp.repl").open(frames_from(level + 1), where)
end

local function place(level)
  local info = debug.getinfo(level + 1, "Sl")
  return info and (info.short_src .. ":" .. tostring(info.currentline)) or "?"
end

-- dp.breakpoint(): stop here.
function M.breakpoint() stop(2, place(2)) end

-- Appended by dp.repl.run_script to the end of a script.
function M.at_end()
  if require("dp.repl").interactive then stop(2, place(2):gsub(":%d+$", "") .. " (end)") end
end

-- Not a tail call: the caller's frame must stay at the level stop() expects.
return setmetatable(M, { __call = function() stop(2, place(2)) end })
