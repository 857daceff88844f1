-- dp.repl.inspect: grads(model) and persample(model), the REPL's views of a DP step's gradients:
-- per parameter the noisy gradient's norm (private), the clipped sum's norm, the noise's norm and
-- their ratio (raw statistics), and the distribution of per-example norms of the last micro-batch.
local data = require "dp.tensor_data"
local runs = require "dp.repl.runs"
local stats = require "dp.repl.stats"

local M = {}

-- L2 norm of a tensor in f64.
function M.norm(t)
  local buf, n = data.to_f64(t)
  local s = 0
  for i = 0, n - 1 do s = s + buf[i] * buf[i] end
  return math.sqrt(s)
end

local function fmt(v)
  if v == nil then return "-" end
  if type(v) == "string" then return v end
  return ("%.6g"):format(v)
end

-- A text table: rows of strings, numbers right-aligned from column `first_number`.
function M.table(header, rows, first_number)
  local widths = {}
  for _, r in ipairs { header, unpack(rows) } do
    for c, v in ipairs(r) do widths[c] = math.max(widths[c] or 0, #v) end
  end
  local lines = {}
  for _, r in ipairs { header, unpack(rows) } do
    local cells = {}
    for c, v in ipairs(r) do
      local pad = (" "):rep(widths[c] - #v)
      cells[c] = c >= first_number and pad .. v or v .. pad
    end
    lines[#lines + 1] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  return table.concat(lines, "\n")
end

local function shape_of(t) return "[" .. table.concat(t:size(), "x") .. "]" end

local Report = {}
Report.__index = Report
Report.__tostring = function(r) return r.text end

-- grads(model): rows { name, shape, dtype, grad_norm, sum_norm, noise_norm, snr }.
-- grad_norm is the norm of .grad (the noisy, clipped, averaged gradient) or, once a step has
-- cleared it, the norm the REPL's step() saw before the optimizer used it.
function M.grads(model, names, inspect)
  local run = runs.find(model, names)
  local params = runs.params_of(model, run)
  local described = {}
  if run then
    for _, row in ipairs(run.engine:describe()) do described[row.name] = row end
  end
  local out = setmetatable({ rows = {} }, Report)
  local text_rows, raw = {}, false
  for _, p in ipairs(params) do
    local t = p.tensor
    local g = t.grad
    local row = { name = p.name, shape = t:size(), dtype = t:dtype() }
    if g ~= nil then row.grad_norm = M.norm(g)
    elseif run and run._repl_grad_norms then row.grad_norm = run._repl_grad_norms[p.name] end
    local d = described[p.name]
    if d and d.sum_norm and d.sum_norm >= 0 then row.sum_norm, raw = d.sum_norm, true end
    if d and d.noise_norm and d.noise_norm >= 0 then row.noise_norm = d.noise_norm end
    if row.sum_norm and row.noise_norm and row.noise_norm > 0 then row.snr = row.sum_norm / row.noise_norm end
    out.rows[#out.rows + 1] = row
    text_rows[#text_rows + 1] = { p.name, shape_of(t), row.dtype, fmt(row.grad_norm), fmt(row.sum_norm),
                                  fmt(row.noise_norm), fmt(row.snr) }
  end
  if raw and inspect then inspect(run, "grads: clipped-sum norms") end
  out.text = M.table({ "name", "shape", "dtype", "grad", "clipped sum", "noise", "snr" }, text_rows, 4)
  if not run then out.text = out.text .. "\n(no dp.private run found: clipped-sum and noise norms need one)" end
  return out
end

-- persample(model): per layer (parameters grouped by module) and overall, the per-example
-- gradient norms of the last micro-batch: n, min, median, p90, max, fraction clipped; and a
-- histogram of the overall norms with the clipping threshold marked.
function M.persample(model, names, inspect)
  local run = runs.find(model, names)
  if not run then error("persample: no dp.private run found (pass the run or its model)", 0) end
  local eng = run.engine
  if not eng.batch then error("persample: the run has taken no step yet (try step(1))", 0) end
  if inspect then inspect(run, "persample: per-example gradient norms") end
  local params = runs.params_of(model, run)
  local group_of = {}
  for _, p in ipairs(run.params) do group_of[p.name] = p.group or 0 end
  -- Which examples were clipped, per clipping group.
  local clipped = {}
  local function clipped_in(group)
    if clipped[group] == nil then
      local ok, factors = pcall(eng.clip_factors, eng, group + 1)
      clipped[group] = ok and factors or false
    end
    return clipped[group]
  end
  local function fraction(factors)
    if not factors or #factors == 0 then return nil end
    local c = 0
    for _, f in ipairs(factors) do if f < 1 then c = c + 1 end end
    return c / #factors
  end
  local layers, order = {}, {}
  for _, p in ipairs(params) do
    local layer = p.name:match("^(.*)%.[^.]+$") or p.name
    if not layers[layer] then
      layers[layer] = { sq = {}, groups = {} }
      order[#order + 1] = layer
    end
    local norms = eng:sample_norms(p.name)
    local sq = layers[layer].sq
    for i, v in ipairs(norms) do sq[i] = (sq[i] or 0) + v * v end
    layers[layer].groups[group_of[p.name] or 0] = true
  end
  local out = setmetatable({ layers = {} }, Report)
  local rows = {}
  local function add(name, norms, frac)
    local s = stats.summary(norms)
    s.name, s.clipped = name, frac
    out.layers[#out.layers + 1] = s
    rows[#rows + 1] = { name, tostring(s.n), fmt(s.min), fmt(s.median), fmt(s.p90), fmt(s.max),
                        frac and ("%.3f"):format(frac) or "-" }
    return s
  end
  for _, layer in ipairs(order) do
    local norms = {}
    for i, v in ipairs(layers[layer].sq) do norms[i] = math.sqrt(v) end
    local frac
    if run.clipping == "per_layer" then
      local g = next(layers[layer].groups)
      frac = fraction(clipped_in(g))
    end
    add(layer, norms, frac)
  end
  -- Overall: an example counts as clipped when any of its groups' factors is below 1.
  local any, n_groups = {}, #(run.group_keys or { 1 })
  for g = 0, n_groups - 1 do
    local f = clipped_in(g)
    if f then
      for i, v in ipairs(f) do any[i] = (v < 1 or (any[i] or 1) < 1) and 0 or 1 end
    end
  end
  local overall_norms = eng:sample_norms(nil)
  out.overall = add("(all)", overall_norms, fraction(any))
  local hist = stats.histogram(overall_norms, { bins = 10, mark = run.clipping ~= "per_layer" and run.sensitivity or nil,
                                                mark_label = "clip" })
  out.text = ("per-example gradient norms, last micro-batch of %d\n"):format(eng.batch)
    .. M.table({ "layer", "n", "min", "median", "p90", "max", "clipped" }, rows, 2) .. "\n\n" .. hist
  return out
end

return M
