-- Specs for dp.train.progress: the bar's text, in-place redraws on a terminal, and plain,
-- rate-limited lines otherwise (checked on a fake stream and a fake clock).
local progress = require "dp.train.progress"

local function stream()
  local s = { parts = {} }
  function s:write(...) for _, p in ipairs { ... } do self.parts[#self.parts + 1] = p end return self end
  function s:flush() end
  function s:text() return table.concat(self.parts) end
  return s
end

describe("dp.train.progress", function()
  it("draws the fraction, counts, elapsed time and an estimate", function()
    local t = 100
    local bar = progress.new{ total = 4, label = "train", stream = stream(), tty = true, width = 8,
                              now = function() return t end }
    t = 110
    bar:update(1, "loss 1.0")
    -- 1 of 4 after 10 s: 25%, 2 of 8 cells, 30 s to go
    assert.equal("train [##......] 1/4  25%  0m10s elapsed  eta 0m30s  loss 1.0", bar:line())
  end)

  it("redraws in place on a terminal and keeps log lines above the bar", function()
    local s = stream()
    local bar = progress.new{ total = 2, stream = s, tty = true, width = 4, now = function() return 0 end }
    bar:update(1)
    bar:log("step 1")
    bar:update(2)
    bar:finish()
    local text = s:text()
    assert.truthy(text:find("\r\27[K step 1\n", 1, true) or text:find("\r\27[Kstep 1\n", 1, true))
    local _, redraws = text:gsub("\r\27%[K", "")
    assert.equal(3, redraws)   -- two updates and the clearing before the log line
    assert.equal("\n", text:sub(-1))
  end)

  it("prints plain lines, at most one per interval, and always the last", function()
    local s, t = stream(), 0
    local bar = progress.new{ total = 10, stream = s, tty = false, every = 5, now = function() return t end }
    for i = 1, 10 do t = i; bar:update(i) end
    local text = s:text()
    assert.is_nil(text:find("\r", 1, true))
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l:match("(%d+)/10") end
    assert.same({ "1", "6", "10" }, lines)
  end)

  it("rejects a bad total", function()
    assert.error_matches(function() progress.new{ total = "x" } end, "total must be a number")
  end)
end)
