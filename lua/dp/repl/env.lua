-- dp.repl.env: the environment REPL code runs in: the helpers, then the locals of captured
-- frames (live ones are read and written through the debug library, dead ones as a snapshot),
-- then the globals. New names become globals.
local M = {}

-- The locals of the Lua function running at `level` (as seen by the caller of this function):
-- name -> slot index; a later local of the same name shadows an earlier one.
local function frame_locals(level)
  local slots = {}
  local i = 1
  while true do
    local name = debug.getlocal(level + 1, i)
    if name == nil then break end
    if name:sub(1, 1) ~= "(" then slots[name] = i end
    i = i + 1
  end
  return slots
end

-- A live frame: the function at `level` (relative to the caller) and its local slots.
function M.capture(level)
  local info = debug.getinfo(level + 1, "fS")
  if not info then return nil end
  return { func = info.func, slots = frame_locals(level + 1), source = info.source }
end

-- The level of the innermost call of func, as seen by the caller of this function.
local function level_of(func)
  local level = 2
  while true do
    local info = debug.getinfo(level, "f")
    if not info then return nil end
    if info.func == func then return level - 1 end
    level = level + 1
  end
end

-- A snapshot of every frame from `level` up (values copied, for frames about to die), the
-- innermost first; only frames whose source is `source` when given.
function M.snapshot(level, source)
  local frames = {}
  level = level + 1
  while true do
    local info = debug.getinfo(level, "S")
    if not info then break end
    if info.what ~= "C" and (not source or info.source == source) then
      local values = {}
      local i = 1
      while true do
        local name, value = debug.getlocal(level, i)
        if name == nil then break end
        if name:sub(1, 1) ~= "(" then values[name] = { value } end
        i = i + 1
      end
      frames[#frames + 1] = { values = values }
    end
    level = level + 1
  end
  return frames
end

-- env over frames (the first that has a name wins) and helpers.
function M.new(helpers, frames)
  frames = frames or {}
  local function find(name)
    for _, f in ipairs(frames) do
      if f.values and f.values[name] then return f end
      if f.slots and f.slots[name] then return f end
    end
  end
  local function read(f, name)
    if f.values then return f.values[name][1] end
    local level = level_of(f.func)
    if not level then return nil end   -- the frame has returned
    local _, v = debug.getlocal(level, f.slots[name])
    return v
  end
  local env = {}
  local meta = {
    __index = function(_, name)
      local h = helpers[name]
      if h ~= nil then return h end
      local f = find(name)
      if f then return read(f, name) end
      return _G[name]
    end,
    __newindex = function(_, name, value)
      local f = find(name)
      if f and f.values then
        f.values[name][1] = value
      elseif f then
        local level = level_of(f.func)
        if level then debug.setlocal(level, f.slots[name], value) end
      else
        _G[name] = value
      end
    end,
  }
  setmetatable(env, meta)
  -- Name -> value of what env shows besides the globals (for completion).
  local function names()
    local out = {}
    for k, v in pairs(helpers) do out[k] = v end
    for i = #frames, 1, -1 do
      local f = frames[i]
      for k in pairs(f.values or f.slots) do out[k] = read(f, k) end
    end
    return out
  end
  return env, names
end

return M
