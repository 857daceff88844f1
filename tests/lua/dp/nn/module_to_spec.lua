-- Specs for Module:to(device): parameters and the tensors kept beside them move in place and the
-- module is returned; a move to where they already are keeps every handle and value; tied
-- weights stay tied; errors name the module and the device (cuda without a GPU says why).
local dp = require "dp"
local nn = require "dp.nn"

local has_cuda = dp.cuda_available()

-- first = Linear(3, 2), second shares first's weight (tied), plus a buffer and a cache table.
local Tied = nn.class("Tied")
function Tied:init()
  self:add_module("first", nn.Linear(3, 2, { rng = dp.rng(5) }))
  self:add_module("second", nn.Linear(3, 2, { bias = false, rng = dp.rng(6) }))
  self.second._params.weight = self.first.weight
  self.second.weight = self.first.weight
  self.buffer = dp.tensor({ 1, 2, 3 }, "i64")
  self.cache = { ids = dp.tensor({ { 4, 5 } }, "i64") }
end
function Tied:forward(x) return self.first(x) + self.second(x) end

local function snapshot(m)
  local out = {}
  for _, e in ipairs(m:named_parameters()) do out[e.name] = e.tensor:totable() end
  return out
end

describe("Module:to", function()
  it("to('cpu') returns the module and keeps every handle and value", function()
    local m = Tied.new()
    local before, handles = snapshot(m), {}
    for _, e in ipairs(m:named_parameters()) do handles[e.name] = e.tensor end
    local buffer, ids = m.buffer, m.cache.ids
    assert.are.equal(m, m:to("cpu"))
    for _, e in ipairs(m:named_parameters()) do
      assert.are.equal(handles[e.name], e.tensor, e.name)
      assert.are.equal("cpu", e.tensor:device())
      assert.is_true(e.tensor:requires_grad())
    end
    assert.are.same(before, snapshot(m))
    assert.are.equal(buffer, m.buffer)
    assert.are.equal(ids, m.cache.ids)
    assert.are.equal(m.first.weight, m.second.weight)
    -- Still usable: the same forward as a fresh build from the same seeds.
    local x = dp.tensor({ { 1, -1, 0.5 } })
    assert.are.same(Tied.new():forward(x):totable(), m:forward(x):totable())
  end)

  it("to('cuda') without a GPU fails naming the module, the device and the reason", function()
    local m = Tied.new()
    if has_cuda then
      m:to("cuda")
      for _, e in ipairs(m:named_parameters()) do assert.are.equal("cuda", e.tensor:device(), e.name) end
      assert.are.equal("cuda", m.buffer:device())
      assert.are.equal("cuda", m.cache.ids:device())
      assert.are.equal(m.first.weight, m.second.weight)
      assert.are.same(snapshot(Tied.new()), snapshot(m))
      return
    end
    local ok, err = pcall(m.to, m, "cuda")
    assert.is_false(ok)
    assert.truthy(err:find("Tied:to(cuda)", 1, true), err)
    assert.truthy(err:find("cannot move Tied to cuda: no CUDA device is usable (", 1, true), err)
    assert.are.equal("cpu", m.first.weight:device(), "nothing moved")
  end)

  it("rejects an unknown device and a model under a precision policy, naming both", function()
    local m = Tied.new()
    assert.error_matches(function() m:to("tpu") end, "Tied:to(tpu): unknown device tpu", nil, true)
    assert.error_matches(function() m:to(nil) end, "Tied:to(nil): unknown device nil", nil, true)
    dp.precision.apply(m, "bf16")
    assert.error_matches(function() m:to("cpu") end, "Tied:to(cpu): dp.device.move_module: module '(root)' has a precision policy", nil, true)
  end)
end)
