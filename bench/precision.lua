-- bench/precision.lua: step time and peak memory (total and by category) of the DP-SGD benchmark's
-- BERT-style encoder (bench/bert_encoder.lua: hidden 256, 4 layers, 4 heads, FFN 1024, seq 128,
-- batch 32) under each precision preset, non-private and DP (through dp.private), plus a GEMM
-- micro-benchmark at the encoder's shapes (f32 against bf16 through dp.linear). Prints JSON with
-- the ratios against the issue's targets (bf16 GEMM >= 4x f32, bf16 DP step >= 2x faster than
-- fp32 DP, bf16 DP peak <= 0.6x fp32, mixed-bf16 <= 0.9x) and writes it to
-- bench/results/precision_<device>_<date>.json (save=0: print only).
-- Usage: dprun bench/precision.lua [reps=3] [gemm_reps=5] [threads=N] [batch=32] [seq=128]
--        [presets=fp32,bf16,mixed-bf16,fp8] [save=1] [device=NAME]
local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = script_dir .. "/?.lua;" .. package.path

local ffi = require "ffi"
local dp = require "dp"
local json = require "dp.util.json"
local bert = require "bert_encoder"
local timing = require "timing"
local now, median = timing.now, timing.median
local report = require "dp.privacy.step_report"

local C = dp.C

local cfg = { reps = 3, gemm_reps = 5, threads = 0, batch = 32, seq = 128, save = 1,
              presets = "fp32,bf16,mixed-bf16,fp8", device = false }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^([%w_]+)=(.+)$")
  if not k or cfg[k] == nil then
    error("unknown argument " .. a .. " (expected key=value: reps, gemm_reps, threads, batch, seq, presets, save, device)", 0)
  end
  cfg[k] = (k == "presets" or k == "device") and v or tonumber(v) or error("argument " .. a .. " needs a number", 0)
end
if cfg.threads > 0 then dp.set_num_threads(cfg.threads) end

local model_cfg = { vocab = 8192, hidden = 256, layers = 4, heads = 4, ffn = 1024, max_pos = 128, types = 2,
                    classes = 3, seed = 1, dropout = 0.1 }
local dp_cfg = { dataset_size = 50000, noise_multiplier = 1.0, max_grad_norm = 1.0, delta = 1e-5, seed = 1 }

local function shell(cmd)
  local p = io.popen(cmd)
  local out = p and p:read("*a") or ""
  if p then p:close() end
  return (out:gsub("%s+$", ""))
end

local function device_name()
  local cpu = shell("grep -m1 'model name' /proc/cpuinfo 2>/dev/null")
  local kind = cpu:find("EPYC") and "epyc" or cpu:find("Xeon") and "xeon" or "cpu"
  return ("cpu-%s-%dcore"):format(kind, dp.get_num_threads()), cpu:gsub("^model name%s*:%s*", "")
end

local function engine_of(name) return ffi.string(C.dp_matmul_engine(require("dp.dtype").parse(name))) end

-- ---------------------------------------------------------------- GEMM micro-benchmark

-- y = x W^T at the encoder's shapes (tokens = batch x seq): QKV/output (256 -> 256), FFN up
-- (256 -> 1024) and down (1024 -> 256), forward only, inputs already in the dtype.
local function gemm_bench()
  local tokens = cfg.batch * cfg.seq
  local out = {}
  for _, shape in ipairs{ { "attention 256x256", 256, 256 }, { "ffn up 256x1024", 256, 1024 },
                          { "ffn down 1024x256", 1024, 256 } } do
    local row = { shape = shape[1], m = tokens, k = shape[2], n = shape[3] }
    for _, dt in ipairs{ "f32", "bf16" } do
      local x = dp.randn({ tokens, shape[2] }, { seed = 1, dtype = "f32" }):cast(dt)
      local w = dp.randn({ shape[3], shape[2] }, { seed = 2, dtype = "f32", std = 0.02 }):cast(dt)
      local times = {}
      dp.no_grad(function()
        dp.linear(x, w)   -- warm-up (pooled buffers, BLAS threads)
        for r = 1, cfg.gemm_reps do
          local t0 = now()
          local y = dp.linear(x, w)
          times[r] = (now() - t0) * 1e3
          y:release()
        end
      end)
      row[dt .. "_ms"] = median(times)
      row[dt .. "_gflops"] = 2 * tokens * shape[2] * shape[3] / (row[dt .. "_ms"] * 1e6)
      row[dt .. "_engine"] = engine_of(dt)
    end
    row.bf16_speedup = row.f32_ms / row.bf16_ms
    out[#out + 1] = row
  end
  return out
end

-- ---------------------------------------------------------------- steps under a preset

local function categories()
  local snap = report.snapshot(nil)
  if not snap then return nil end
  local out = json.object()
  for name, c in pairs(snap) do if name ~= "total_peak" then out[name] = c.at_peak end end
  return out
end

-- One step, timed, from a collected heap with the peak reset; returns ms, peak, categories at peak.
local function run_step(step)
  dp.collectgarbage()
  C.dp_mem_reset_peak(0)
  local t0 = now()
  step()
  local ms = (now() - t0) * 1e3
  local _, peak = dp.memory("cpu")
  return ms, peak, categories()
end

local function preset_bench(name, batch)
  local model = bert.new(model_cfg)
  require("dp.precision").apply(model, name)
  local params = model:parameters()
  local opt = dp.optim.adam(params, { lr = 1e-4 })
  local function non_private()
    local loss = dp.memory_report.with_category("activations", function() return model:per_sample_loss(batch):mean() end)
    dp.memory_report.with_category("activations", loss.backward, loss)
    -- The optimizers take f32 gradients; a bf16 parameter's plain backward leaves a bf16 one.
    for _, p in ipairs(params) do
      local g = p:get_grad()
      if g and g:dtype() ~= "f32" then p:set_grad(g:cast("f32")) end
    end
    opt:step()
    opt:zero_grad()
  end
  local res = { non_private = { times_ms = {} }, dp = { times_ms = {} } }
  -- The non-private peak is taken before the DP engine exists (from the second step: optimizer
  -- state allocated), as in bench/dp_step.lua.
  for k = 1, 2 do
    local _, peak, cats = run_step(non_private)
    if k == 2 then res.non_private.peak_bytes, res.non_private.memory = peak, cats end
  end
  local stats
  local priv = dp.private{ params = model, optimizer = opt, loss = function(b) return model:per_sample_loss(b) end,
                           sample_rate = cfg.batch / dp_cfg.dataset_size, noise_multiplier = dp_cfg.noise_multiplier,
                           max_grad_norm = dp_cfg.max_grad_norm, delta = dp_cfg.delta, seed = dp_cfg.seed }
  local function dp_step() stats = priv:step_on(batch) end
  local _, peak, cats = run_step(dp_step)
  res.dp.peak_bytes, res.dp.memory = peak, cats
  for rep = 1, cfg.reps do   -- interleaved, so that load and drift hit both alike
    local order = rep % 2 == 1 and { "non_private", "dp" } or { "dp", "non_private" }
    for _, which in ipairs(order) do
      local ms, p = run_step(which == "dp" and dp_step or non_private)
      local r = res[which]
      r.times_ms[#r.times_ms + 1] = ms
      if which == "dp" and p > r.peak_bytes then r.peak_bytes = p end
    end
  end
  for _, which in ipairs{ "non_private", "dp" } do
    local r = res[which]
    r.median_ms, r.min_ms = median(r.times_ms), math.min(unpack(r.times_ms))
  end
  res.dp.loss_scale = priv:loss_scale()
  res.dp.last_loss = stats.loss
  res.dp.noise_multiplier_gradient = priv.grad_sigma
  local dtypes = {}
  for _, d in ipairs(priv.engine:describe()) do
    dtypes[d.norm_dtype or "?"] = true
    dtypes["accum " .. tostring(d.accum_dtype)] = true
  end
  res.dp.engine_dtypes = {}
  for k in pairs(dtypes) do res.dp.engine_dtypes[#res.dp.engine_dtypes + 1] = k end
  table.sort(res.dp.engine_dtypes)
  res.param_dtypes = {}
  for _, p in ipairs(params) do res.param_dtypes[p:dtype()] = (res.param_dtypes[p:dtype()] or 0) + 1 end
  res.matmul_engine = { f32 = engine_of("f32"), bf16 = engine_of("bf16") }
  return res
end

-- ---------------------------------------------------------------- run

local device, cpu = device_name()
if cfg.device then device = cfg.device end
local result = {
  bench = "precision", date = os.date("!%Y-%m-%dT%H:%M:%SZ"), device = device, cpu = cpu,
  commit = shell("git -C '" .. script_dir .. "' rev-parse HEAD 2>/dev/null"),
  dirty = shell("git -C '" .. script_dir .. "' status --porcelain 2>/dev/null") ~= "",
  threads = dp.get_num_threads(), dprun = dp.version(),
  config = { model = model_cfg, batch = cfg.batch, seq = cfg.seq, reps = cfg.reps, gemm_reps = cfg.gemm_reps,
             dp = dp_cfg, optimizer = "adam" },
  targets = { gemm_bf16_speedup_min = 4, dp_step_bf16_speedup_min = 2, peak_bf16_ratio_max = 0.6,
              peak_mixed_bf16_ratio_max = 0.9 },
}
local function load_average()
  local f = io.open("/proc/loadavg", "r")
  local one = f and f:read("*n")
  if f then f:close() end
  return one
end
result.load_average = { before = load_average() }
io.stderr:write("precision: GEMM micro-benchmark\n")
result.gemm = gemm_bench()
local batch = bert.synthetic_batch{ B = cfg.batch, T = cfg.seq, vocab = model_cfg.vocab, classes = model_cfg.classes,
                                    seed = 2, pad_fraction = 0.25 }
result.presets = json.object()
for name in cfg.presets:gmatch("[^,]+") do
  io.stderr:write(("precision: %s\n"):format(name))
  result.presets[name] = preset_bench(name, batch)
  dp.collectgarbage()
end

-- Ratios against fp32 (speedups: fp32 time / preset time; memory: preset peak / fp32 peak).
local P, ratios = result.presets, json.object()
local fp32 = P.fp32
if fp32 then
  for name, r in pairs(P) do
    ratios[name] = { dp_speedup = fp32.dp.median_ms / r.dp.median_ms,
                     non_private_speedup = fp32.non_private.median_ms / r.non_private.median_ms,
                     dp_peak_ratio = r.dp.peak_bytes / fp32.dp.peak_bytes,
                     non_private_peak_ratio = r.non_private.peak_bytes / fp32.non_private.peak_bytes,
                     dp_over_non_private_time = r.dp.median_ms / r.non_private.median_ms,
                     -- the fastest of the reps: less sensitive to other jobs on a shared machine
                     dp_speedup_min = fp32.dp.min_ms / r.dp.min_ms,
                     non_private_speedup_min = fp32.non_private.min_ms / r.non_private.min_ms }
  end
end
local gemm_min = math.huge
for _, g in ipairs(result.gemm) do gemm_min = math.min(gemm_min, g.bf16_speedup) end
local t = result.targets
t.gemm_bf16_speedup, t.gemm_ok = gemm_min, gemm_min >= t.gemm_bf16_speedup_min
if ratios.bf16 then
  t.dp_step_bf16_speedup, t.peak_bf16_ratio = ratios.bf16.dp_speedup, ratios.bf16.dp_peak_ratio
  t.dp_step_bf16_speedup_min_ms = ratios.bf16.dp_speedup_min
  t.dp_step_ok, t.peak_bf16_ok = t.dp_step_bf16_speedup >= 2, t.peak_bf16_ratio <= 0.6
end
if ratios["mixed-bf16"] then
  t.peak_mixed_bf16_ratio = ratios["mixed-bf16"].dp_peak_ratio
  t.peak_mixed_bf16_ok = t.peak_mixed_bf16_ratio <= 0.9
end
result.ratios = ratios
result.load_average.after = load_average()

local text = json.encode(result, { indent = "  " })
print(text)
if cfg.save ~= 0 then
  local path = ("%s/results/precision_%s_%s.json"):format(script_dir, device, os.date("!%Y-%m-%d"))
  require("dp.util.atomic").write_string(path, text .. "\n", "bench/precision")
  io.stderr:write("precision: wrote " .. path .. "\n")
end
