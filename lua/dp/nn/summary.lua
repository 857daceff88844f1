-- dp.nn.summary: Module:summary(), a text table of a model's parameters (name, shape, dtype,
-- precision stored>compute, trainable/frozen, count, bytes, bytes with low-precision copies),
-- totals, memory per layer, and the process's memory by category.
local dtype = require "dp.dtype"
local weights = require "dp.precision.weights"

local rule_names = { f32 = "fp32", f64 = "fp64", bf16 = "bf16", f16 = "f16" }

local function shape_string(t) return "(" .. table.concat(t:size(), ", ") .. ")" end

-- "fp32>bf16" stored > compute under a policy; the stored dtype alone otherwise.
local function precision_of(t, st)
  local stored = rule_names[t:dtype()] or t:dtype()
  if not st then return stored end
  local compute = st.rule.compute
  return stored == compute and stored or stored .. ">" .. compute
end

-- Memory lines group parameters by layer: up to "layer.<i>" when the name has one, else the
-- module's first two name components ("bert.embeddings", "classifier").
local function layer_of(module_name)
  local l = module_name:match("^(.-layer%.%d+)")
  if l then return l end
  local a, b = module_name:match("^([^.]+)%.([^.]+)")
  if a then return a .. "." .. b end
  return module_name == "" and "(root)" or module_name
end

local function memory_footer()
  local ok, report = pcall(require, "dp.memory")
  if not ok or type(report) ~= "table" or type(report.format) ~= "function" then return nil end
  return "memory: " .. report.format("cpu")
end

return function(model)
  local ok, apply = pcall(require, "dp.precision.apply")
  if ok then apply.sync(model) end
  local header = { "name", "shape", "dtype", "precision", "status", "params", "bytes", "bytes+copies" }
  local widths, rows = {}, {}
  for c, v in ipairs(header) do widths[c] = #v end
  local total, trainable, bytes, with_copies = 0, 0, 0, 0
  local layers, order = {}, {}
  for _, e in ipairs(model:named_parameters()) do
    local t, st = e.tensor, e.module._precision
    local n = t:numel()
    local b = n * tonumber(dtype.size(t.ptr.dtype))
    local local_name = e.name:match("([^.]+)$")
    local copy = st and st.copies[local_name]
    local cb = b + (copy and weights.bytes(copy) or 0)
    total, bytes, with_copies = total + n, bytes + b, with_copies + cb
    if t:requires_grad() then trainable = trainable + n end
    rows[#rows + 1] = { e.name, shape_string(t), t:dtype(), precision_of(t, st),
                        t:requires_grad() and "trainable" or "frozen", tostring(n), tostring(b), tostring(cb) }
    local key = layer_of(e.name:match("^(.*)%.[^.]+$") or "")
    if not layers[key] then layers[key] = { stored = 0, copies = 0 }; order[#order + 1] = key end
    layers[key].stored, layers[key].copies = layers[key].stored + b, layers[key].copies + cb - b
  end
  for _, r in ipairs { header, unpack(rows) } do
    for c, v in ipairs(r) do widths[c] = math.max(widths[c], #v) end
  end
  local function line(r)
    local cells = {}
    for c, v in ipairs(r) do
      cells[c] = c >= 6 and (" "):rep(widths[c] - #v) .. v or v .. (" "):rep(widths[c] - #v)
    end
    return (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  local out = { line(header) }
  for _, r in ipairs(rows) do out[#out + 1] = line(r) end
  out[#out + 1] = ("total: %d parameters (%d trainable, %d frozen), %d bytes, %d with copies")
                  :format(total, trainable, total - trainable, bytes, with_copies)
  for _, key in ipairs(order) do
    local l = layers[key]
    out[#out + 1] = ("layer %s: %d bytes (%d stored, %d in copies)"):format(key, l.stored + l.copies,
                                                                           l.stored, l.copies)
  end
  out[#out + 1] = memory_footer()
  return table.concat(out, "\n")
end
