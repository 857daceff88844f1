-- Specs for dp.repl.complete: globals, table fields, metatable __index chains, tensor methods,
-- `obj:` methods and loaded submodules of lazy namespaces.
local dp = require "dp"
local complete = require "dp.repl.complete"

local function has(list, value)
  for _, v in ipairs(list) do if v == value then return true end end
  return false
end

describe("dp.repl.complete", function()
  it("completes globals, extra names and keywords", function()
    local got = complete.candidates("pri", {}, { privacy = function() end })
    assert.truthy(has(got, "print") and has(got, "privacy"))
    assert.truthy(has(complete.candidates("whi", {}), "while"))
    for _, c in ipairs(got) do assert.equal("pri", c:sub(1, 3)) end
  end)

  it("completes fields of tables and of their class chain", function()
    local Base = { greet = function() end }
    Base.__index = Base
    local Child = setmetatable({ wave = function() end }, { __index = Base })
    Child.__index = Child
    local obj = setmetatable({ name = "x" }, Child)
    local env = { obj = obj }
    assert.same({ "obj.greet" }, complete.candidates("obj.gr", env))
    assert.same({ "obj.name" }, complete.candidates("obj.na", env))
    -- obj: lists only methods
    assert.same({ "obj:greet", "obj:wave" }, complete.candidates("obj:", env))
  end)

  it("completes tensor methods and dp namespaces", function()
    local env = { x = dp.ones(2) }
    local got = complete.candidates("x:nu", env)
    assert.truthy(has(got, "x:numel"), table.concat(got, " "))
    assert.truthy(has(complete.candidates("x:st", env), "x:stats"))
    local _ = dp.optim
    assert.truthy(has(complete.candidates("dp.opt", { dp = dp }), "dp.optim"))
    assert.truthy(has(complete.candidates("dp.optim.sg", { dp = dp }), "dp.optim.sgd"))
  end)

  it("gives nothing for unknown paths", function()
    assert.same({}, complete.candidates("nosuch.thing", {}))
    assert.same({}, complete.candidates(".x", {}))
  end)
end)
