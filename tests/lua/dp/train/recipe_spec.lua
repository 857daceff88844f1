-- End-to-end specs for recipes/bert_snli.lua through the dprun binary (DPRUN, set by
-- tools/test.sh; skipped with a message without it), on a tiny synthetic setting: the outputs
-- (weights loadable under HF names, config, vocab, metrics.jsonl, plot.svg, checkpoint), a run
-- stopped and resumed equal to an uninterrupted one byte for byte, flag errors with exit status
-- 2, and bad input (a jsonl line, config.json) reported with the file's name.
require "dp"
local json = require "dp.util.json"

local function find_dprun()
  for _, path in ipairs { os.getenv("DPRUN"), "build/dprun" } do
    local f = path and io.open(path, "rb")
    if f then f:close() return path end
  end
end
local dprun = find_dprun()

local function run(args)
  local p = io.popen(("%s recipes/bert_snli.lua %s 2>&1; echo \"[rc=$?]\""):format(dprun, args))
  local out = p:read("*a")
  p:close()
  return out:gsub("%[rc=%d+%]\n?$", ""), tonumber(out:match("%[rc=(%d+)%]\n?$"))
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local root = os.tmpname()
os.remove(root)
local TINY = "--train-size 200 --eval-size 40 --hidden-size 16 --layers 1 --heads 2 --batch-size 50 "
             .. "--epochs 2 --max-length 24 --seed 4"

describe("recipes/bert_snli.lua", function()
  if not dprun then
    it("runs end to end", function() pending("no dprun binary (set DPRUN, as tools/test.sh does)") end)
    return
  end
  teardown(function() os.execute("rm -rf '" .. root .. "'") end)

  local out1 = root .. "/straight"
  local text1, rc1 = run(TINY .. " --out " .. out1)

  it("trains and writes weights, config, vocab, metrics, plot and a checkpoint", function()
    assert.equal(0, rc1, text1)
    assert.truthy(text1:find("step 1  batch %d+  loss"), "per-step log line")
    assert.truthy(text1:find("train %[#"), "progress bar")
    local eps = tonumber(text1:match("epsilon ([%d.]+) at delta"))
    assert.truthy(eps, text1)
    assert.is_true(eps > 7 and eps <= 8 + 1e-6, "final epsilon " .. eps)
    local st = require("dp.hf.safetensors").read(out1 .. "/model.safetensors")
    assert.truthy(st.tensors["bert.embeddings.word_embeddings.weight"])
    assert.same({ 3, 16 }, st.tensors["classifier.weight"]:size())
    local cfg = require("dp.hf.config").read_bert_config(out1 .. "/config.json")
    assert.equal(3, cfg.num_labels)
    assert.equal(slurp(out1 .. "/data/vocab.txt"), slurp(out1 .. "/vocab.txt"))
    local steps, evals, test = 0, 0, nil
    for line in io.lines(out1 .. "/metrics.jsonl") do
      local r = json.decode(line)
      if r.dev_accuracy then evals = evals + 1
      elseif r.test_accuracy then test = r.test_accuracy
      elseif r.precision then assert.equal("fp32", r.precision); assert.equal(0, r.step)
      else
        steps = steps + 1
        for _, k in ipairs { "step", "loss", "accuracy", "epsilon", "clip_fraction", "step_time", "peak_bytes" } do
          assert.truthy(r[k] ~= nil or (k == "loss" or k == "accuracy") and r.batch_size == 0, k)
        end
        assert.equal(steps, r.step)
      end
    end
    assert.equal(8, steps)     -- q = 50 / 200: 4 steps an epoch, 2 epochs
    assert.equal(2, evals)
    assert.truthy(test)
    assert.truthy((slurp(out1 .. "/plot.svg") or ""):find("^<%?xml"))
    assert.truthy(slurp(out1 .. "/checkpoint/manifest.json"))
  end)

  it("a run stopped and resumed ends bit-identical to the uninterrupted one", function()
    local out2 = root .. "/resumed"
    local text, rc = run(TINY .. " --out " .. out2 .. " --stop-after 3")
    assert.equal(0, rc, text)
    assert.truthy(text:find("stopped after 3 steps", 1, true))
    assert.is_nil(slurp(out2 .. "/model.safetensors"))
    text, rc = run("--resume " .. out2)
    assert.equal(0, rc, text)
    assert.equal(slurp(out1 .. "/model.safetensors"), slurp(out2 .. "/model.safetensors"))
    local function ledger(out)
      local m = json.decode(slurp(out .. "/checkpoint/manifest.json"))
      return slurp(out .. "/checkpoint/" .. m.current .. "/ledger.json")
    end
    assert.equal(ledger(out1), ledger(out2))
    -- metrics: the same steps in the same order, with the same losses
    local function losses(out)
      local l = {}
      for line in io.lines(out .. "/metrics.jsonl") do
        local r = json.decode(line)
        l[#l + 1] = ("%s:%s:%s"):format(r.step, tostring(r.loss), tostring(r.dev_accuracy))
      end
      return l
    end
    assert.same(losses(out1), losses(out2))
  end)

  it("trains under --precision with --fp32 modules, and announces a precision changed on resume", function()
    local out5 = root .. "/mixed"
    local text, rc = run(TINY .. " --epochs 1 --precision mixed-bf16 --fp32 LayerNorm,classifier --stop-after 2 --out "
                         .. out5)
    assert.equal(0, rc, text)
    assert.truthy(text:find("precision mixed-bf16 (fp32: LayerNorm,classifier)", 1, true), text)
    assert.truthy(text:find("step 2  batch %d+  loss [%d.]+"), text)
    text, rc = run("--resume " .. out5 .. " --precision fp32")
    assert.equal(0, rc, text)
    assert.truthy(text:find("resuming with --precision fp32 (the checkpoint ran mixed-bf16)", 1, true), text)
    local marks = {}
    for line in io.lines(out5 .. "/metrics.jsonl") do
      local r = json.decode(line)
      if r.precision then marks[#marks + 1] = ("%d:%s:%s"):format(r.step, r.precision, tostring(r.fp32)) end
    end
    assert.same({ "0:mixed-bf16:LayerNorm,classifier", "2:fp32:LayerNorm,classifier" }, marks)
  end)

  it("rejects bad flags with exit status 2 and names the flag", function()
    local cases = {
      { "--epochs zero", "flag --epochs expects an integer >= 1, got 'zero'" },
      { "--bogus 1", "unknown flag --bogus" },
      { "--setup half", "flag --setup expects one of full, last-layers, lora, got 'half'" },
      { "--precision half", "flag --precision expects one of fp32, bf16, mixed-bf16, mixed-f16, fp8, got 'half'" },
      { "--fp32 LayerNorm,%", "--fp32: '%' is not a valid Lua pattern" },
      { "--noise", "flag --noise needs a value (one of reproducible, secure)" },
      { "--resume " .. root .. "/nothing", "no checkpoint there" },
      { "--resume " .. out1 .. " --epochs 9", "--epochs 9 differs from the checkpoint's 2" },
    }
    for _, c in ipairs(cases) do
      local text, rc = run(c[1])
      assert.equal(2, rc, c[1] .. ": " .. text)
      assert.truthy(text:find(c[2], 1, true), c[1] .. ": " .. text)
      assert.is_nil(text:find("traceback", 1, true), c[1] .. ": " .. text)
    end
  end)

  it("fine-tunes its own output as a --model with LoRA, and merges the adapters on export", function()
    local out3 = root .. "/lora"
    local text, rc = run(TINY .. " --epochs 1 --model " .. out1 .. " --setup lora --lora-rank 2 --out " .. out3)
    assert.equal(0, rc, text)
    assert.truthy(text:find("setup lora", 1, true))
    local st = require("dp.hf.safetensors").read(out3 .. "/model.safetensors")
    for _, name in ipairs(st.names) do assert.is_nil(name:find("lora", 1, true), name) end
    assert.truthy(st.tensors["bert.encoder.layer.0.attention.self.query.weight"])
  end)

  it("reports a malformed jsonl line and a malformed config.json with the file's name", function()
    local data = root .. "/bad-data"
    os.execute("mkdir -p '" .. data .. "'")
    local good = '{"sentence1": "a dog runs .", "sentence2": "an animal runs .", "gold_label": "entailment"}\n'
    write(data .. "/train.jsonl", good .. good .. "{not json\n")
    write(data .. "/dev.jsonl", good)
    write(data .. "/test.jsonl", good)
    local text, rc = run("--model " .. out1 .. " --data " .. data .. " --out " .. root .. "/o4")
    assert.equal(1, rc, text)
    assert.truthy(text:find(data .. "/train.jsonl:3: invalid JSON", 1, true), text)

    local model = root .. "/bad-model"
    os.execute("mkdir -p '" .. model .. "'")
    write(model .. "/config.json", '{"hidden_size": 16, ')
    write(model .. "/vocab.txt", slurp(out1 .. "/vocab.txt"))
    text, rc = run(TINY .. " --model " .. model .. " --out " .. root .. "/o5")
    assert.equal(1, rc, text)
    assert.truthy(text:find(model .. "/config.json is not valid JSON", 1, true), text)
  end)
end)
