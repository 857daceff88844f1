-- dp.train.progress: a progress bar on stderr for training loops. On a terminal it redraws one
-- line in place ("\r") and keeps log lines above it; when stderr is not a terminal (a log file,
-- CI) it prints a plain line at most every `every` seconds and at the end, so logs stay readable.
--
--   local bar = progress.new{ total = steps, label = "train" }
--   bar:update(done, "loss 1.02  eps 3.1")   -- done = steps so far
--   bar:log("a line that must not be overwritten")
--   bar:finish()
local ffi = require "ffi"

pcall(ffi.cdef, "int isatty(int fd);")

local M = {}
local Bar = {}
Bar.__index = Bar

local function is_tty(fd)
  local ok, r = pcall(function() return ffi.C.isatty(fd) end)
  return ok and r == 1
end

local function duration(s)
  s = math.max(0, math.floor(s + 0.5))
  if s >= 3600 then return ("%dh%02dm"):format(s / 3600, s % 3600 / 60) end
  return ("%dm%02ds"):format(s / 60, s % 60)
end

-- new{total =, label = "", stream = io.stderr, tty = (auto), width = 30, every = 10 (seconds
-- between plain lines), now = os.time (a clock, for tests)}.
function M.new(opts)
  opts = opts or {}
  if type(opts.total) ~= "number" or opts.total < 0 then
    error("progress.new: total must be a number >= 0, got " .. tostring(opts.total), 2)
  end
  local stream = opts.stream or io.stderr
  local tty = opts.tty
  if tty == nil then tty = stream == io.stderr and is_tty(2) end
  local now = opts.now or os.time
  return setmetatable({ total = opts.total, label = opts.label or "", stream = stream, tty = tty,
                        width = opts.width or 30, every = opts.every or 10, now = now,
                        start = now(), done = 0, text = "", last_plain = nil, shown = false }, Bar)
end

function Bar:line()
  local frac = self.total > 0 and math.min(self.done / self.total, 1) or 1
  local elapsed = self.now() - self.start
  local eta = self.done > 0 and elapsed / self.done * (self.total - self.done) or nil
  local filled = math.floor(frac * self.width + 0.5)
  return ("%s [%s%s] %d/%d %3d%%  %s elapsed%s  %s"):format(self.label, ("#"):rep(filled),
    ("."):rep(self.width - filled), self.done, self.total, math.floor(frac * 100 + 0.5), duration(elapsed),
    eta and ("  eta " .. duration(eta)) or "", self.text)
end

function Bar:draw()
  if self.tty then
    self.stream:write("\r\27[K", self:line())
    self.shown = true
  else
    self.stream:write(self:line(), "\n")
    self.last_plain = self.now()
  end
  self.stream:flush()
end

-- update(done, text): the count so far and a short status.
function Bar:update(done, text)
  self.done, self.text = done, text or self.text
  local t = self.now()
  if self.tty or self.done >= self.total or self.last_plain == nil or t - self.last_plain >= self.every then
    self:draw()
  end
end

-- A line printed above the bar (the bar is redrawn under it on a terminal).
function Bar:log(line)
  if self.tty and self.shown then self.stream:write("\r\27[K") end
  self.stream:write(line, "\n")
  if self.tty and self.shown then self.stream:write(self:line()) end
  self.stream:flush()
end

function Bar:finish()
  if self.tty and self.shown then self.stream:write("\n") end
  self.shown = false
  self.stream:flush()
end

M.duration = duration
return M
