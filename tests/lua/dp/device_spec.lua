-- Specs for dp.device: resolving cuda/cpu/auto, the default device of constructors, and moving
-- modules and tables of tensors. Without a GPU the cuda paths check their error and fallback
-- messages; with one they check that tensors land on it.
local dp = require "dp"
local device = require "dp.device"
local dtype = require "dp.dtype"

local has_cuda = dp.cuda_available()

describe("dp.device", function()
  local lines, saved_print
  before_each(function()
    lines, saved_print = {}, device.print
    device.print = function(line) lines[#lines + 1] = line end
  end)
  after_each(function()
    device.print = saved_print
    dtype.set_default_device("cpu")
  end)

  describe("resolve", function()
    it("keeps cpu and rejects unknown names, listing the choices", function()
      assert.equal("cpu", device.resolve("cpu"))
      assert.error_matches(function() device.resolve("tpu") end,
        "unknown device tpu (expected cuda, cpu or auto)", nil, true)
    end)

    it("auto picks the GPU when there is one, else the CPU with exactly one line", function()
      local dev = device.resolve("auto")
      if has_cuda then
        assert.equal("cuda", dev)
        assert.equal(0, #lines)
      else
        assert.equal("cpu", dev)
        assert.equal(1, #lines)
        assert.truthy(lines[1]:find("no CUDA device (", 1, true))
        assert.truthy(lines[1]:find("running on the CPU", 1, true))
        assert.falsy(lines[1]:find("\n", 1, true))
      end
    end)

    it("cuda without a GPU is an error that says why", function()
      if has_cuda then
        assert.equal("cuda", device.resolve("cuda"))
      else
        assert.error_matches(function() device.resolve("cuda") end,
          "cuda requested but no CUDA device is usable: ", nil, true)
        assert.truthy(#device.unavailable_reason() > 0)
      end
    end)
  end)

  describe("default device", function()
    it("is the cpu until dp.device sets it, and dp.device() returns it", function()
      assert.equal("cpu", dp.device())
      assert.equal("cpu", dp.zeros{ 2 }:device())
      assert.equal("cpu", dp.device("cpu"))
    end)

    it("places every constructor's tensor on it; opts.device still wins", function()
      local dev = dp.device("auto")
      assert.equal(dev, dp.device())
      for _, t in ipairs { dp.zeros{ 2, 3 }, dp.ones{ 2 }, dp.full({ 2 }, 7), dp.empty{ 4 },
                           dp.randn({ 3 }, { seed = 1 }), dp.rand({ 3 }, { seed = 1 }),
                           dp.tensor{ 1, 2 }, dp.arange(5), dp.from_f64({ 1, 2 }, { 2 }) } do
        assert.equal(dev, t:device())
      end
      assert.equal("cpu", dp.zeros({ 2 }, { device = "cpu" }):device())
      -- values survive the trip: dp.tensor builds on the host and copies
      assert.same({ 1, 2 }, dp.tensor{ 1, 2 }:cpu():totable())
    end)
  end)

  describe("move_tensors", function()
    it("moves the tensor fields of a table and leaves the rest", function()
      local split = { input_ids = dp.tensor({ { 1, 2 }, { 3, 4 } }, "i64"), n = 2,
                      labels = dp.tensor({ 0, 1 }, "i64") }
      local dev = device.resolve("auto")
      assert.equal(split, device.move_tensors(split, dev))
      assert.equal(2, split.n)
      assert.equal(dev, split.input_ids:device())
      assert.same({ { 1, 2 }, { 3, 4 } }, split.input_ids:cpu():totable())
      assert.same({ 0, 1 }, split.labels:cpu():totable())
    end)

    it("moves a dp.data.tensors dataset, whose batches then come from that device", function()
      local ds = dp.data.tensors{ x = dp.tensor{ { 1, 2 }, { 3, 4 }, { 5, 6 } } }
      local dev = device.resolve("auto")
      device.move_tensors(ds, dev)
      local b = ds:collate{ 3, 1 }
      assert.equal(dev, b.x:device())
      assert.same({ { 5, 6 }, { 1, 2 } }, b.x:cpu():totable())
    end)

    it("refuses a non-table and a missing device", function()
      assert.error_matches(function() device.move_tensors(5, "cpu") end, "expected a table of tensors", nil, true)
      assert.error_matches(function() device.move_tensors({}, nil) end, "expected a device", nil, true)
    end)
  end)

  describe("move_module", function()
    local function tiny()
      local cfg = { vocab_size = 11, hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2,
                    intermediate_size = 16, max_position_embeddings = 6, num_labels = 3 }
      return dp.nn.BertForSequenceClassification(cfg, { seed = 3 })
    end

    it("moves every parameter, keeps names, flags and values, and the model still runs", function()
      local model = tiny()
      model.classifier.bias:requires_grad(false)
      local before = {}
      for _, e in ipairs(model:named_parameters()) do before[e.name] = e.tensor:cpu():totable() end
      local batch = { input_ids = dp.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "i64"),
                      labels = dp.tensor({ 0, 2 }, "i64") }
      model:eval()
      local ref = model:forward(batch):totable()
      model:forward(batch)   -- fills BERT's position-id cache on the CPU: it must move too
      local dev = device.resolve("auto")
      assert.equal(model, device.move_module(model, dev))
      for _, e in ipairs(model:named_parameters()) do
        assert.equal(dev, e.tensor:device())
        assert.is_true(e.tensor:is_param())
        assert.same(before[e.name], e.tensor:cpu():totable())
        assert.equal(e.name ~= "classifier.bias", e.tensor:requires_grad())
        assert.equal(e.tensor, model:get(e.name))
      end
      device.move_tensors(batch, dev)
      local got = model:forward(batch):cpu():totable()
      for i = 1, 2 do for j = 1, 3 do assert.near(ref[i][j], got[i][j], 1e-5) end end
    end)

    it("keeps tied parameters tied", function()
      local model = tiny()
      local w = model.bert.embeddings.word_embeddings.weight
      model.bert.pooler.dense._params.shared = w
      model.bert.pooler.dense.shared = w
      device.move_module(model, device.resolve("auto"))
      assert.equal(model.bert.embeddings.word_embeddings.weight.ptr, model.bert.pooler.dense.shared.ptr)
    end)

    it("refuses a model that already has a precision policy, naming the module", function()
      local model = tiny()
      dp.precision.apply(model, "bf16")
      assert.error_matches(function() device.move_module(model, "cpu") end,
        "has a precision policy; move the model before dp.precision.apply", nil, true)
    end)
  end)
end)
