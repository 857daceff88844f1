-- recipes/bert_snli.lua: BERT on natural language inference with DP-SGD. With no flags it needs no
-- download: it writes a synthetic NLI set and its vocab under --out, builds a small BERT from
-- the seed and trains all of it privately (epsilon 8, delta 1/N). --model DIR fine-tunes a
-- Hugging Face BERT checkpoint (LoRA or last layers), --data DIR reads SNLI's jsonl files.
-- Writes metrics.jsonl, plot.svg, checkpoint/ (every epoch; --resume continues) and the final
-- model (model.safetensors, config.json, vocab.txt) into --out. dprun bert_snli.lua --help.
local dp = require "dp"
local train = dp.train
local flags, nli, checkpoint, metrics = train.flags, train.nli, train.checkpoint, train.metrics
local PROG = "bert_snli.lua"
io.stdout:setvbuf("line")

-- config
local spec = {
  { "model", "string", nil, "Hugging Face BERT checkpoint dir (config.json, model.safetensors, vocab.txt)", meta = "DIR" },
  { "data", "string", nil, "SNLI dir (snli_1.0_{train,dev,test}.jsonl); default: the synthetic set", meta = "DIR" },
  { "setup", "choice", nil, "what trains (default: full for the seed model, lora with --model)",
    choices = { "full", "last-layers", "lora" } },
  { "epochs", "int", 3, "passes over the training set", min = 1 },
  { "batch_size", "int", 1024, "expected logical batch size (Poisson sampling)", min = 1 },
  { "epsilon", "number", 8, "privacy budget epsilon (delta = 1/N)", above = 0 },
  { "seed", "int", 1, "seed of the data, the model and the reproducible noise", min = 0 },
  { "out", "string", "out/bert_snli", "output directory", meta = "DIR" },
  { "resume", "string", nil, "continue the run checkpointed in DIR (an --out dir or its checkpoint/)", meta = "DIR" },
  { "max_physical_batch_size", "int", 256, "largest micro-batch run at once", min = 1 },
  { "noise", "choice", "reproducible", "noise generator", choices = { "reproducible", "secure" } },
  { "lr", "number", 1e-2, "AdamW learning rate", above = 0 },
  { "clip", "number", 1.0, "per-example gradient norm bound C", above = 0 },
  { "train_size", "int", 50000, "synthetic training pairs", min = 10 },
  { "eval_size", "int", 2000, "synthetic dev and test pairs each", min = 10 },
  { "hidden_size", "int", 64, "seed model: hidden size", min = 4 },
  { "layers", "int", 2, "seed model: encoder layers", min = 1 },
  { "heads", "int", 4, "seed model: attention heads", min = 1 },
  { "max_length", "int", 32, "longest tokenised pair", min = 3 },
  { "lora_rank", "int", 8, "LoRA rank", min = 1 },
  { "stop_after", "int", nil, "stop (with a checkpoint) after this many steps in this run", min = 1 },
  { "device", "choice", "auto", "where the model and data live (auto: the GPU if there is one, else the CPU)",
    choices = { "auto", "cuda", "cpu" } },
  { "data_on_device", "bool", false, "keep the training set on the device (default: batches staged in pinned host memory, copied asynchronously)" },
}
for _, f in ipairs(train.precision.flags) do spec[#spec + 1] = f end
local cfg = flags.parse_or_exit(spec, arg, PROG)
local resume, note
if cfg.resume then
  local dir = checkpoint.find(cfg.resume) or flags.exit_usage("--resume " .. cfg.resume .. ": no checkpoint there", PROG)
  resume = checkpoint.load(dir)
  local merged, msg = train.precision.merge_resume(cfg, resume.config, { "resume", "out", "stop_after", "device", "data_on_device" })
  cfg, note = merged or flags.exit_usage(msg, PROG), msg
  if note then print(note) end
end
local policy, perr = train.precision.policy(cfg)
if not policy then flags.exit_usage(perr, PROG) end
cfg.setup = cfg.setup or (cfg.model and "lora" or "full")
if cfg.data and not cfg.model then flags.exit_usage("--data needs --model (its vocab.txt tokenises the data)", PROG) end
local out = cfg.out
nli.mkdirs(out, PROG)

-- model (built on the device: new tensors go there)
local ok_device, device = pcall(dp.device, cfg.device)
if not ok_device then flags.exit_usage("--device " .. cfg.device .. ": " .. tostring(device):gsub("^.-:%d+: ", ""), PROG) end
local vocab_path = cfg.model and cfg.model .. "/vocab.txt"
local data_dir = cfg.data
if not data_dir then
  local v
  data_dir, v = nli.synthetic(out .. "/data", { seed = cfg.seed, train = cfg.train_size, dev = cfg.eval_size,
                                              test = cfg.eval_size })
  vocab_path = vocab_path or v
end
local tok = dp.text.new(vocab_path)
local bert_cfg, head_fits = train.bert.config({ model = cfg.model, vocab_size = tok.vocab.size, hidden_size = cfg.hidden_size,
  layers = cfg.layers, heads = cfg.heads, max_length = cfg.max_length }, 3, { [0] = "entailment", "neutral", "contradiction" })
local model = dp.nn.BertForSequenceClassification(bert_cfg, { seed = cfg.seed, dropout_rng = dp.rng(cfg.seed + 1) })
if cfg.model and not resume then train.bert.load(model, cfg.model, head_fits) end
if cfg.setup == "lora" then dp.nn.lora.apply(model, { rank = cfg.lora_rank, seed = cfg.seed })
elseif cfg.setup == "last-layers" then dp.nn.lora.last_layers(model, { layers = 1 }) end
dp.precision.apply(model, policy)
print(("model: %d parameters, %d trained (setup %s, precision %s, device %s)"):format(model:num_parameters(),
  model:num_parameters{ trainable_only = true }, cfg.setup, train.precision.describe(cfg), device))

-- data
local max_length = math.min(cfg.max_length, bert_cfg.max_position_embeddings)
local splits = nli.load(data_dir, tok, { max_length = max_length, cache_dir = out .. "/cache" })
for name, split in pairs(splits) do   -- dev and test are evaluated on the device; train's batches are copied there
  if name ~= "train" or cfg.data_on_device then dp.device.move_tensors(split, device) end
end
local N = splits.train.n
print(("data: %s: %d train, %d dev, %d test pairs (%d train lines labelled '-' dropped), length %d")
  :format(data_dir, N, splits.dev.n, splits.test.n, splits.train.dropped, splits.train.input_ids:size(2)))

-- loop
local opt = dp.optim.adamw(model:trainable(), { lr = cfg.lr, weight_decay = 0 })
local run = { params = model:named_parameters(), optimizer = opt, rngs = checkpoint.module_rngs(model), config = cfg }
if resume then checkpoint.restore(resume, run) end
local metrics_path = out .. "/metrics.jsonl"
if resume then metrics.truncate(metrics_path, resume.position.step) else os.remove(metrics_path) end
if not resume or note then   -- the precision each stretch of steps ran under
  metrics.append(metrics_path, { step = resume and resume.position.step or 0, precision = cfg.precision, fp32 = cfg.fp32 })
end
local bar
local priv = dp.private{
  params = model, optimizer = opt, data = nli.dataset(splits.train):to_device(device), batch_size = math.min(cfg.batch_size, N),
  loss = function(batch)
    local logits = model:forward(batch)
    return dp.cross_entropy(logits, batch.labels, { reduction = "none" }), { correct = nli.correct(logits, batch.labels) }
  end,
  target_epsilon = cfg.epsilon, delta = 1 / N, epochs = cfg.epochs, max_grad_norm = cfg.clip,
  max_physical_batch_size = cfg.max_physical_batch_size, noise = cfg.noise, seed = cfg.seed,
  ledger = resume and dp.privacy.accountant.Ledger.from_json(resume.ledger_json),
  generator_state = resume and resume.generators, log = function(line) bar:log(line) end, metrics = metrics_path,
}
local per_epoch, total = priv:steps_per_epoch(), priv:steps_per_epoch() * cfg.epochs
print(("DP-SGD: sigma %.4f, q %.4f, %d steps (%d per epoch), clip %g, epsilon %g at delta %.3g, noise %s")
  :format(priv:noise_multiplier(), priv.sample_rate, total, per_epoch, cfg.clip, cfg.epsilon, 1 / N, cfg.noise))
local function save(step)
  run.private, run.position = priv, { epoch = math.floor(step / per_epoch), step = step }
  checkpoint.save(out .. "/checkpoint", run)
end
bar = train.progress.new{ total = total, label = "train" }
local taken = 0
while priv:steps() < total do
  local st = priv:step()
  taken = taken + 1
  bar:update(st.step, ("loss %s  eps %.2f"):format(st.loss and ("%.3f"):format(st.loss) or "-", st.epsilon))
  if st.step % per_epoch == 0 or st.step == total then
    local epoch, acc = math.ceil(st.step / per_epoch), nli.accuracy(model, splits.dev)
    metrics.append(metrics_path, { step = st.step, epoch = epoch, dev_accuracy = acc, epsilon = st.epsilon })
    bar:log(("epoch %d  dev accuracy %.4f  epsilon %.3f"):format(epoch, acc, st.epsilon))
    save(st.step)
  end
  if cfg.stop_after and taken >= cfg.stop_after and priv:steps() < total then
    save(priv:steps())
    bar:finish()
    print(("stopped after %d steps (--stop-after); continue with --resume %s"):format(taken, out))
    return
  end
end
bar:finish()

-- report
local records = metrics.read(metrics_path)
local dev = records[#records] and records[#records].dev_accuracy or nli.accuracy(model, splits.dev)
local test = nli.accuracy(model, splits.test)
metrics.append(metrics_path, { step = priv:steps(), test_accuracy = test, epsilon = priv:epsilon() })
train.plot.write(out .. "/plot.svg", metrics.series(records), { title = "bert_snli: DP-SGD (" .. cfg.setup .. ")" })
train.bert.export(model, out, bert_cfg, vocab_path)
print(("dev accuracy %.4f, test accuracy %.4f, epsilon %.3f at delta %.3g after %d steps"):format(
  dev, test, priv:epsilon(), 1 / N, priv:steps()))
print(("wrote %s/model.safetensors, config.json, vocab.txt, metrics.jsonl, plot.svg, checkpoint/"):format(out))
