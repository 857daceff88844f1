-- Specs for dp.privacy.engine: per-sample norms, clip factors and clipped sums against a
-- brute-force loop that runs each example alone through plain autograd in float64.
local dp = require "dp"
local engine = require "dp.privacy.engine"
local tiny = require "support.tiny_dp_model"

local flat = tiny.flat

local function sqnorm(v)
  local s = 0
  for _, x in ipairs(v) do s = s + x * x end
  return s
end

-- Per example i and trainable parameter name: the gradient as a flat Lua array (f64 autograd on
-- the example alone).
local function brute_force(model, batch)
  local per = {}
  local trainable = model:trainable()
  local tensors = {}
  for k, e in ipairs(trainable) do tensors[k] = e.tensor end
  for i = 1, batch.n do
    local loss = model:loss(tiny.example(batch, i)):sum()
    local grads = dp.grad(loss, tensors)
    per[i] = {}
    for k, e in ipairs(trainable) do per[i][e.name] = flat(grads[k]) end
  end
  return per
end

local function run_engine(model, batch, setup)
  local eng = engine.new(model:named_parameters())
  if setup then setup(eng) end
  eng:begin(batch.n)
  eng:active(function() model:loss(batch):backward(dp.ones({ batch.n }, { dtype = model.dtype })) end)
  eng:compute_norms()
  return eng
end

local function close(a, b, rel, what)
  local scale = math.max(math.abs(a), math.abs(b), 1e-12)
  if math.abs(a - b) > rel * scale then
    error(("%s: %.17g vs %.17g (relative tolerance %g)"):format(what, a, b, rel), 2)
  end
end

describe("dp.privacy.engine", function()
  local model = tiny.new("f64")
  local batch = model:batch(6, 11)
  local per = brute_force(model, batch)
  local names = {}
  for _, e in ipairs(model:trainable()) do names[#names + 1] = e.name end

  describe("per-sample norms", function()
    for _, form in ipairs{ "ghost", "materialise" } do
      it("match one example at a time in float64 for every op (" .. form .. " form)", function()
        local eng = run_engine(model, batch, function(e) e:set_form(nil, form) end)
        local total = eng:sample_norms()
        for i = 1, batch.n do
          local sum = 0
          for _, name in ipairs(names) do
            local ref = sqnorm(per[i][name])
            close(eng:sample_norms(name)[i] ^ 2, ref, 1e-10, name .. " example " .. i)
            sum = sum + ref
          end
          close(total[i] ^ 2, sum, 1e-10, "total of example " .. i)
        end
      end)
    end

    it("report the form chosen for each linear weight on sequences", function()
      local eng = run_engine(model, batch)
      local seen = {}
      for _, d in ipairs(eng:describe()) do seen[d.name] = d end
      assert.are.equal("linear.weight", seen["seq.weight"].kind)
      assert.is_true(seen["seq.weight"].form == "ghost" or seen["seq.weight"].form == "materialise")
      assert.are.equal(model.T, seen["seq.weight"].seq_len)
      -- head.weight is used twice on 2-D inputs: the uses merge into a sequence of two.
      assert.are.equal(2, seen["head.weight"].seq_len)
      assert.are.equal("embedding", seen["emb.weight"].kind)
      assert.is_false(seen["base.weight"].trainable)
    end)

    it("give each example's full gradient", function()
      local eng = run_engine(model, batch)
      for _, name in ipairs(names) do
        for i = 1, batch.n do
          local g = flat(eng:sample_grad(name, i))
          for k, v in ipairs(per[i][name]) do close(g[k], v, 1e-10, name .. "[" .. k .. "] example " .. i) end
        end
      end
    end)
  end)

  describe("clipped sums", function()
    local function reference(factor)
      local sums = {}
      for _, name in ipairs(names) do
        sums[name] = {}
        for k = 1, #per[1][name] do
          local s = 0
          for i = 1, batch.n do s = s + factor(i, name) * per[i][name][k] end
          sums[name][k] = s
        end
      end
      return sums
    end

    local function total_norm(i)
      local s = 0
      for _, name in ipairs(names) do s = s + sqnorm(per[i][name]) end
      return math.sqrt(s)
    end

    local function check_sums(eng, sums)
      for _, name in ipairs(names) do
        local acc = flat(eng:accumulator(name))
        for k, v in ipairs(sums[name]) do close(acc[k], v, 1e-9, name .. "[" .. k .. "]") end
      end
    end

    it("flat clipping equals sum_i min(1, C / |g_i|) g_i", function()
      local C = 0.6 * total_norm(1)
      local eng = run_engine(model, batch)
      local st = eng:clip{ mode = "flat", max_norm = C }
      local clipped = 0
      for i = 1, batch.n do if total_norm(i) > C then clipped = clipped + 1 end end
      assert.are.equal(clipped, st.clipped)
      assert.is_true(clipped > 0 and clipped < batch.n)
      check_sums(eng, reference(function(i) return math.min(1, C / total_norm(i)) end))
    end)

    it("sums weights that share one input correctly (the input is scaled once for both)", function()
      local x = dp.randn({ 5, 3, 2 }, { seed = 21, dtype = "f64" })
      local w1 = dp.randn({ 3, 2 }, { seed = 22, dtype = "f64" }):requires_grad(true)
      local w2 = dp.randn({ 4, 2 }, { seed = 23, dtype = "f64" }):requires_grad(true)
      local function loss(xb) return dp.linear(xb, w1):tanh():sum{ 2, 3 } + dp.linear(xb, w2):pow(2):sum{ 2, 3 } end
      local grads = {}
      for i = 1, 5 do
        local g = dp.grad(loss(x:narrow(1, i, 1)):sum(), { w1, w2 })
        grads[i] = { flat(g[1]), flat(g[2]) }
      end
      local eng = engine.new{ { name = "w1", tensor = w1 }, { name = "w2", tensor = w2 } }
      eng:begin(5)
      eng:active(function() loss(x):sum():backward() end)
      eng:compute_norms()
      local norms = eng:sample_norms()
      local C = norms[2] * 0.9
      eng:clip{ mode = "flat", max_norm = C }
      for k, name in ipairs{ "w1", "w2" } do
        local acc = flat(eng:accumulator(name))
        for j, v in ipairs(acc) do
          local ref = 0
          for i = 1, 5 do ref = ref + math.min(1, C / norms[i]) * grads[i][k][j] end
          close(v, ref, 1e-9, name .. "[" .. j .. "]")
        end
      end
    end)

    it("per-layer clipping clips each group by its own threshold", function()
      local groups = { emb = 0, pos = 0, ln = 1, seq = 2, lora = 2, extra = 2, head = 3, base = 0 }
      local params = {}
      for _, e in ipairs(model:named_parameters()) do
        params[#params + 1] = { name = e.name, tensor = e.tensor, group = groups[e.name:match("^[^.]+")] }
      end
      local eng = engine.new(params)
      eng:begin(batch.n)
      eng:active(function() model:loss(batch):backward(dp.ones({ batch.n }, { dtype = "f64" })) end)
      eng:compute_norms()
      local thresholds = { 0.5, 0.3, 0.4, 0.2 }
      eng:clip{ mode = "per_layer", thresholds = thresholds }
      local function group_norm(i, g)
        local s = 0
        for _, name in ipairs(names) do
          if groups[name:match("^[^.]+")] == g then s = s + sqnorm(per[i][name]) end
        end
        return math.sqrt(s)
      end
      check_sums(eng, reference(function(i, name)
        local g = groups[name:match("^[^.]+")]
        return math.min(1, thresholds[g + 1] / group_norm(i, g))
      end))
    end)

    it("automatic clipping scales every example to C / (|g_i| + gamma)", function()
      local eng = run_engine(model, batch)
      eng:clip{ mode = "automatic", max_norm = 1.5, gamma = 0.05 }
      check_sums(eng, reference(function(i) return 1.5 / (total_norm(i) + 0.05) end))
    end)
  end)

  describe("guarantees", function()
    for _, dtype in ipairs{ "f32", "bf16", "f16" } do
    it("keep every clipped contribution within C in " .. dtype .. ", recomputed in f64", function()
      local m32 = tiny.new(dtype, 5)
      local b32 = m32:batch(8, 3)
      local eng = run_engine(m32, b32)
      local norms = eng:sample_norms()
      table.sort(norms)
      local C = norms[3]   -- most examples are clipped
      local exact = {}
      for i = 1, b32.n do
        local s = 0
        for _, e in ipairs(m32:trainable()) do s = s + sqnorm(flat(eng:sample_grad(e.name, i))) end
        exact[i] = math.sqrt(s)
      end
      eng:clip{ mode = "flat", max_norm = C }
      local factors = eng:clip_factors()
      for i = 1, b32.n do
        assert.is_true(factors[i] * exact[i] <= C, ("example %d: %.17g > %.17g"):format(i, factors[i] * exact[i], C))
        -- and not needlessly small: within 1e-3 of the exact factor
        if exact[i] > C then assert.is_true(factors[i] > (1 - 1e-3) * C / exact[i]) end
      end
    end)
    end

    it("zero and count an example whose gradient is NaN, leaving the sum finite", function()
      local bad = model:batch(6, 11)
      bad.mask[3][2][1] = 0 / 0   -- example 3's second position: NaN flows into its gradient
      local eng = run_engine(model, bad)
      local st = eng:clip{ mode = "flat", max_norm = 1e6 }
      assert.are.equal(1, st.nonfinite)
      assert.are.equal(0, eng:clip_factors()[3])
      for _, name in ipairs(names) do
        local acc = flat(eng:accumulator(name))
        for k, v in ipairs(acc) do
          local ref = 0
          for i = 1, bad.n do if i ~= 3 then ref = ref + per[i][name][k] end end
          close(v, ref, 1e-9, name .. "[" .. k .. "]")
        end
      end
    end)

    it("neither clips, noises nor counts a frozen parameter", function()
      local eng = run_engine(model, batch)
      assert.has_error(function() eng:sample_norms("base.weight") end)
      eng:clip{ mode = "flat", max_norm = 1 }
      eng:finish(nil, 0, 1)
      assert.is_nil(model.by_name["base.weight"].grad)
      assert.is_not_nil(model.by_name["seq.weight"].grad)
      for _, e in ipairs(model:named_parameters()) do e.tensor:set_grad(nil) end
    end)

    it("fails backward when a registered parameter is used through an op without a per-sample rule", function()
      local w = dp.randn({ 3, 2 }, { seed = 1, dtype = "f64" }):requires_grad(true)
      local eng = engine.new{ { name = "w", tensor = w } }
      eng:begin(4)
      local x = dp.randn({ 4, 3 }, { seed = 2, dtype = "f64" })
      assert.error_matches(function() eng:active(function() x:matmul(w):sum():backward() end) end,
        "parameter 'w' .* receives a gradient through matmul", nil)
    end)

    it("fails backward when a trainable parameter is not registered", function()
      local w = dp.randn({ 2, 3 }, { seed = 1, dtype = "f64" }):requires_grad(true):is_param(true)
      local v = dp.randn({ 2, 3 }, { seed = 3, dtype = "f64" }):requires_grad(true):is_param(true)
      local eng = engine.new{ { name = "w", tensor = w } }
      eng:begin(4)
      local x = dp.randn({ 4, 3 }, { seed = 2, dtype = "f64" })
      assert.error_matches(function()
        eng:active(function() (dp.linear(x, w) + dp.linear(x, v)):sum():backward() end)
      end, "not registered with the DP engine", nil)
    end)

    it("names a trainable parameter that received no per-sample gradient", function()
      local w = dp.randn({ 2, 3 }, { seed = 1, dtype = "f64" }):requires_grad(true)
      local unused = dp.randn({ 2, 2 }, { seed = 3, dtype = "f64" }):requires_grad(true)
      local eng = engine.new{ { name = "w", tensor = w }, { name = "adapter.B", tensor = unused } }
      eng:begin(4)
      local x = dp.randn({ 4, 3 }, { seed = 2, dtype = "f64" })
      eng:active(function() dp.linear(x, w):sum():backward() end)
      assert.error_matches(function() eng:compute_norms() end, "'adapter.B' .* got no per%-sample gradient", nil)
    end)

    it("rejects inputs whose first dim is not the micro-batch", function()
      local w = dp.randn({ 2, 3 }, { seed = 1, dtype = "f64" }):requires_grad(true)
      local eng = engine.new{ { name = "w", tensor = w } }
      eng:begin(5)
      local x = dp.randn({ 4, 3 }, { seed = 2, dtype = "f64" })
      assert.error_matches(function() eng:active(function() dp.linear(x, w):sum():backward() end) end,
        "micro%-batch of 5 examples as dim 0", nil)
    end)
  end)

  describe("precision", function()
    -- One micro-batch of the tiny model in dtype, backward seeded with `seed` (the loss scale).
    local function scaled_run(dt, seed, setup)
      local m = tiny.new(dt)
      local b = m:batch(6, 11)
      local eng = engine.new(m:named_parameters())
      if setup then setup(eng) end
      eng:begin(b.n)
      eng:active(function() m:loss(b):backward(dp.full({ b.n }, seed, { dtype = dt })) end)
      eng:compute_norms()
      return eng, m
    end

    it("divides a power-of-two loss scale out exactly", function()
      local ref = scaled_run("f32", 1)
      local got = scaled_run("f32", 2 ^ 12, function(e) e:set_loss_scale(2 ^ 12) end)
      assert.equal(2 ^ 12, got:loss_scale())
      assert.same(ref:sample_norms(), got:sample_norms())
      assert.same(ref:sample_norms(nil, true), got:sample_norms(nil, true))
      local norms = ref:sample_norms()
      table.sort(norms)
      local C = (norms[2] + norms[5]) / 2
      local st1, st2 = ref:clip{ mode = "flat", max_norm = C }, got:clip{ mode = "flat", max_norm = C }
      assert.same(st1, st2)
      assert.same(ref:clip_factors(), got:clip_factors())
      for _, name in ipairs(names) do assert.same(flat(ref:accumulator(name)), flat(got:accumulator(name))) end
      assert.error_matches(function() got:set_loss_scale(3) end,
        "dp_psg_set_loss_scale: scale must be a power of two >= 2^-24, got 3", nil, true)
      assert.equal(2 ^ 12, got:loss_scale())
    end)

    it("describes the dtypes each parameter's taps, norms and sums used", function()
      local eng = engine.new(tiny.new("bf16"):named_parameters())
      for _, d in ipairs(eng:describe()) do
        assert.is_nil(d.input_dtype); assert.is_nil(d.grad_dtype); assert.is_nil(d.norm_dtype)
        assert.is_nil(d.accum_dtype); assert.is_nil(d.sum_norm); assert.is_nil(d.noise_norm)
      end
      eng = scaled_run("bf16", 1)
      local seen = {}
      for _, d in ipairs(eng:describe()) do seen[d.name] = d end
      local seq, bias, emb, ln = seen["seq.weight"], seen["extra.bias"], seen["emb.weight"], seen["ln.weight"]
      assert.same({ "bf16", "bf16", "f32" }, { seq.input_dtype, seq.grad_dtype, seq.norm_dtype })
      assert.same({ "i64", "bf16", "f64" }, { emb.input_dtype, emb.grad_dtype, emb.norm_dtype })
      assert.same({ "bf16", "f64" }, { ln.input_dtype, ln.norm_dtype })
      assert.is_nil(bias.input_dtype)   -- bias_add hands the engine no input
      assert.equal("bf16", bias.grad_dtype)
      assert.is_nil(seq.accum_dtype)
      eng:clip{ mode = "flat", max_norm = 1 }
      assert.equal("f32", eng:describe()[5].accum_dtype)
    end)

    it("reports the norms of the clipped sums and of the noise added at finish", function()
      local eng, m = scaled_run("f32", 1)
      eng:clip{ mode = "flat", max_norm = 0.5 }
      local acc = {}
      for _, name in ipairs(names) do acc[name] = flat(eng:accumulator(name)) end
      local noise = require("dp.privacy.noise").new{ seed = 5 }
      eng:finish(noise, 0.3, 0.5)   -- .grad / 0.5 is exact
      for _, d in ipairs(eng:describe()) do
        if d.trainable then
          local g, sn, nn = flat(m.by_name[d.name].grad), 0, 0
          for k, v in ipairs(acc[d.name]) do
            sn = sn + v * v
            nn = nn + (g[k] / 0.5 - v) ^ 2
          end
          close(d.sum_norm, math.sqrt(sn), 1e-12, d.name .. " sum_norm")
          close(d.noise_norm, math.sqrt(nn), 1e-12, d.name .. " noise_norm")
        end
      end
    end)
  end)
end)
