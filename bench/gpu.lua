-- bench/gpu.lua: BERT-base (hidden 768, 12 layers, 12 heads, seq 128) training steps on the GPU,
-- printed as JSON: for each precision (fp32, bf16, mixed-bf16, fp8), privacy (non-private, DP-SGD
-- through dp.private) and setup (last-layers, LoRA) and batch size, the median step time, tokens
-- per second, model FLOP utilisation and peak GPU memory. Prints {"skipped": "..."} without a GPU.
--
-- MFU = 6 * N * tokens / step time / peak, N = non-embedding parameters (encoder, pooler,
-- classifier: 85.6M for BERT-base), tokens = batch * seq, peak = the GPU's dense bf16 tensor rate
-- (H100 SXM and H200: 989 TFLOP/s). 6N per token is the full-training count (forward 2N, backward
-- 4N), used for every setup so figures compare; last-layers and LoRA skip most weight gradients,
-- so their true FLOPs are lower (about 4N per token) and their MFU reads as an equivalent figure.
-- Peak memory is dprun's tensor storage on the GPU (dp_mem_peak), not cuBLAS workspaces.
--
-- Usage: dprun bench/gpu.lua [batch=32,64,128,256] [reps=5] [warmup=2] [precision=fp32,bf16,...]
--        [privacy=non-private,dp] [setup=last-layers,lora] [peak_tflops=N] [budget_s=420]
local ffi = require "ffi"
local dp = require "dp"
local json = require "dp.util.json"
local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
package.path = script_dir .. "/?.lua;" .. package.path
local timing = require "timing"
local now, median = timing.now, timing.median

local C = dp.C

local function list(s) local t = {} for x in s:gmatch("[^,]+") do t[#t + 1] = tonumber(x) or x end return t end
local cfg = { batch = "32,64,128,256", reps = 5, warmup = 2, precision = "fp32,bf16,mixed-bf16,fp8",
              privacy = "non-private,dp", setup = "last-layers,lora", peak_tflops = 0, budget_s = 420, seq = 128,
              selftest = 0 }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^([%w_]+)=(.+)$")
  if not k or cfg[k] == nil then
    error("unknown argument " .. a .. " (expected key=value: batch, reps, warmup, precision, privacy, "
          .. "setup, peak_tflops, budget_s, seq)", 0)
  end
  cfg[k] = type(cfg[k]) == "number" and assert(tonumber(v), k .. " must be a number") or v
end

-- selftest=1: a tiny BERT on the CPU, to check this script's own code paths without a GPU.
local selftest = cfg.selftest == 1
local DEV, DEV_INDEX = selftest and "cpu" or "cuda", selftest and 0 or 1
if not selftest and not dp.cuda_available() then
  print(json.encode{ bench = "gpu", skipped = "no CUDA device: " .. dp.device.unavailable_reason() })
  return
end

-- Dense bf16 tensor-core peaks (TFLOP/s) by GPU name, from the vendors' datasheets (no sparsity).
local peaks = { { "H200", 989 }, { "H100 PCIe", 756 }, { "H100", 989 }, { "A100", 312 }, { "L40S", 362 } }
local function gpu_name()
  local pipe = io.popen("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null")
  local name = pipe and pipe:read("*l")
  if pipe then pipe:close() end
  return name or "unknown"
end
local name = gpu_name()
local peak = cfg.peak_tflops > 0 and cfg.peak_tflops or nil
if not peak then for _, p in ipairs(peaks) do if name:find(p[1], 1, true) then peak = p[2]; break end end end

local sync_buf = ffi.new("double[1]")
-- A device-to-host read waits for every queued kernel: the step's time is then all its work.
local function sync(t) dp.ffi.check(C.dp_tensor_get_flat(t.ptr, 0, sync_buf)) end

local bert_cfg = { vocab_size = 30522, hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12,
                   intermediate_size = 3072, max_position_embeddings = 512, num_labels = 3 }
if selftest then
  bert_cfg = { vocab_size = 100, hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4,
               intermediate_size = 64, max_position_embeddings = 16, num_labels = 3 }
  cfg.seq, cfg.reps, cfg.warmup = 8, 1, 1
  if cfg.batch == "32,64,128,256" then cfg.batch = "2" end
end

local function synthetic_batch(B, T)
  local ids, labels = {}, {}
  for b = 1, B do
    ids[b] = {}
    for t = 1, T do ids[b][t] = (b * 7919 + t * 104729) % bert_cfg.vocab_size end
    labels[b] = b % 3
  end
  return { input_ids = dp.tensor(ids, { dtype = "i64", device = DEV }),
           labels = dp.tensor(labels, { dtype = "i64", device = DEV }) }
end

local function non_embedding_params(model)
  local n = 0
  for _, e in ipairs(model:named_parameters()) do
    if not e.name:find("embeddings", 1, true) and not e.name:find("lora", 1, true) then n = n + e.tensor:numel() end
  end
  return n
end

-- One configuration: a fresh model on the GPU, warm-up steps, then reps timed steps.
local function run(precision, privacy, setup, B)
  dp.collectgarbage()
  dp.device(DEV)   -- the model's tensors are built there
  local model = dp.nn.BertForSequenceClassification(bert_cfg, { seed = 1, dropout_rng = dp.rng(2) })
  if setup == "lora" then dp.nn.lora.apply(model, { rank = 8, seed = 3 })
  else dp.nn.lora.last_layers(model, { layers = 1 }) end
  dp.precision.apply(model, precision)
  local trainable = model:trainable()
  local opt = dp.optim.adamw(trainable, { lr = 1e-4, weight_decay = 0 })
  local batch = synthetic_batch(B, cfg.seq)
  local probe = trainable[#trainable].tensor
  local step
  if privacy == "dp" then
    local priv = dp.private{ params = model, optimizer = opt, sample_rate = B / 550000, noise_multiplier = 1.0,
                             max_grad_norm = 1.0, delta = 1e-6, noise = "reproducible", seed = 4,
                             max_physical_batch_size = B,
                             loss = function(b) return model:per_sample_loss(b) end }
    step = function() priv:step_on(batch); opt:zero_grad() end
  else
    step = function()
      model:per_sample_loss(batch):mean():backward()
      opt:step(); opt:zero_grad()
    end
  end
  for _ = 1, cfg.warmup do step() end
  sync(probe)
  C.dp_mem_reset_peak(DEV_INDEX)
  local times = {}
  for k = 1, cfg.reps do
    local t0 = now()
    step()
    sync(probe)
    times[k] = now() - t0
  end
  local t = median(times)
  local N, tokens = non_embedding_params(model), B * cfg.seq
  local flops = 6 * N * tokens
  return { precision = precision, privacy = privacy, setup = setup, batch = B, seq = cfg.seq,
           step_ms = t * 1e3, min_step_ms = math.min(unpack(times)) * 1e3, tokens_per_s = tokens / t,
           model_tflops_per_step = flops / 1e12, achieved_tflops = flops / t / 1e12,
           mfu = peak and flops / t / (peak * 1e12) or json.null,
           peak_memory_bytes = tonumber(C.dp_mem_peak(DEV_INDEX)),
           trainable_parameters = model:num_parameters{ trainable_only = true },
           non_embedding_parameters = N }
end

local result = { bench = "gpu", date = os.date("!%Y-%m-%dT%H:%M:%SZ"), dprun = dp.version(), gpu = name,
                 peak_bf16_dense_tflops = peak or json.null,
                 mfu_formula = "6 * non_embedding_params * batch * seq / step_time / peak_bf16_dense",
                 config = { model = bert_cfg, reps = cfg.reps, warmup = cfg.warmup }, runs = {}, skipped = {} }
local started = now()
for _, precision in ipairs(list(cfg.precision)) do
  for _, privacy in ipairs(list(cfg.privacy)) do
    for _, setup in ipairs(list(cfg.setup)) do
      for _, B in ipairs(list(cfg.batch)) do
        local label = ("%s %s %s batch %d"):format(precision, privacy, setup, B)
        if now() - started > cfg.budget_s then
          result.skipped[#result.skipped + 1] = label .. ": time budget spent"
        else
          local ok, rec = pcall(run, precision, privacy, setup, B)
          if ok then
            result.runs[#result.runs + 1] = rec
            io.stderr:write(("%-40s %9.1f ms  %9.0f tok/s  MFU %s  peak %.2f GiB\n"):format(label, rec.step_ms,
              rec.tokens_per_s, rec.mfu ~= json.null and ("%.3f"):format(rec.mfu) or "-", rec.peak_memory_bytes / 2 ^ 30))
          else
            result.skipped[#result.skipped + 1] = label .. ": " .. tostring(rec)
            io.stderr:write(label .. ": FAILED: " .. tostring(rec) .. "\n")
          end
        end
      end
    end
  end
end
print(json.encode(result))
