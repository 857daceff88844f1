-- dp.train.plot: a dependency-free SVG of training curves, one panel per series stacked over a
-- shared x axis (steps): loss, dev accuracy and epsilon for the recipes. Written atomically.
--
--   plot.write("out/plot.svg", { { name = "loss", points = { {1, 1.1}, {2, 1.0} } },
--                                { name = "dev accuracy", points = {...}, markers = true } })
local atomic = require "dp.util.atomic"

local M = {}

local W, PANEL_H, LEFT, RIGHT, TOP, GAP = 640, 160, 70, 20, 30, 50
local colours = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e" }

local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"):gsub('"', "&quot;"))
end

local function num(v) return ("%.2f"):format(v) end

local function label(v)
  if v == 0 then return "0" end
  local a = math.abs(v)
  if a >= 1000 or a < 0.01 then return ("%.2e"):format(v) end
  return ("%.3g"):format(v)
end

-- Finite points only, as a new array.
local function clean(points)
  local out = {}
  for _, p in ipairs(points or {}) do
    local x, y = p[1], p[2]
    if type(x) == "number" and type(y) == "number" and x == x and y == y and math.abs(x) < math.huge
       and math.abs(y) < math.huge then out[#out + 1] = { x, y } end
  end
  return out
end

local function range(values, lo, hi)
  for _, v in ipairs(values) do lo, hi = math.min(lo, v), math.max(hi, v) end
  if lo == math.huge then lo, hi = 0, 1 end
  if hi - lo < 1e-12 then lo, hi = lo - 0.5, hi + 0.5 end
  return lo, hi
end

-- svg(series, {title =, xlabel = "step"}) -> the document as a string.
function M.svg(series, opts)
  opts = opts or {}
  if type(series) ~= "table" or #series == 0 then error("plot.svg: series must be a non-empty array", 2) end
  local xs = {}
  local cleaned = {}
  for i, s in ipairs(series) do
    if type(s) ~= "table" or type(s.name) ~= "string" then
      error(("plot.svg: series[%d] needs a name and points"):format(i), 2)
    end
    cleaned[i] = clean(s.points)
    for _, p in ipairs(cleaned[i]) do xs[#xs + 1] = p[1] end
  end
  local x0, x1 = range(xs, math.huge, -math.huge)
  local plot_w = W - LEFT - RIGHT
  local H = TOP + #series * (PANEL_H + GAP)
  local out = {
    '<?xml version="1.0" encoding="UTF-8"?>',
    ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
     .. 'font-family="sans-serif" font-size="11">'):format(W, H, W, H),
    ('<rect width="%d" height="%d" fill="white"/>'):format(W, H),
    ('<text x="%d" y="18" font-size="14">%s</text>'):format(LEFT, esc(opts.title or "training")),
  }
  local function sx(x) return LEFT + (x - x0) / (x1 - x0) * plot_w end
  for i, s in ipairs(series) do
    local pts, top = cleaned[i], TOP + (i - 1) * (PANEL_H + GAP)
    local ys = {}
    for k, p in ipairs(pts) do ys[k] = p[2] end
    local y0, y1 = range(ys, s.min or math.huge, s.max or -math.huge)
    local function sy(y) return top + PANEL_H - (y - y0) / (y1 - y0) * PANEL_H end
    local colour = s.colour or colours[(i - 1) % #colours + 1]
    out[#out + 1] = ('<g class="series" id="%s">'):format(esc(s.name:gsub("%s+", "_")))
    out[#out + 1] = ('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>'):format(
      LEFT, top, plot_w, PANEL_H)
    out[#out + 1] = ('<text x="%d" y="%d" font-size="12">%s</text>'):format(LEFT, top - 6, esc(s.name))
    for _, v in ipairs { y0, (y0 + y1) / 2, y1 } do
      out[#out + 1] = ('<text x="%d" y="%s" text-anchor="end">%s</text>'):format(LEFT - 4, num(sy(v) + 4), esc(label(v)))
    end
    for _, v in ipairs { x0, x1 } do
      out[#out + 1] = ('<text x="%s" y="%d" text-anchor="middle">%s</text>'):format(num(sx(v)), top + PANEL_H + 14,
        esc(label(v)))
    end
    if #pts > 0 then
      local coords = {}
      for k, p in ipairs(pts) do coords[k] = num(sx(p[1])) .. "," .. num(sy(p[2])) end
      out[#out + 1] = ('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>'):format(colour,
        table.concat(coords, " "))
      if s.markers then
        for _, p in ipairs(pts) do
          out[#out + 1] = ('<circle cx="%s" cy="%s" r="3" fill="%s"/>'):format(num(sx(p[1])), num(sy(p[2])), colour)
        end
      end
    else
      out[#out + 1] = ('<text x="%s" y="%d" fill="#999">no data</text>'):format(num(LEFT + plot_w / 2), top + PANEL_H / 2)
    end
    out[#out + 1] = "</g>"
  end
  out[#out + 1] = ('<text x="%s" y="%d" text-anchor="middle">%s</text>'):format(num(LEFT + plot_w / 2), H - 8,
    esc(opts.xlabel or "step"))
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n") .. "\n"
end

-- write(path, series, opts): the SVG, atomically.
function M.write(path, series, opts)
  atomic.write_string(path, M.svg(series, opts), "plot.write")
end

return M
