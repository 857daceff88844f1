-- Specs for dp.train.plot: the SVG is well-formed XML (checked by a small independent parser
-- below) with one group per series whose polyline has one point per finite input point, and
-- dp.train.metrics' series from a metrics log.
local plot = require "dp.train.plot"
local metrics = require "dp.train.metrics"

-- A minimal XML well-formedness check: balanced, properly nested tags, quoted attributes, no
-- stray '<' or '&'. Returns the list of elements {name, attrs} or raises.
local function parse_xml(s)
  local stack, elements, pos = {}, {}, 1
  s = s:gsub("^<%?xml[^>]*%?>%s*", "")
  while pos <= #s do
    local lt = s:find("<", pos, true)
    local text = s:sub(pos, (lt or #s + 1) - 1)
    for amp in text:gmatch("&[^;]*;?") do
      assert(amp:match("^&[%a#%d]+;$"), "bad entity " .. amp)
    end
    if not lt then break end
    local gt = s:find(">", lt, true)
    assert(gt, "unterminated tag at " .. lt)
    local tag = s:sub(lt + 1, gt - 1)
    if tag:sub(1, 1) == "/" then
      local name = tag:sub(2)
      assert(stack[#stack] == name, ("closing %s but %s is open"):format(name, tostring(stack[#stack])))
      stack[#stack] = nil
    else
      local self_closing = tag:sub(-1) == "/"
      if self_closing then tag = tag:sub(1, -2) end
      local name, rest = tag:match("^([%a_][%w_:%-]*)(.*)$")
      assert(name, "bad tag <" .. tag .. ">")
      local attrs = {}
      rest = rest:gsub('%s+([%a_][%w_:%-]*)="([^"<]*)"', function(k, v) attrs[k] = v return "" end)
      assert(rest:match("^%s*$"), "bad attributes in <" .. tag .. ">")
      elements[#elements + 1] = { name = name, attrs = attrs, depth = #stack }
      if not self_closing then stack[#stack + 1] = name end
    end
    pos = gt + 1
  end
  assert(#stack == 0, "unclosed " .. tostring(stack[#stack]))
  return elements
end

describe("dp.train.plot", function()
  it("the checker itself rejects broken XML", function()
    assert.has_error(function() parse_xml("<a><b></a></b>") end)
    assert.has_error(function() parse_xml("<a x=1></a>") end)
    assert.has_error(function() parse_xml("<a>1 < 2</a>") end)
    assert.has_error(function() parse_xml("<a>&</a>") end)
  end)

  it("writes well-formed SVG with one group and polyline per series", function()
    local series = {
      { name = "loss", points = { { 1, 1.1 }, { 2, 0.9 }, { 3, 0 / 0 }, { 4, 0.5 } } },
      { name = "dev accuracy", points = { { 2, 0.5 }, { 4, 0.75 } }, markers = true },
      { name = "epsilon <&>", points = { { 1, 1 }, { 2, 2 }, { 3, 3 }, { 4, 4 } } },
    }
    local path = os.tmpname()
    plot.write(path, series, { title = "t & \"q\"" })
    local f = assert(io.open(path, "rb"))
    local text = f:read("*a")
    f:close()
    os.remove(path)
    assert.truthy(text:match("^<%?xml"))
    local els = parse_xml(text)
    assert.equal("svg", els[1].name)
    local groups, polylines, circles = {}, {}, 0
    for _, e in ipairs(els) do
      if e.name == "g" then groups[#groups + 1] = e.attrs.id end
      if e.name == "polyline" then
        local n = 0
        for x, y in e.attrs.points:gmatch("([%d.%-]+),([%d.%-]+)") do
          assert.truthy(tonumber(x) and tonumber(y))
          n = n + 1
        end
        polylines[#polylines + 1] = n
      end
      if e.name == "circle" then circles = circles + 1 end
    end
    assert.same({ "loss", "dev_accuracy", "epsilon_&lt;&amp;&gt;" }, groups)
    assert.same({ 3, 2, 4 }, polylines)   -- the NaN loss point is dropped
    assert.equal(2, circles)
    assert.truthy(text:find("epsilon &lt;&amp;&gt;", 1, true))
  end)

  it("places larger values higher (smaller y)", function()
    local els = parse_xml(plot.svg({ { name = "up", points = { { 0, 0 }, { 10, 1 } } } }))
    for _, e in ipairs(els) do
      if e.name == "polyline" then
        local ys = {}
        for _, y in e.attrs.points:gmatch("([%d.%-]+),([%d.%-]+)") do ys[#ys + 1] = tonumber(y) end
        assert.is_true(ys[2] < ys[1])
      end
    end
  end)

  it("metrics.series picks loss and epsilon per step and dev accuracy per evaluation", function()
    local s = metrics.series({
      { step = 1, loss = 1.0, epsilon = 0.5 }, { step = 2, loss = 0.8, epsilon = 0.9 },
      { step = 2, epoch = 1, dev_accuracy = 0.6, epsilon = 0.9 }, { step = 3, epsilon = 1.2 },
    })
    assert.same({ "loss", "dev accuracy", "epsilon" }, { s[1].name, s[2].name, s[3].name })
    assert.same({ { 1, 1.0 }, { 2, 0.8 } }, s[1].points)
    assert.same({ { 2, 0.6 } }, s[2].points)
    assert.same({ { 1, 0.5 }, { 2, 0.9 }, { 3, 1.2 } }, s[3].points)
  end)
end)
