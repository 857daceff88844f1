-- dp.hf.checkpoint: loads a Hugging Face BertModel or BertForSequenceClassification checkpoint
-- (model.safetensors, or a sharded model.safetensors.index.json) into a model's named
-- parameters, and saves them back under the same names. Every header and shape is checked before
-- the first parameter is written, so a bad checkpoint leaves the model as it was.
local json = require "dp.util.json"
local st = require "dp.hf.safetensors"
local config = require "dp.hf.config"
local atomic = require "dp.util.atomic"

local M = {}

local function fail(fmt, ...) error(("checkpoint: " .. fmt):format(...), 0) end

-- The name both sides are matched by: BertModel checkpoints lack the "bert." prefix that
-- BertForSequenceClassification keys have, and old (TF-converted) ones call LayerNorm's
-- weight and bias gamma and beta.
function M.canonical(name)
  local n = name:gsub("^bert%.", "")
  n = n:gsub("LayerNorm%.gamma$", "LayerNorm.weight"):gsub("LayerNorm%.beta$", "LayerNorm.bias")
  return n
end

local exists = require("dp.util.fs").exists

local function read_json(path)
  local f, err = io.open(path, "rb")
  if not f then fail("cannot open %s: %s", path, tostring(err)) end
  local text = f:read("*a")
  f:close()
  local ok, value = pcall(json.decode, text)
  if not ok then fail("%s is not valid JSON: %s", path, tostring(value)) end
  return value
end

local function dir_of(path) return path:match("^(.*)/[^/]*$") or "." end

-- The checkpoint's files: a list of {path=, header=, names = {checkpoint names taken from it}}.
local function sources(where)
  local file, index
  if where:match("%.safetensors$") then file = where
  elseif where:match("%.json$") then index = where
  elseif exists(where .. "/model.safetensors") then file = where .. "/model.safetensors"
  elseif exists(where .. "/model.safetensors.index.json") then index = where .. "/model.safetensors.index.json"
  else
    fail("%s has neither model.safetensors nor model.safetensors.index.json (pytorch_model.bin is not read; " ..
         "convert it to safetensors)", where)
  end
  if file then
    local h = st.read_header(file)
    return { { path = file, header = h, names = h.names } }, file
  end
  local value = read_json(index)
  local map = type(value) == "table" and value.weight_map
  if not st.is_object(map) then fail("%s: weight_map must be an object {tensor: shard file}", index) end
  local by_file, list = {}, {}
  local names = {}
  for name in pairs(map) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local shard = map[name]
    if type(shard) ~= "string" or shard == "" or shard:find("/", 1, true) or shard:find("\\", 1, true) then
      fail("%s: weight_map[%q] must be a file name in the same directory, got %s", index, name, tostring(shard))
    end
    local s = by_file[shard]
    if not s then
      local path = dir_of(index) .. "/" .. shard
      s = { path = path, header = st.read_header(path), names = {} }
      by_file[shard] = s
      list[#list + 1] = s
    end
    if not s.header.entries[name] then
      fail("%s: the index puts tensor %q in %s, which has no such tensor", index, name, s.path)
    end
    s.names[#s.names + 1] = name
  end
  return list, index
end

-- A module (anything with :named_parameters()) or the array it returns.
local function param_list(named_params)
  if type(named_params) == "table" and type(named_params.named_parameters) == "function" then
    return named_params:named_parameters()
  end
  if type(named_params) ~= "table" then fail("named_params must be an array of {name=, tensor=}") end
  return named_params
end

local function shape_str(shape) return "[" .. table.concat(shape, ", ") .. "]" end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- Whether a parameter may be absent from the checkpoint (a fresh classification head).
local function may_miss(name, patterns)
  for _, p in ipairs(patterns) do if name:find(p) then return true end end
  return false
end

-- load_into(named_params, dir_or_file, {allow_missing = {lua patterns}, strict = false})
-- named_params: array of {name = HF key, tensor = parameter}, or a module (its
-- named_parameters()). Returns {loaded = n, missing = {names}, unexpected = {checkpoint
-- names}}. Missing parameters not matching allow_missing (default {"^classifier%."}: a fresh
-- head; add e.g. "lora_" for adapters) are an error, as are unexpected tensors when strict.
function M.load_into(named_params, where, opts)
  opts = opts or {}
  named_params = param_list(named_params)
  if type(where) ~= "string" then fail("expected a directory or file path, got %s", type(where)) end
  local list, origin = sources(where)
  -- canonical name -> {source, checkpoint name}; two spellings of one tensor is ambiguous.
  local available = {}
  for _, s in ipairs(list) do
    for _, name in ipairs(s.names) do
      local c = M.canonical(name)
      local prev = available[c]
      if prev then
        fail("%s: tensors %q (in %s) and %q (in %s) are both the model's %q", origin, prev.name,
             prev.source.path, name, s.path, c)
      end
      available[c] = { source = s, name = name }
    end
  end
  -- Plan every copy and check every shape before writing anything.
  local plan, missing, used = {}, {}, {}
  for i, p in ipairs(named_params) do
    if type(p) ~= "table" or type(p.name) ~= "string" or p.tensor == nil then
      fail("named_params[%d] must be {name = string, tensor = tensor}", i)
    end
    local c = M.canonical(p.name)
    local found = available[c]
    if found then
      if used[c] then fail("named_params has %q twice (as %q and %q)", c, used[c], p.name) end
      used[c] = p.name
      local entry = found.source.header.entries[found.name]
      local want = p.tensor:size()
      if not same_shape(entry.shape, want) then
        fail("tensor %q in %s has shape %s, but the model's %s has shape %s", found.name, found.source.path,
             shape_str(entry.shape), p.name, shape_str(want))
      end
      plan[#plan + 1] = { param = p, found = found }
    else
      missing[#missing + 1] = p.name
    end
  end
  local allow = opts.allow_missing or { "^classifier%." }
  local required = {}
  for _, name in ipairs(missing) do
    if not (may_miss(name, allow) or may_miss(M.canonical(name), allow)) then
      required[#required + 1] = name
    end
  end
  if #required > 0 then
    fail("%s lacks %d of the model's tensors: %s", origin, #required, table.concat(required, ", "))
  end
  local unexpected = {}
  for c, a in pairs(available) do if not used[c] then unexpected[#unexpected + 1] = a.name end end
  table.sort(unexpected)
  if opts.strict and #unexpected > 0 then
    fail("%s has tensors the model does not: %s", origin, table.concat(unexpected, ", "))
  end
  -- Copy, one open file per shard, each tensor converted to the parameter's dtype and device.
  for _, s in ipairs(list) do
    local f = io.open(s.path, "rb")
    if not f then fail("cannot open %s", s.path) end
    local ok, err = pcall(function()
      for _, item in ipairs(plan) do
        if item.found.source == s then
          local src = st.load_entry(s.path, f, s.header, item.found.name)
          item.param.tensor:copy(src)
        end
      end
    end)
    f:close()
    if not ok then error(err, 0) end
  end
  return { loaded = #plan, missing = missing, unexpected = unexpected }
end

-- save(named_params, dir, {config = cfg, dtype = "f32"}): writes dir/model.safetensors (with
-- metadata format = "pt", which transformers checks) and, given a config, dir/config.json; each
-- atomically. Tensors keep their dtype unless opts.dtype says otherwise.
function M.save(named_params, dir, opts)
  opts = opts or {}
  named_params = param_list(named_params)
  if opts.config then config.check(opts.config, dir .. "/config.json") end   -- fail before writing
  local tensors, order = {}, {}
  for i, p in ipairs(named_params) do
    if type(p) ~= "table" or type(p.name) ~= "string" or p.tensor == nil then
      fail("named_params[%d] must be {name = string, tensor = tensor}", i)
    end
    if tensors[p.name] then fail("named_params has %q twice", p.name) end
    local t = p.tensor
    if opts.dtype and t:dtype() ~= opts.dtype then t = t:cast(opts.dtype) end
    tensors[p.name] = t
    order[#order + 1] = p.name
  end
  atomic.ensure_dir(dir, "checkpoint: save")
  st.write(dir .. "/model.safetensors", tensors, { order = order, metadata = { format = "pt" } })
  if opts.config then config.write_bert_config(dir .. "/config.json", opts.config) end
end

return M
