-- dp.train.checkpoint: save and resume a DP-SGD training run: every parameter (adapters
-- included), the optimizer's state, the generators (noise, sampler, dropout), the position in
-- the data order, the privacy ledger and the run's configuration.
--
-- Layout: <dir>/manifest.json names the current save, a subdirectory <dir>/save-<serial>/ with
-- model.safetensors, optimizer.safetensors, optimizer.json, ledger.json and state.json. Each file
-- is written atomically (dp.util.atomic: temp, fsync, rename) into a NEW subdirectory, and the
-- manifest is replaced last, so a crash or error at any point of a save leaves the previous
-- checkpoint whole and current; the previous subdirectory is removed only after the switch.
local json = require "dp.util.json"
local st = require "dp.hf.safetensors"
local atomic = require "dp.util.atomic"
local hf_checkpoint = require "dp.hf.checkpoint"

local M = {}
M.VERSION = 1

local FILES = { "model.safetensors", "optimizer.safetensors", "optimizer.json", "ledger.json", "state.json" }

local function fail(fmt, ...) error(("checkpoint: " .. fmt):format(...), 0) end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then fail("cannot open %s: %s", path, tostring(err)) end
  local text = f:read("*a")
  f:close()
  return text
end

local function read_json(path)
  local ok, v = pcall(json.decode, read_file(path))
  if not ok then fail("%s is not valid JSON: %s", path, tostring(v)) end
  return v
end

local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- Generator states as JSON-safe numbers (counters beyond 2^53 cannot round-trip a double).
local function rng_state(r, name)
  local seed, counter = r:state()
  if type(seed) ~= "number" or type(counter) ~= "number" then
    fail("generator '%s' has a seed or counter beyond 2^53, which this format cannot store", name)
  end
  return { seed = seed, counter = counter }
end

-- The optimizer's state_dict split into tensors ("<param>::<key>") and the JSON rest.
local function split_optimizer(sd)
  -- rounding: the stochastic-rounding seed, counter and per-parameter modes, so that a resumed run
  -- with bf16 weights draws the same rounding bits as an uninterrupted one.
  local tensors, order, meta = {}, {}, { kind = sd.kind, step = sd.step, hyper = sd.hyper, state = json.object({}),
                                         rounding = sd.rounding }
  local names = {}
  for name in pairs(sd.state) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local entry = json.object({})
    local keys = {}
    for key in pairs(sd.state[name]) do keys[#keys + 1] = key end
    table.sort(keys)
    for _, key in ipairs(keys) do
      local v = sd.state[name][key]
      if type(v) == "number" then entry[key] = v
      else
        local tname = name .. "::" .. key
        tensors[tname], order[#order + 1] = v, tname
        entry[key] = { tensor = tname }
      end
    end
    meta.state[name] = entry
  end
  return tensors, order, meta
end

local function current_manifest(dir)
  local path = dir .. "/manifest.json"
  if not size_of(path) then return nil end
  return read_json(path)
end

-- save(dir, run): run = { params = model or {name=, tensor=} list, optimizer =, private = (the
-- dp.private object: its generators and ledger), rngs = { name = dp.rng } (dropout, ...),
-- position = { epoch =, step = }, config = table, extra = table }. Returns the save's directory.
function M.save(dir, run)
  local params = run.params
  if type(params) == "table" and params.named_parameters then params = params:named_parameters() end
  require("dp.train.nli").mkdirs(dir, "checkpoint: save")
  local old = current_manifest(dir)
  local serial = (old and old.serial or 0) + 1
  local name = ("save-%06d"):format(serial)
  local sub = dir .. "/" .. name
  local written = {}
  local ok, err = pcall(function()
    atomic.ensure_dir(sub, "checkpoint: save")
    local model, order = {}, {}
    for _, p in ipairs(params) do model[p.name], order[#order + 1] = p.tensor, p.name end
    st.write(sub .. "/model.safetensors", model, { order = order, metadata = { format = "pt" } })
    written[#written + 1] = "model.safetensors"
    local tensors, torder, meta = split_optimizer(run.optimizer:state_dict())
    st.write(sub .. "/optimizer.safetensors", tensors, { order = torder })
    written[#written + 1] = "optimizer.safetensors"
    atomic.write_string(sub .. "/optimizer.json", json.encode(meta, { indent = " " }), "checkpoint: save")
    written[#written + 1] = "optimizer.json"
    atomic.write_string(sub .. "/ledger.json", run.private.ledger:to_json(), "checkpoint: save")
    written[#written + 1] = "ledger.json"
    local rngs = json.object({})
    for k, r in pairs(run.rngs or {}) do rngs[k] = rng_state(r, k) end
    local state = { position = run.position or {}, generators = run.private:generator_state(), rngs = rngs,
                    config = run.config or json.object({}), extra = run.extra or json.object({}) }
    atomic.write_string(sub .. "/state.json", json.encode(state, { indent = " " }), "checkpoint: save")
    written[#written + 1] = "state.json"
    if M._fail_before_manifest then error("checkpoint: save: simulated failure before the manifest", 0) end
    local sizes = json.object({})
    for _, f in ipairs(FILES) do sizes[f] = size_of(sub .. "/" .. f) end
    local position = run.position or {}
    atomic.write_string(dir .. "/manifest.json", json.encode({ version = M.VERSION, serial = serial, current = name,
      files = sizes, epoch = position.epoch, step = position.step }, { indent = " " }), "checkpoint: save")
  end)
  if not ok then
    for _, f in ipairs(written) do os.remove(sub .. "/" .. f) end
    os.remove(sub)
    error(err, 0)
  end
  if old and old.current and old.current ~= name then
    for _, f in ipairs(FILES) do os.remove(dir .. "/" .. old.current .. "/" .. f) end
    os.remove(dir .. "/" .. old.current)
  end
  return sub
end

-- module_rngs(model) -> { "module name" = dp.rng } for every module holding a generator (dropout
-- layers), so that their positions are saved and restored; shared generators appear under each
-- name, which is harmless (the same state is restored several times).
function M.module_rngs(model)
  local is_rng = require("dp.rng").is_rng
  local out = {}
  for _, e in ipairs(model:named_modules()) do
    for key, v in pairs(e.module) do
      local at = (e.name ~= "" and e.name .. ":" or "") .. key
      if is_rng(v) then out[at] = v
      elseif type(v) == "table" and key ~= "_modules" and is_rng(rawget(v, "rng")) then out[at .. ".rng"] = v.rng end
    end
  end
  return out
end

-- find(path) -> the checkpoint directory: path itself when it holds manifest.json, else
-- path/checkpoint (an --out directory). nil when neither does.
function M.find(path)
  if size_of(path .. "/manifest.json") then return path end
  if size_of(path .. "/checkpoint/manifest.json") then return path .. "/checkpoint" end
  return nil
end

-- load(dir) -> { dir, manifest, position, generators, rngs, config, extra, ledger_json,
-- optimizer_state (a state_dict table), model_path }. Checks the manifest's file sizes.
function M.load(dir)
  local manifest = current_manifest(dir)
  if not manifest then fail("%s has no manifest.json (not a checkpoint directory)", dir) end
  if manifest.version ~= M.VERSION or type(manifest.current) ~= "string" then
    fail("%s/manifest.json: expected version %d and a current save, got version %s", dir, M.VERSION,
         tostring(manifest.version))
  end
  local sub = dir .. "/" .. manifest.current
  for _, f in ipairs(FILES) do
    local want, got = manifest.files and manifest.files[f], size_of(sub .. "/" .. f)
    if got == nil then fail("%s/%s is missing", sub, f) end
    if want ~= got then fail("%s/%s has %d bytes, the manifest says %s", sub, f, got, tostring(want)) end
  end
  local meta = read_json(sub .. "/optimizer.json")
  local tensors = st.read(sub .. "/optimizer.safetensors").tensors
  local state = {}
  for name, entry in pairs(meta.state or {}) do
    local s = {}
    for key, v in pairs(entry) do
      if type(v) == "table" then
        s[key] = tensors[v.tensor] or fail("%s/optimizer.safetensors lacks tensor %q", sub, tostring(v.tensor))
      else s[key] = v end
    end
    state[name] = s
  end
  local run = read_json(sub .. "/state.json")
  return { dir = sub, manifest = manifest, position = run.position, generators = run.generators, rngs = run.rngs,
           config = run.config, extra = run.extra, ledger_json = read_file(sub .. "/ledger.json"),
           optimizer_state = { kind = meta.kind, step = meta.step, hyper = meta.hyper, state = state,
                               rounding = meta.rounding },
           model_path = sub .. "/model.safetensors" }
end

-- restore(ck, run): load a checkpoint's parameters into run.params (every one must be there,
-- shapes equal), the optimizer state into run.optimizer, and the generator states into run.rngs.
-- The ledger and dp.private's generators go to dp.private's options (ledger =, generator_state =).
function M.restore(ck, run)
  hf_checkpoint.load_into(run.params, ck.model_path, { allow_missing = {}, strict = true })
  run.optimizer:load_state_dict(ck.optimizer_state)
  for k, r in pairs(run.rngs or {}) do
    local s = ck.rngs and ck.rngs[k]
    if not s then fail("%s/state.json has no state for generator '%s'", ck.dir, k) end
    r:set_state(s.seed, s.counter)
  end
end

return M
