-- Specs for dp.train.checkpoint: a save/load round trip restores every tensor exactly; a run of
-- N steps equals N/2 steps, a save, a restore into freshly built objects and N/2 more (weights
-- bit for bit, optimizer state, ledger); a failed save leaves the previous checkpoint current
-- and loadable.
local dp = require "dp"
local checkpoint = require "dp.train.checkpoint"
local nli = require "dp.train.nli"
local st = require "dp.hf.safetensors"

local tmp_root = os.tmpname()
os.remove(tmp_root)
nli.mkdirs(tmp_root)

local data_dir, vocab = nli.synthetic(tmp_root .. "/data", { seed = 3, train = 96, dev = 16, test = 16 })
local tok = dp.text.new(vocab)
local splits = nli.load(data_dir, tok, { max_length = 24 })

-- A tiny BERT with dropout (so the dropout generator's position matters), optionally with LoRA,
-- its optimizer and dp.private, all from fixed seeds; resume = a loaded checkpoint.
local function build(opts, resume)
  local cfg = { vocab_size = tok.vocab.size, hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2,
                intermediate_size = 16, max_position_embeddings = 24, num_labels = 3, hidden_dropout_prob = 0.1,
                attention_probs_dropout_prob = 0.1 }
  local model = dp.nn.BertForSequenceClassification(cfg, { seed = 5, dropout_rng = dp.rng(6) })
  if opts.lora then dp.nn.lora.apply(model, { rank = 2, dropout = 0.1, seed = 7 }) end
  -- bf16 weights with stochastic rounding: the rounding generator's position must resume too.
  if opts.bf16 then dp.precision.apply(model, dp.precision.policy({ preset = "bf16", stochastic_rounding = true })) end
  local opt = dp.optim.adamw(model:trainable(), { lr = 1e-2 })
  local run = { params = model:named_parameters(), optimizer = opt, rngs = checkpoint.module_rngs(model),
                config = { tag = "spec" } }
  if resume then checkpoint.restore(resume, run) end
  run.private = dp.private{
    params = model, optimizer = opt, data = nli.dataset(splits.train), batch_size = 24,
    loss = function(b) return model:per_sample_loss(b) end, noise_multiplier = 1.0, delta = 1e-3,
    max_grad_norm = 1.0, max_physical_batch_size = 16, seed = 11,
    ledger = resume and dp.privacy.accountant.Ledger.from_json(resume.ledger_json),
    generator_state = resume and resume.generators,
  }
  run.model = model
  return run
end

local function bytes(t) return t:contiguous():float():totable() end

-- Every parameter's values, by name.
local function weights(run)
  local out = {}
  for _, p in ipairs(run.params) do out[p.name] = bytes(p.tensor) end
  return out
end

local function optimizer_tensors(run)
  local out = {}
  for name, s in pairs(run.optimizer:state_dict().state) do
    for k, v in pairs(s) do out[name .. "::" .. k] = dp.is_tensor(v) and bytes(v) or v end
  end
  return out
end

local function steps(run, n) for _ = 1, n do run.private:step() end end

describe("dp.train.checkpoint", function()
  teardown(function() os.execute("rm -rf '" .. tmp_root .. "'") end)

  for _, variant in ipairs { { name = "full model", lora = false }, { name = "LoRA", lora = true },
                             { name = "pure bf16 with stochastic rounding", bf16 = true } } do
    describe(variant.name, function()
      it("resumes bit-identically: 6 steps straight = 3 + save + restore + 3", function()
        local straight = build(variant)
        steps(straight, 6)

        local first = build(variant)
        steps(first, 3)
        local dir = tmp_root .. "/ck-" .. (variant.lora and "lora" or "full")
        checkpoint.save(dir, { params = first.params, optimizer = first.optimizer, private = first.private,
                               rngs = first.rngs, position = { epoch = 0, step = 3 }, config = { tag = "spec" } })
        first = nil
        collectgarbage()
        local ck = checkpoint.load(dir)
        assert.same({ epoch = 0, step = 3 }, ck.position)
        assert.equal("spec", ck.config.tag)
        local resumed = build(variant, ck)
        assert.equal(3, resumed.private:steps())
        steps(resumed, 3)

        assert.same(weights(straight), weights(resumed))   -- exact equality of every value
        assert.same(optimizer_tensors(straight), optimizer_tensors(resumed))
        assert.equal(straight.private.ledger:to_json(), resumed.private.ledger:to_json())
        assert.equal(straight.private:epsilon(), resumed.private:epsilon())
        for k, r in pairs(straight.rngs) do
          assert.same({ r:state() }, { resumed.rngs[k]:state() }, k)
        end
        if variant.lora then
          local names = {}
          for _, p in ipairs(resumed.params) do names[#names + 1] = p.name end
          assert.truthy(table.concat(names, " "):find("lora_A", 1, true))
          local n = 0
          for k in pairs(resumed.rngs) do if k:find("lora_dropout", 1, true) then n = n + 1 end end
          assert.is_true(n > 0, "the LoRA dropout generators are checkpointed")
        end
      end)
    end)
  end

  it("round-trips tensors exactly and keeps only the current save", function()
    local run = build({})
    steps(run, 1)
    local dir = tmp_root .. "/ck-roundtrip"
    local function save(step)
      return checkpoint.save(dir, { params = run.params, optimizer = run.optimizer, private = run.private,
                                    rngs = run.rngs, position = { epoch = 0, step = step } })
    end
    local first = save(1)
    steps(run, 1)
    local second = save(2)
    assert.is_nil(io.open(first .. "/model.safetensors", "rb"), "the previous save is removed")
    local ck = checkpoint.load(dir)
    assert.equal(second, ck.dir)
    local saved = st.read(ck.model_path).tensors
    for _, p in ipairs(run.params) do assert.same(bytes(p.tensor), bytes(saved[p.name]), p.name) end
    assert.equal(run.private.ledger:to_json(), ck.ledger_json)
    assert.same(run.private:generator_state(), ck.generators)
  end)

  it("a failed save leaves the previous checkpoint current and loadable", function()
    local run = build({})
    steps(run, 1)
    local dir = tmp_root .. "/ck-atomic"
    local args = { params = run.params, optimizer = run.optimizer, private = run.private, rngs = run.rngs,
                   position = { epoch = 0, step = 1 } }
    local good = checkpoint.save(dir, args)
    local before = weights(run)
    steps(run, 1)
    args.position = { epoch = 0, step = 2 }
    checkpoint._fail_before_manifest = true
    local ok, err = pcall(checkpoint.save, dir, args)
    checkpoint._fail_before_manifest = nil
    assert.is_false(ok)
    assert.matches("simulated failure", err)
    local ck = checkpoint.load(dir)
    assert.equal(good, ck.dir)
    assert.equal(1, ck.position.step)
    local saved = st.read(ck.model_path).tensors
    for name, v in pairs(before) do assert.same(v, bytes(saved[name]), name) end
    -- the half-written save was removed
    assert.is_nil(io.open(dir .. "/save-000002/model.safetensors", "rb"))
  end)

  it("a damaged checkpoint is an error naming the file", function()
    local run = build({})
    local dir = tmp_root .. "/ck-damaged"
    local sub = checkpoint.save(dir, { params = run.params, optimizer = run.optimizer, private = run.private,
                                       rngs = run.rngs, position = { step = 0 } })
    local f = assert(io.open(sub .. "/optimizer.json", "ab"))
    f:write(" ")
    f:close()
    assert.error_matches(function() checkpoint.load(dir) end, "optimizer.json has %d+ bytes, the manifest says")
    assert.error_matches(function() checkpoint.load(tmp_root) end, "has no manifest.json")
  end)
end)


