-- bench/dp_step.lua: time and peak memory of one DP-SGD step (flat clipping, through dp.private)
-- against one non-private step, for a small BERT-style encoder (bench/bert_encoder.lua), printed
-- as JSON, with a one-line summary on stderr. Targets: DP step time <= 1.2x and DP peak memory
-- <= 1.3x the non-private step's.
-- Usage: dprun bench/dp_step.lua [reps=7] [warmup=2] [threads=N] [batch=32] [seq=128]
local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = script_dir .. "/?.lua;" .. package.path

local ffi = require "ffi"
local dp = require "dp"
local json = require "dp.util.json"
local bert = require "bert_encoder"
local timing = require "timing"
local now, median, min_of = timing.now, timing.median, timing.min_of

local C = dp.C

local cfg = { reps = 7, warmup = 2, threads = 0, batch = 32, seq = 128 }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^(%w+)=(.+)$")
  if not k or cfg[k] == nil or not tonumber(v) then
    error("unknown argument " .. a .. " (expected key=number: reps, warmup, threads, batch, seq)",
          0)
  end
  cfg[k] = tonumber(v)
end
cfg.warmup = math.max(2, cfg.warmup)   -- the non-private peak is read from the second step on
if cfg.threads > 0 then dp.set_num_threads(cfg.threads) end

local model_cfg = { vocab = 8192, hidden = 256, layers = 4, heads = 4, ffn = 1024, max_pos = 128,
                    types = 2, classes = 3, seed = 1, dropout = 0.1 }
local dp_cfg = { dataset_size = 50000, noise_multiplier = 1.0, max_grad_norm = 1.0,
                 clipping = "flat", delta = 1e-5, noise = "reproducible", seed = 1 }
local lr = 1e-4

-- One step, timed. A full collection first frees the previous step's graph, so that every step
-- starts from the same persistent memory (parameters, optimizer state, engine buffers); the peak
-- is reset there and read after the step.
local function run_step(step)
  dp.collectgarbage()
  local persistent = dp.memory("cpu")
  C.dp_mem_reset_peak(0)
  local t0 = now()
  step()
  local elapsed = now() - t0
  local _, peak = dp.memory("cpu")
  return elapsed * 1e3, peak, persistent
end

local function new_record() return { times_ms = {}, peak_bytes = 0, persistent_bytes = 0 } end

local function record(rec, ms, peak, persistent)
  rec.times_ms[#rec.times_ms + 1] = ms
  rec.peak_bytes = math.max(rec.peak_bytes, peak)
  rec.persistent_bytes = persistent
end

local function summarise(rec)
  rec.median_ms = median(rec.times_ms)
  rec.min_ms = min_of(rec.times_ms)
  rec.step_bytes = rec.peak_bytes - rec.persistent_bytes   -- what the step adds at its peak
  return rec
end

local function load_average()
  local f = io.open("/proc/loadavg", "r")
  if not f then return nil end
  local one = f:read("*n")
  f:close()
  return one
end

-- Plain numbers, strings and booleans of a stats table (whatever dp.private reports).
local function plain_fields(t)
  if type(t) ~= "table" then return nil end
  local out = json.object()
  for k, v in pairs(t) do
    local kind = type(v)
    if type(k) == "string" and (kind == "string" or kind == "boolean"
                                or (kind == "number" and v == v and math.abs(v) ~= math.huge)) then
      out[k] = v
    end
  end
  return out
end

local function git_commit()
  local pipe = io.popen(("git -C '%s' rev-parse --short HEAD 2>/dev/null"):format(script_dir))
  local rev = pipe and pipe:read("*l")
  if pipe then pipe:close() end
  pipe = io.popen(("git -C '%s' status --porcelain 2>/dev/null"):format(script_dir))
  local dirty = pipe and pipe:read("*a") or ""
  if pipe then pipe:close() end
  return rev or "unknown", dirty ~= ""
end

-- ---------------------------------------------------------------- model and data

local model = bert.new(model_cfg)
local params = model:parameters()
local batch = bert.synthetic_batch { B = cfg.batch, T = cfg.seq, vocab = model_cfg.vocab,
                                     classes = model_cfg.classes, seed = 2, pad_fraction = 0.25 }
local param_bytes = 0
for _, p in ipairs(params) do param_bytes = param_bytes + p:numel() * 4 end

local commit, dirty = git_commit()
local result = {
  bench = "dp_step",
  date = os.date("!%Y-%m-%dT%H:%M:%SZ"),
  commit = commit,
  dirty = dirty,
  dprun = dp.version(),
  threads = dp.get_num_threads(),
  config = {
    model = model_cfg, batch = cfg.batch, seq = cfg.seq, reps = cfg.reps, warmup = cfg.warmup,
    parameters = model:num_parameters(), parameter_tensors = #params, parameter_bytes = param_bytes,
    dp = dp_cfg, lr = lr,
  },
  targets = { time_ratio_max = 1.2, peak_ratio_max = 1.3 },
}

-- ---------------------------------------------------------------- steps

-- One optimizer serves both steps, so both start from the same persistent memory.
local opt = dp.optim.adam(params, { lr = lr })
result.config.optimizer = "adam"

-- The engine should be active only inside step_on; if dp.private leaves it on, switch it off
-- around the non-private step, or that step's backward would feed the engine instead of .grad.
local function non_private_step()
  local engine = C.dp_psg_active()
  local was_active = engine ~= nil   -- a NULL cdata is truthy: compare with nil
  if was_active then C.dp_psg_activate(nil) end
  local loss = model:per_sample_loss(batch):mean()
  loss:backward()
  opt:step()
  opt:zero_grad()
  if was_active then C.dp_psg_activate(engine) end
end

-- Warm-up of the non-private step alone, before any DP engine exists: its peak memory comes from
-- here (from the second step on, once the optimizer state exists), free of the engine's buffers.
local np_memory = new_record()
for k = 1, cfg.warmup do
  local ms, peak, persistent = run_step(non_private_step)
  if k > 1 then record(np_memory, ms, peak, persistent) end
end

-- dp.private is the documented entry; dp.privacy.private is where the module lives.
local private = dp.private or (dp.privacy and dp.privacy.private)
local priv, stats
if private ~= nil then
  priv = private {
    params = model:named_parameters(),
    optimizer = opt,
    loss = function(b) return model:per_sample_loss(b) end,
    sample_rate = cfg.batch / dp_cfg.dataset_size,
    noise_multiplier = dp_cfg.noise_multiplier,
    max_grad_norm = dp_cfg.max_grad_norm,
    clipping = dp_cfg.clipping,
    delta = dp_cfg.delta,
    noise = dp_cfg.noise,
    seed = dp_cfg.seed,
  }
end
local function dp_step()
  stats = priv:step_on(batch)
  opt:zero_grad()
end
if priv then
  for _ = 1, cfg.warmup do run_step(dp_step) end
end

-- Timed repetitions, interleaved (alternating which goes first) so that load from other
-- processes and clock drift hit both steps alike.
local np_rec, dp_rec = new_record(), new_record()
local load_before = load_average()
for rep = 1, cfg.reps do
  local order = { { np_rec, non_private_step }, { dp_rec, dp_step } }
  if rep % 2 == 0 then order[1], order[2] = order[2], order[1] end
  for _, entry in ipairs(order) do
    if entry[2] ~= dp_step or priv then record(entry[1], run_step(entry[2])) end
  end
end
result.load_average = { before = load_before, after = load_average() }

summarise(np_rec)
result.non_private = {
  median_ms = np_rec.median_ms, min_ms = np_rec.min_ms, times_ms = np_rec.times_ms,
  -- Measured without a DP engine (warm-up); the interleaved steps' peak, which counts the
  -- engine's persistent buffers too, is kept beside it.
  peak_bytes = np_memory.peak_bytes, persistent_bytes = np_memory.persistent_bytes,
  step_bytes = np_memory.peak_bytes - np_memory.persistent_bytes,
  peak_bytes_interleaved = np_rec.peak_bytes,
}

if not priv then
  result.dp_private = "missing"
else
  result.dp_private = "present"
  result.dp = summarise(dp_rec)
  result.dp.last_stats = plain_fields(stats)
  result.time_ratio = result.dp.median_ms / result.non_private.median_ms
  result.time_ratio_min = result.dp.min_ms / result.non_private.min_ms
  result.peak_ratio = result.dp.peak_bytes / result.non_private.peak_bytes
  result.targets.time_ok = result.time_ratio <= result.targets.time_ratio_max
  result.targets.peak_ok = result.peak_ratio <= result.targets.peak_ratio_max
end

print(json.encode(result, { indent = "  " }))

local np, mb = result.non_private, 1024 * 1024
if result.dp then
  io.stderr:write(("dp_step: non-private %.0f ms, DP %.0f ms (x%.2f, target <= 1.2); peak %.0f MiB"
                   .. " vs %.0f MiB (x%.2f, target <= 1.3); %d threads\n")
                  :format(np.median_ms, result.dp.median_ms, result.time_ratio, np.peak_bytes / mb,
                          result.dp.peak_bytes / mb, result.peak_ratio, result.threads))
else
  io.stderr:write(("dp_step: non-private %.0f ms, peak %.0f MiB; DP step skipped (dp.private "
                   .. "missing); %d threads\n")
                  :format(np.median_ms, np.peak_bytes / mb, result.threads))
end
