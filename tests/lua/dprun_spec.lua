-- Specs for the dprun executable (core/cli): scripts and arg, -e, the REPL, errors with a
-- traceback and exit codes. DPRUN names the binary (tools/test.sh sets it); else build/dprun.
local function find_dprun()
  local candidates = { os.getenv("DPRUN"), "build/dprun", "build-lua/dprun" }
  for _, path in ipairs(candidates) do
    local f = path and io.open(path, "rb")
    if f then f:close() return path end
  end
end

local dprun = find_dprun()

-- Output (stdout and stderr together) and exit status of a shell command.
local function run(command, stdin)
  local tmp
  if stdin then
    tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    f:write(stdin)
    f:close()
    command = command .. " < " .. tmp
  end
  local p = io.popen(command .. " 2>&1; echo \"[rc=$?]\"")
  local out = p:read("*a")
  p:close()
  if tmp then os.remove(tmp) end
  local rc = tonumber(out:match("%[rc=(%d+)%]\n?$"))
  return out:gsub("%[rc=%d+%]\n?$", ""), rc
end

local function script(text)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("dprun", function()
  if not dprun then
    it("is built", function() pending("no dprun binary (set DPRUN)") end)
    return
  end

  it("prints its version and LuaJIT's", function()
    local out, rc = run(dprun .. " --version")
    assert.equal(0, rc)
    assert.truthy(out:match("^dprun %d+%.%d+%.%d+ %(LuaJIT 2%.1"), out)
  end)

  it("lists commands and flags in --help", function()
    local out, rc = run(dprun .. " --help")
    assert.equal(0, rc)
    for _, flag in ipairs { "script.lua", "-e", "-i", "-l", "eps", "--version", "--help", "REPL" } do
      assert.truthy(out:find(flag, 1, true), flag)
    end
  end)

  it("runs a script with arg and ... like luajit", function()
    local path = script([[
      print(arg[0]:match("[^/]+$"), arg[1], arg[2], arg[-1] ~= nil, select("#", ...), ...)
      local dp = require "dp"
      print(dp.version(), dp.ffi.library)
    ]])
    local out, rc = run(dprun .. " " .. path .. " one two")
    os.remove(path)
    assert.equal(0, rc)
    assert.truthy(out:find(path:match("[^/]+$") .. "\tone\ttwo\ttrue\t2\tone\ttwo", 1, true), out)
    assert.truthy(out:find("(linked into the executable)", 1, true), out)
  end)

  it("reports a failing script at file:line with a traceback and exits 1", function()
    local path = script("local x = 1\nlocal function f() error('boom') end\nf()\n")
    local out, rc = run(dprun .. " " .. path)
    os.remove(path)
    assert.equal(1, rc)
    assert.truthy(out:find("dprun: " .. path .. ":2: boom", 1, true), out)
    assert.truthy(out:find("stack traceback:", 1, true))
    assert.truthy(out:find(path .. ":3:", 1, true))
  end)

  it("reports C errors at the script's line", function()
    local path = script('local dp = require "dp"\n\nlocal y = dp.zeros(2, 3) + dp.zeros(4)\n')
    local out, rc = run(dprun .. " " .. path)
    os.remove(path)
    assert.equal(1, rc)
    assert.truthy(out:find(path .. ":3: add: shapes do not broadcast ([2,3] f32 cpu and [4] f32 cpu",
                           1, true), out)
  end)

  it("reports syntax errors and missing files", function()
    local path = script("local = 1\n")
    local out, rc = run(dprun .. " " .. path)
    os.remove(path)
    assert.equal(1, rc)
    assert.truthy(out:find("dprun: " .. path .. ":1:", 1, true), out)
    out, rc = run(dprun .. " /nonexistent/x.lua")
    assert.equal(1, rc)
    assert.truthy(out:find("cannot open /nonexistent/x.lua", 1, true), out)
  end)

  it("runs -e code and -l modules in order", function()
    local out, rc = run(dprun .. [[ -l dp -e "print(type(dp.tensor))" -e "print(1 + 1)"]])
    assert.equal(0, rc)
    assert.equal("function\n2\n", out)
    out, rc = run(dprun .. [[ -e "error('bad')"]])
    assert.equal(1, rc)
    assert.truthy(out:find("dprun: (command line):1: bad", 1, true), out)
  end)

  it("rejects unknown options with status 2", function()
    local out, rc = run(dprun .. " --frobnicate")
    assert.equal(2, rc)
    assert.truthy(out:find("unknown option '--frobnicate'", 1, true))
    out, rc = run(dprun .. " -e")
    assert.equal(2, rc)
  end)

  it("opens a REPL with dp loaded that prints expressions", function()
    local out, rc = run(dprun, "x = dp.tensor({1, 2})\nprint((x * 3):totable()[2])\n1 + 2\n" ..
                               "for i = 1, 2 do\nio.write(i, ' ')\nend\nerror('oops')\n'after'\n")
    assert.equal(0, rc)
    assert.truthy(out:find("6\n3\n1 2 ", 1, true), out)
    assert.truthy(out:find("oops", 1, true))
    assert.truthy(out:find("after", 1, true))
  end)

  it("runs a script then the REPL with -i", function()
    local path = script("answer = 42\n")
    local out, rc = run(dprun .. " -i " .. path, "print(answer)\n")
    os.remove(path)
    assert.equal(0, rc)
    assert.truthy(out:find("42", 1, true), out)
  end)

  it("lists the REPL helpers in --help", function()
    local out = run(dprun .. " --help")
    for _, name in ipairs { "help()", "grads(model)", "persample(model)", "privacy()", "step(n)",
                            "model:summary()", "t:stats()", "continue()" } do
      assert.truthy(out:find(name, 1, true), name)
    end
  end)

  it("opens the REPL at dp.breakpoint() under -i with the caller's locals, and resumes", function()
    local path = script("local function f()\n  local inner = 5\n  dp.breakpoint()\n  print('inner now', inner)\nend\n" ..
                        "dp = require 'dp'\nlocal outer = 7\nf()\nprint('resumed')\n")
    local out, rc = run(dprun .. " -i " .. path, "print('sum', inner + outer)\ninner = 11\ncontinue()\nprint('at end', outer)\n")
    os.remove(path)
    assert.equal(0, rc)
    assert.truthy(out:find("sum\t12", 1, true), out)
    assert.truthy(out:find("inner now\t11", 1, true), out)
    assert.truthy(out:find("resumed", 1, true), out)
    assert.truthy(out:find("at end\t7", 1, true), out)
  end)

  it("keeps a failed -i script's variables for the REPL", function()
    local path = script("local count = 3\nerror('stop here')\n")
    local out = run(dprun .. " -i " .. path, "print('count', count)\n")
    os.remove(path)
    assert.truthy(out:find("stop here", 1, true), out)
    assert.truthy(out:find("count\t3", 1, true), out)
  end)

  it("passes over dp.breakpoint() without a terminal outside -i, with one note", function()
    local path = script("local dp = require 'dp'\nfor i = 1, 2 do dp.breakpoint() end\nprint('done')\n")
    local out, rc = run(dprun .. " " .. path .. " < /dev/null")
    os.remove(path)
    assert.equal(0, rc)
    assert.truthy(out:find("done", 1, true), out)
    local _, notes = out:gsub("no terminal", "")
    assert.equal(1, notes, out)
  end)

  it("reads a script from stdin with -", function()
    local out, rc = run(dprun .. " -", "print('from stdin', arg[0])\n")
    assert.equal(0, rc)
    assert.truthy(out:find("from stdin\t-", 1, true), out)
  end)

  it("shows where it found the library", function()
    local out, rc = run(dprun .. " --paths")
    assert.equal(0, rc)
    assert.truthy(out:find("lua%s+/.+/lua\n"), out)
    assert.truthy(out:find("header%s+/.+dp%.h\n"), out)
  end)

  it("dispatches `dprun eps` to the accountant", function()
    local out = run(dprun .. " eps --help")
    assert.is_nil(out:find("unknown option", 1, true), out)
    assert.truthy(#out > 0)
  end)
end)
