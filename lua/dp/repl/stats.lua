-- dp.repl.stats: summaries of a list of numbers for the REPL: percentiles (linear interpolation
-- between order statistics, as NumPy's default) and a histogram drawn with block characters.
local M = {}

-- The finite values sorted, and how many were NaN or infinite.
local function finite_sorted(values)
  local out, nonfinite = {}, 0
  for _, v in ipairs(values) do
    if v == v and v ~= math.huge and v ~= -math.huge then out[#out + 1] = v else nonfinite = nonfinite + 1 end
  end
  table.sort(out)
  return out, nonfinite
end

-- p in [0, 1] of sorted values: position (n - 1) p, interpolated.
function M.percentile(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local pos = (n - 1) * p + 1
  local lo = math.floor(pos)
  if lo >= n then return sorted[n] end
  return sorted[lo] + (pos - lo) * (sorted[lo + 1] - sorted[lo])
end

-- { n, min, median, p90, max, nonfinite } of values (an array of numbers).
function M.summary(values)
  local s, nonfinite = finite_sorted(values)
  return { n = #values, min = s[1], median = M.percentile(s, 0.5), p90 = M.percentile(s, 0.9),
           max = s[#s], nonfinite = nonfinite }
end

-- Counts of finite values in `bins` equal-width bins over [lo, hi] (the last bin is closed).
function M.bin(values, bins, lo, hi)
  local s = finite_sorted(values)
  lo, hi = lo or s[1], hi or s[#s]
  local counts = {}
  for b = 1, bins do counts[b] = 0 end
  if not lo then return counts, 0, 0 end
  local width = (hi - lo) / bins
  for _, v in ipairs(s) do
    local b = width > 0 and math.floor((v - lo) / width) + 1 or 1
    if b > bins then b = bins end
    if b >= 1 then counts[b] = counts[b] + 1 end
  end
  return counts, lo, hi
end

local function columns()
  local c = tonumber(os.getenv("COLUMNS") or "")
  return (c and c >= 30) and math.floor(c) or 80
end

-- The histogram as text lines: "[lo, hi) |████  count"; marks the bin holding `mark` (the clip
-- threshold) with "<- label". ASCII "#" bars when ascii is true.
function M.histogram(values, opts)
  opts = opts or {}
  local bins = opts.bins or 10
  local counts, lo, hi = M.bin(values, bins)
  if #values == 0 or lo == nil then return "(no values)" end
  local most = 1
  for _, c in ipairs(counts) do most = math.max(most, c) end
  local width = (hi - lo) / bins
  local labels, lw = {}, 0
  for b = 1, bins do
    local a, z = lo + (b - 1) * width, lo + b * width
    labels[b] = ("%9.4g - %-9.4g"):format(a, z)
    lw = math.max(lw, #labels[b])
  end
  local bar_room = math.max(columns() - lw - 22, 5)
  local block = opts.ascii and "#" or "\226\150\136"   -- U+2588 FULL BLOCK
  local lines = {}
  for b = 1, bins do
    local len = math.floor(counts[b] / most * bar_room + 0.5)
    if counts[b] > 0 and len == 0 then len = 1 end
    local line = ("%s |%s %d"):format(labels[b], block:rep(len), counts[b])
    local a, z = lo + (b - 1) * width, lo + b * width
    if opts.mark and opts.mark >= a and (opts.mark < z or (b == bins and opts.mark <= z)) then
      line = line .. "  <- " .. (opts.mark_label or "mark")
    end
    lines[b] = line
  end
  if opts.mark and (opts.mark > hi or opts.mark < lo) then
    lines[#lines + 1] = ("(%s = %.4g lies %s every value)"):format(opts.mark_label or "mark", opts.mark,
                                                                  opts.mark > hi and "above" or "below")
  end
  return table.concat(lines, "\n")
end

return M
