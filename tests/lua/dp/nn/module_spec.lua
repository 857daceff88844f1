-- Specs for dp.nn.module: the named tree (names, order, get), freezing by pattern, counts,
-- train/eval and the summary table.
local dp = require "dp"
local nn = require "dp.nn"

-- A small tree: root{ first = Linear(3, 2), blocks = ModuleList{ Linear(2, 2, no bias), LayerNorm(2) },
-- scale (own parameter, registered after the children but listed first as in PyTorch) }.
local Toy = nn.class("Toy")
function Toy:init()
  self:add_module("first", nn.Linear(3, 2, { rng = dp.rng(1) }))
  self:add_module("blocks", nn.ModuleList{ nn.Linear(2, 2, { bias = false, rng = dp.rng(2) }), nn.LayerNorm(2) })
  self:add_module("drop", nn.Dropout(0.5))
  self:add_parameter("scale", dp.ones{ 2 })
end
function Toy:forward(x) return self.blocks[2](self.blocks[1](self.first(x))) * self.scale end

local expected = { "scale", "first.weight", "first.bias", "blocks.0.weight", "blocks.1.weight", "blocks.1.bias" }

local function names(list)
  local out = {}
  for k, e in ipairs(list) do out[k] = e.name end
  return out
end

describe("dp.nn.module", function()
  it("names parameters with full dotted paths, own first then children in insertion order", function()
    local m = Toy.new()
    assert.are.same(expected, names(m:named_parameters()))
    local ps = m:parameters()
    assert.are.equal(#expected, #ps)
    for k, e in ipairs(m:named_parameters()) do
      assert.are.equal(ps[k], e.tensor)
      assert.is_true(e.tensor:is_param() and e.tensor:requires_grad())
    end
    assert.are.equal(m.blocks[1], m:named_parameters()[4].module)
  end)

  it("lists modules depth first with their names", function()
    assert.are.same({ "", "first", "blocks", "blocks.0", "blocks.1", "drop" }, names(Toy.new():named_modules()))
  end)

  it("gets modules and parameters by dotted name, and names the missing part", function()
    local m = Toy.new()
    assert.are.equal(m.blocks[2], m:get("blocks.1"))
    assert.are.equal(m.first.weight, m:get("first.weight"))
    assert.are.equal(m, m:get(""))
    assert.error_matches(function() m:get("blocks.7.weight") end, "no module or parameter '7' in 'blocks'")
    assert.error_matches(function() m:get("first.weight.x") end, "'x' in 'first.weight'")
  end)

  it("rejects duplicate and dotted names", function()
    local m = Toy.new()
    assert.error_matches(function() m:add_module("first", nn.Dropout(0.1)) end, "'first' is already registered")
    assert.error_matches(function() m:add_parameter("a.b", dp.ones{ 1 }) end, "without dots")
  end)

  it("freezes and unfreezes by Lua pattern, counting matches, and errors on a pattern that matches nothing", function()
    local m = Toy.new()
    assert.are.equal(3, m:freeze("^blocks%."))
    assert.are.same({ "scale", "first.weight", "first.bias" }, names(m:trainable()))
    assert.are.equal(2 + 6 + 2, m:num_parameters{ trainable_only = true })
    assert.are.equal(2 + 6 + 2 + 4 + 2 + 2, m:num_parameters())
    -- a list of patterns; a parameter matched by two counts once
    assert.are.equal(2, m:unfreeze{ "blocks%.1%.", "%.1%.bias$" })
    assert.are.same({ "scale", "first.weight", "first.bias", "blocks.1.weight", "blocks.1.bias" }, names(m:trainable()))
    assert.is_false(m:get("blocks.0.weight"):requires_grad())
    assert.error_matches(function() m:freeze{ "first", "^nothing%." } end, "pattern '%^nothing%%%.' matches no parameter")
    assert.error_matches(function() m:freeze("[") end, "malformed pattern")
    assert.error_matches(function() m:freeze{} end, "non%-empty list")
  end)

  it("switches dropout off in eval mode for the whole tree", function()
    local m = Toy.new()
    local x = dp.ones({ 4, 50 }, { dtype = "f64" })
    assert.is_true(m.drop.training)
    local y = m.drop(x):totable()
    local zeros = 0
    for _, row in ipairs(y) do for _, v in ipairs(row) do if v == 0 then zeros = zeros + 1 else assert.are.equal(2, v) end end end
    assert.is_true(zeros > 60 and zeros < 140)  -- Binomial(200, 0.5): mean 100, sd ~7
    m:eval()
    for _, e in ipairs(m:named_modules()) do assert.is_false(e.module.training) end
    assert.are.same(x:totable(), m.drop(x):totable())
    m:train()
    assert.is_true(m.blocks[1].training)
  end)

  it("summarises every parameter with shape, dtype, precision, status, count and bytes, and totals", function()
    local m = Toy.new()
    m:freeze("^first%.bias$")
    local s = m:summary()
    local lines = {}
    for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.same({ "name", "shape", "dtype", "precision", "status", "params", "bytes", "bytes+copies" },
                    (function() local h = {} for w in lines[1]:gmatch("%S+") do h[#h + 1] = w end return h end)())
    local bytes = 0
    for k, e in ipairs(m:named_parameters()) do
      local l = lines[k + 1]
      local name, shape, dt, prec, status, n, b, bc =
        l:match("^(%S+)%s+(%b())%s+(%S+)%s+(%S+)%s+(%S+)%s+(%d+)%s+(%d+)%s+(%d+)$")
      assert.are.equal(e.name, name)
      assert.are.equal("(" .. table.concat(e.tensor:size(), ", ") .. ")", shape)
      assert.are.equal("f32", dt)
      assert.are.equal("fp32", prec)   -- no policy: the stored dtype
      assert.are.equal(e.name == "first.bias" and "frozen" or "trainable", status)
      assert.are.equal(e.tensor:numel(), tonumber(n))
      assert.are.equal(4 * e.tensor:numel(), tonumber(b))
      assert.are.equal(tonumber(b), tonumber(bc))  -- no copies
      bytes = bytes + tonumber(b)
    end
    assert.are.equal(("total: 18 parameters (16 trainable, 2 frozen), %d bytes, %d with copies"):format(bytes, bytes),
                     lines[#expected + 2])
    -- One memory line per layer: the root's own "scale", "first", "blocks.0", "blocks.1" (by the
    -- first two name components), in order of first parameter.
    assert.are.equal("layer (root): 8 bytes (8 stored, 0 in copies)", lines[#expected + 3])
    assert.are.equal("layer first: 32 bytes (32 stored, 0 in copies)", lines[#expected + 4])
    assert.are.equal("layer blocks.0: 16 bytes (16 stored, 0 in copies)", lines[#expected + 5])
    assert.are.equal("layer blocks.1: 16 bytes (16 stored, 0 in copies)", lines[#expected + 6])
  end)

  it("calls forward through __call", function()
    local m = Toy.new()
    local x = dp.randn({ 2, 3 }, { seed = 3 })
    assert.are.same(m:forward(x):totable(), m(x):totable())
  end)
end)
