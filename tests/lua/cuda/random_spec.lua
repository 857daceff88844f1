-- CUDA parity of the counter-based random streams: the same seed gives bit-identical uniforms,
-- normals, dropout masks and DP noise on the CPU and the GPU, and leaves the generators at the
-- same counter (core/philox.h computes every bit the same way on both). Skipped without a GPU.
local dp = require "dp"
local parity = require "cuda.parity"

parity.describe("cuda parity: random streams", function()
  it("rand and randn fill every dtype bit for bit like the CPU", function()
    for _, dt in ipairs { "f32", "f64", "bf16", "f16", "fp8_e4m3", "fp8_e5m2" } do
      local rc, rg = dp.rng(2024), dp.rng(2024)
      parity.assert_equal(dp.rand({ 1001 }, { dtype = dt, rng = rg, device = parity.target }),
                          dp.rand({ 1001 }, { dtype = dt, rng = rc, device = "cpu" }), "rand " .. dt)
      parity.assert_equal(dp.randn({ 7, 129 }, { dtype = dt, rng = rg, device = parity.target, std = 3 }),
                          dp.randn({ 7, 129 }, { dtype = dt, rng = rc, device = "cpu", std = 3 }), "randn " .. dt)
      assert.equal(tonumber(rc.counter), tonumber(rg.counter))
    end
  end)

  it("dropout keeps and scales the same elements for the same seed", function()
    local x = dp.randn({ 4, 33, 65 }, { seed = 1, device = "cpu" })
    for _, p in ipairs { 0.1, 0.5 } do
      local rc, rg = dp.rng(77), dp.rng(77)
      local yc = dp.dropout(x, p, true, rc)
      local yg = dp.dropout(parity.gpu(x), p, true, rg)
      parity.assert_equal(yg, yc, "dropout p=" .. p)
      assert.equal(tonumber(rc.counter), tonumber(rg.counter))
    end
  end)

  it("a model built on the GPU from a seed has the CPU model's weights", function()
    local cfg = { vocab_size = 50, hidden_size = 16, num_hidden_layers = 1, num_attention_heads = 2,
                  intermediate_size = 32, max_position_embeddings = 8, num_labels = 3 }
    local cpu_model = dp.nn.BertForSequenceClassification(cfg, { seed = 5 })
    dp.device(parity.target)
    local ok, gpu_model = pcall(dp.nn.BertForSequenceClassification, cfg, { seed = 5 })
    dp.device("cpu")
    assert(ok, gpu_model)
    local ref = {}
    for _, e in ipairs(cpu_model:named_parameters()) do ref[e.name] = e.tensor end
    for _, e in ipairs(gpu_model:named_parameters()) do
      assert.equal(parity.target, e.tensor:device())
      parity.assert_equal(e.tensor, ref[e.name], e.name)
    end
  end)

  it("DP noise (reproducible mode) adds the same values into f32 and f64 tensors", function()
    for _, dt in ipairs { "f32", "f64" } do
      local gc = dp.privacy.noise{ mode = "reproducible", seed = 9, stream = 3, counter = 11 }
      local gg = dp.privacy.noise{ mode = "reproducible", seed = 9, stream = 3, counter = 11 }
      local base = dp.randn({ 1000, 3 }, { seed = 4, dtype = dt, device = "cpu" })
      local tc, tg = base:clone():detach(), parity.gpu(base)
      gc:add_(tc, 0.7); gg:add_(tg, 0.7)
      parity.assert_equal(tg, tc, "noise " .. dt)
      assert.same(gc:state(), gg:state())
    end
  end)
end)
