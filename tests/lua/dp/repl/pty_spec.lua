-- Specs for the dprun REPL driven as a person would, through a pseudo-terminal: Tab completion,
-- an error that leaves the session alive, Ctrl-C at the prompt and during a step, history, and
-- grads() showing the numbers the engine computed (checked against this process's own run).
local pty = require "support.pty"

local function find_dprun()
  for _, path in ipairs { os.getenv("DPRUN"), "build/dprun", "build-c/dprun" } do
    local f = path and io.open(path, "rb")
    if f then f:close() return path end
  end
end
local dprun = find_dprun()
local here = "tests/lua/dp/repl/tiny_run.lua"

local function start(history)
  local p = pty.spawn({ dprun }, { "TERM=dumb", "INPUTRC=/dev/null", "HOME=/nonexistent", "COLUMNS=80",
                                   "DPRUN_HISTORY=" .. history, "PATH=/usr/bin:/bin" })
  p:expect("dp> ")
  return p
end

-- Type a line and wait for the next prompt; returns what was printed in between.
local function line(p, text, timeout)
  local at = #p:screen()
  p:send(text .. "\n")
  local e = p:expect("dp> ", timeout or 10, at)
  return p:screen():sub(at + 1, e)
end

-- Ctrl-D once the prompt has set the terminal up (typed earlier, the line discipline would
-- read it as end of a cooked line instead).
local function quit(p)
  p:pump(200)
  p:send("\004")
  return p:close()
end

describe("dprun REPL on a terminal", function()
  if not dprun or not dprun:match("^/") and not io.open(dprun) then
    it("is built", function() pending("no dprun binary (set DPRUN)") end)
    return
  end
  if dprun:sub(1, 1) ~= "/" then dprun = os.getenv("PWD") .. "/" .. dprun end
  local history

  before_each(function() history = os.tmpname() end)
  after_each(function() os.remove(history) end)

  it("completes globals, fields and tensor methods with Tab", function()
    local p = start(history)
    local at = #p:screen()
    p:send("gra\t")
    p:expect("grads", 5, at)
    p:send("\003")                       -- Ctrl-C at the prompt clears the line
    p:expect("\ndp> ", 5, at)
    line(p, "x = dp.ones(2)")
    at = #p:screen()
    p:send("x:num\t")
    p:expect("x:numel", 5, at)
    p:send("()\n")
    local e = p:expect("\ndp> ", 5, at)
    assert.truthy(p:screen():sub(at, e):find("\n2\n", 1, true), p:screen():sub(at))
    at = #p:screen()
    p:send("dp.optim.sg\t")
    p:expect("dp.optim.sgd", 5, at)
    p:send("\003")
    p:expect("\ndp> ", 5, at)
    assert.equal(0, quit(p))
    local f = assert(io.open(history))
    local saved = f:read("*a")
    f:close()
    assert.truthy(saved:find("x = dp.ones(2)", 1, true), saved)
  end)

  it("prints an error and keeps the session, with multi-line input", function()
    local p = start(history)
    local out = line(p, "error('boom')")
    assert.truthy(out:find("boom", 1, true), out)
    local at = #p:screen()
    p:send("for i = 1, 3 do\n")
    p:expect(">> ", 5, at)
    out = line(p, "io.write(i * 7, ' ') end")
    assert.truthy(out:find("7 14 21", 1, true), out)
    assert.truthy(line(p, "1 + 2"):find("\n3\n", 1, true))
    assert.equal(0, quit(p))
  end)

  it("interrupts a running step with Ctrl-C and keeps the run consistent", function()
    local p = start(history)
    line(p, ("dofile(%q)"):format(here))
    local at = #p:screen()
    p:send("step(100000)\n")
    p:expect("step 3 ", 10, at)
    p:send("\003")
    p:expect("interrupted", 10, at)
    p:expect("\ndp> ", 10, at)
    local out = line(p, "print('steps', priv:steps(), priv.ledger:total_steps())")
    local steps, recorded = out:match("steps\t(%d+)\t(%d+)")
    assert.truthy(steps, out)
    assert.equal(steps, recorded)
    assert.truthy(tonumber(steps) >= 3 and tonumber(steps) < 100000)
    assert.equal(0, quit(p))
  end)

  it("shows in grads() the gradient norms the engine computed", function()
    -- The same run in this process: seeds make it identical; norms of .grad in f64 here.
    local dp = require "dp"
    local env = setmetatable({ arg = {} }, { __index = _G })
    local chunk = assert(loadfile(here))
    setfenv(chunk, env)
    chunk()
    local expect = {}
    local opt = env.priv.optimizer
    local step = opt.step
    opt.step = function(o, ...)
      for _, e in ipairs(env.model:named_parameters()) do
        local s = 0
        for _, v in ipairs(require("support.tiny_dp_model").flat(e.tensor.grad)) do s = s + v * v end
        expect[e.name] = math.sqrt(s)
      end
      return step(o, ...)
    end
    -- The clipped sum before noise and the noise added, read off the accumulators around finish.
    local sums, noises = {}, {}
    local eng = env.priv.engine
    local finish = eng.finish
    eng.finish = function(e, noise, std, scale)
      local before = {}
      for _, name in ipairs { "weight", "bias" } do
        before[name] = require("support.tiny_dp_model").flat(e:accumulator(name))
      end
      finish(e, noise, std, scale)
      for _, name in ipairs { "weight", "bias" } do
        local after = require("support.tiny_dp_model").flat(env.model[name].grad)
        local s, n = 0, 0
        for i, v in ipairs(before[name]) do
          s = s + v * v
          n = n + (after[i] / scale - v) ^ 2
        end
        sums[name], noises[name] = math.sqrt(s), math.sqrt(n)
      end
    end
    env.priv:step()
    eng.finish = finish
    assert.truthy(dp.is_tensor(env.model.weight))

    local p = start(history)
    line(p, ("dofile(%q)"):format(here))
    line(p, "step(1)")
    local out = line(p, "grads(model)")
    local num = "([%d.e+-]+)"
    for _, name in ipairs { "weight", "bias" } do
      local g, sum, noise, snr = out:match("\n" .. name .. "%s+%[[%dx]+%]%s+f64%s+" .. num .. "%s+" .. num
                                           .. "%s+" .. num .. "%s+" .. num)
      assert.truthy(g, out)
      assert.near(expect[name], tonumber(g), 1e-5 * expect[name])
      assert.near(sums[name], tonumber(sum), 1e-5 * sums[name])
      assert.near(noises[name], tonumber(noise), 1e-5 * noises[name])
      assert.near(sums[name] / noises[name], tonumber(snr), 1e-4 * sums[name] / noises[name])
    end
    assert.truthy(out:find("clipped sum", 1, true))
    -- The clipped sum is a raw statistic: the first read warns, once per session.
    assert.truthy(out:find("not differentially private", 1, true), out)
    out = line(p, "persample(model)")
    assert.falsy(out:find("not differentially private", 1, true), out)
    assert.truthy(out:find("(all)", 1, true), out)
    out = line(p, "persample(model)")
    assert.falsy(out:find("not differentially private", 1, true), out)
    local count = tonumber(line(p, "priv.ledger:inspections()"):match("\n(%d+)\n"))
    assert.truthy(count and count >= 1)
    assert.equal(0, quit(p))
  end)
end)
