-- dp.repl: the interactive session of `dprun` and `dprun -i`: reads chunks line by line
-- (multi-line input until the chunk compiles), prints the values of bare expressions, prints
-- errors and keeps going. The terminal side (readline, history, Ctrl-C) is the host's C module
-- dp.repl.host; without it (plain luajit, tests) a session can still be fed lines.
local env_mod = require "dp.repl.env"
local helpers = require "dp.repl.helpers"
local complete = require "dp.repl.complete"

local M = {}

local function host()
  local ok, h = pcall(require, "dp.repl.host")
  return ok and h or nil
end

-- How a value prints: tensors as values plus a "[2x3] f32 cpu" line, tables with __tostring
-- through it, other tables as a short list of their fields.
function M.display(v)
  local dp = package.loaded.dp
  if type(v) == "cdata" and dp and dp.is_tensor(v) then return require("dp.tensor_format").display(v) end
  if type(v) == "string" then return v end
  if type(v) ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  local parts, n = {}, 0
  for k, x in pairs(v) do
    n = n + 1
    if n > 12 then parts[#parts + 1] = "..."; break end
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. tostring(k) .. "]")
    local shown = type(x) == "string" and ("%q"):format(x) or tostring(x)
    if type(x) == "cdata" and dp and dp.is_tensor(x) then shown = "tensor" .. x:desc() end
    parts[#parts + 1] = key .. " = " .. shown
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local Session = {}
Session.__index = Session

-- opts: frames (from dp.repl.env), out / err (functions writing a line), banner.
function M.session(opts)
  opts = opts or {}
  local self = setmetatable({ buffer = nil, done = false, failures = 0 }, Session)
  self.out = opts.out or function(line) io.stdout:write(line, "\n"); io.stdout:flush() end
  self.err = opts.err or function(line) io.stderr:write(line, "\n"); io.stderr:flush() end
  local names
  self.helpers = helpers.new(function() return names() end, self.out, function() self.done = true end)
  self.env, names = env_mod.new(self.helpers, opts.frames)
  self.names = names
  return self
end

function Session:prompt() return self.buffer and ">> " or "dp> " end

-- Ctrl-C at the prompt: forget a half-typed chunk.
function Session:clear() self.buffer = nil end

function Session:complete(word) return complete.candidates(word, self.env, self.names()) end

local function at_eof(msg) return msg ~= nil and msg:find("'<eof>'$") ~= nil end

-- One line of input; runs the chunk once it is complete. Returns true when something ran.
function Session:feed(line)
  local code = self.buffer and (self.buffer .. "\n" .. line) or line
  if self.buffer == nil and code:match("^%s*$") then return false end
  if code:sub(1, 1) == "=" then code = "return " .. code:sub(2) end   -- Lua 5.1's "=expr"
  local fn, expr_msg = loadstring("return " .. code, "=stdin")
  if not fn then
    local msg
    fn, msg = loadstring(code, "=stdin")
    if not fn then
      -- Unfinished as an expression ("1 +") or as statements ("for i = 1, 2 do"): read on.
      if at_eof(msg) or at_eof(expr_msg) then self.buffer = code; return false end
      self.buffer = nil
      self.failures = self.failures + 1
      self.err("syntax error: " .. msg)
      return false
    end
  end
  self.buffer = nil
  setfenv(fn, self.env)
  local results = { pcall(fn) }
  if not results[1] then
    self.failures = self.failures + 1
    local msg = tostring(results[2])
    if msg:match("interrupted$") then
      self.err("interrupted (the running code stopped; the session goes on)")
    else
      self.err("error: " .. msg)
    end
    return true
  end
  local n = table.maxn(results)
  if n >= 2 then
    local shown = {}
    for i = 2, n do shown[i - 1] = M.display(results[i]) end
    self.out(table.concat(shown, "\t"))
  end
  return true
end

-- Run the session: through the host's terminal loop when there is one, else over io.lines.
function M.loop(session)
  local h = host()
  if h then return h.loop(session) end
  for line in io.lines() do
    session:feed(line)
    if session.done then break end
  end
end

M.interactive = false   -- true under dprun -i and the plain REPL: dp.breakpoint() then stops

local function banner(where)
  local dp = package.loaded.dp
  return ("dprun %s REPL%s: help() lists the helpers, Ctrl-D or continue() leaves")
         :format(dp and dp.version() or "?", where and (" at " .. where) or "")
end

-- `dprun` with no script: a session over the globals, with dp loaded.
function M.start()
  M.interactive = true
  _G.dp = _G.dp or require "dp"
  local s = M.session()
  local h = host()
  if h and h.isatty() then s.out(banner()) end
  M.loop(s)
end

-- A session at the frames given (dp.breakpoint, the end of a script, an error), then return.
function M.open(frames, where)
  _G.dp = _G.dp or require "dp"
  local s = M.session{ frames = frames }
  s.out(banner(where))
  M.loop(s)
  return s
end

-- `dprun -i script args...`: run it until it ends (dp.breakpoint() is appended to it), stops at
-- dp.breakpoint() or fails (Ctrl-C included), then open the REPL with its variables in scope.
function M.run_script(path, ...)
  M.interactive = true
  local f, err = io.open(path, "rb")
  if not f then error(("cannot open %s: %s"):format(path, tostring(err)), 0) end
  local src = f:read("*a")
  f:close()
  if src:sub(1, 1) == "#" then src = "--" .. src end   -- a #! line, as luaL_loadfile skips it
  local chunkname = "@" .. path
  local chunk = loadstring(src .. "\n;require('dp.repl.breakpoint').at_end()", chunkname)
  if not chunk then   -- e.g. the script ends with a return: no end breakpoint
    chunk, err = loadstring(src, chunkname)
    if not chunk then error(err, 0) end
  end
  local snapshot, trace
  local function handler(e)
    snapshot = env_mod.snapshot(2, chunkname)
    trace = debug.traceback(tostring(e), 2)
    return e
  end
  local args = { ... }
  local h = host()
  local run = function() return xpcall(function() return chunk(unpack(args)) end, handler) end
  local ok
  if h then ok = h.interruptible(run) else ok = run() end
  if ok then return end
  local msg = trace or ""
  if msg:match("^[^\n]*interrupted\n") then
    io.stderr:write("dprun: interrupted; the REPL has the script's variables as they were\n")
  else
    io.stderr:write("dprun: ", msg, "\n")
  end
  M.open(snapshot, path .. " (stopped)")
end

return M
