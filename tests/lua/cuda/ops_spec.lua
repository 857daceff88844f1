-- CUDA parity of every op family: each op runs on CPU inputs and on copies of them on the GPU,
-- forward and (for float ops) backward, and the GPU results must match the CPU reference within
-- parity.tol for their dtype (f32 1e-5 relative, bf16 1e-2, f16 2e-3, fp8 one step of its grid).
-- Skipped, with the reason, without a CUDA device.
local dp = require "dp"
local parity = require "cuda.parity"

local floats = { "f32", "bf16", "f16" }

local function randn(shape, seed, dtype, opts)
  opts = opts or {}
  local x = dp.randn(shape, { seed = seed, std = opts.std or 1, mean = opts.mean or 0, device = "cpu" })
  if opts.positive then x = dp.abs(x) + 0.5 end
  return x:cast(dtype or "f32"):detach()
end

-- Forward on both devices; backward of sum(out * w) (w fixed random) when grad is set.
local function check(name, dtype, inputs, fn, opts)
  opts = opts or {}
  local cpu_in, gpu_in = {}, {}
  for i, x in ipairs(inputs) do
    x = x:clone():detach()   -- fresh leaves: inputs are shared between checks
    local wants = opts.grad and i <= (opts.grad_inputs or #inputs) and parity.tol[x:dtype()] ~= 0
    if wants then x:requires_grad(true) end
    cpu_in[i], gpu_in[i] = x, parity.gpu(x)
  end
  local ref, got = fn(unpack(cpu_in)), fn(unpack(gpu_in))
  local what = ("%s %s"):format(name, dtype)
  if parity.tol[ref:dtype()] == 0 then
    parity.assert_equal(got, ref, what)
  else
    parity.assert_close(got, ref, what, opts.tol)
  end
  if not opts.grad then return end
  local w = randn(ref:size(), 99, ref:dtype())
  dp.sum(ref * w):backward()
  dp.sum(got * parity.gpu(w)):backward()
  for i, x in ipairs(cpu_in) do
    if x:requires_grad() then
      parity.assert_close(gpu_in[i].grad, x.grad, ("%s backward (input %d)"):format(what, i),
                          opts.grad_tol or opts.tol)
    end
  end
end

parity.describe("cuda parity: ops", function()
  describe("elementwise", function()
    it("binary ops with broadcasting match the CPU", function()
      for _, dt in ipairs(floats) do
        for _, op in ipairs { "add", "sub", "mul", "div", "maximum" } do
          local a, b = randn({ 4, 1, 33 }, 1, dt), randn({ 5, 33 }, 2, dt, { positive = op == "div" })
          check(op, dt, { a, b }, dp[op], { grad = true })
        end
      end
    end)

    it("unary ops and their backward match the CPU", function()
      for _, dt in ipairs(floats) do
        for _, op in ipairs { "neg", "exp", "tanh", "sigmoid", "relu", "gelu", "abs" } do
          check(op, dt, { randn({ 7, 130 }, 3, dt) }, dp[op], { grad = true })
        end
        for _, op in ipairs { "log", "sqrt" } do
          check(op, dt, { randn({ 7, 130 }, 4, dt, { positive = true }) }, dp[op], { grad = true })
        end
        check("affine", dt, { randn({ 300 }, 5, dt) }, function(x) return dp.affine(x, 1.5, -0.25) end, { grad = true })
        check("pow", dt, { randn({ 300 }, 6, dt, { positive = true }) }, function(x) return dp.pow(x, 2.5) end, { grad = true })
      end
    end)

    it("strided inputs (transposed, narrowed) read the right elements", function()
      for _, dt in ipairs(floats) do
        check("transpose+add", dt, { randn({ 17, 9 }, 7, dt), randn({ 9, 17 }, 8, dt) },
              function(a, b) return a:transpose(1, 2) + b end, { grad = true })
        check("narrow+contiguous", dt, { randn({ 6, 40 }, 9, dt) },
              function(x) return x:narrow(2, 3, 20):contiguous() end, { grad = true })
      end
    end)

    it("casts between every float dtype and to integers round like the CPU (bit for bit)", function()
      local x = randn({ 1000 }, 10, "f32", { std = 50 })
      for _, to in ipairs { "f64", "bf16", "f16", "fp8_e4m3", "fp8_e5m2", "i32", "i64", "u8" } do
        local src = (to == "u8") and dp.abs(x) or x
        parity.assert_equal(parity.gpu(src):cast(to), src:cast(to), "cast f32 -> " .. to)
      end
      for _, from in ipairs { "bf16", "f16", "fp8_e4m3", "fp8_e5m2" } do
        local y = x:cast(from)
        parity.assert_equal(parity.gpu(y):cast("f32"), y:cast("f32"), "cast " .. from .. " -> f32")
      end
    end)

    it("fill_, copy_, axpy_ and scale_ match the CPU", function()
      for _, dt in ipairs(floats) do
        local a, b = randn({ 3, 50 }, 11, dt), randn({ 50 }, 12, dt)
        local ga, gb = parity.gpu(a), parity.gpu(b)
        dp.axpy_(a, 0.75, b); dp.axpy_(ga, 0.75, gb)
        parity.assert_close(ga, a, "axpy_ " .. dt)
        dp.scale_(a, -3); dp.scale_(ga, -3)
        parity.assert_close(ga, a, "scale_ " .. dt)
        dp.fill_(a, 0.3); dp.fill_(ga, 0.3)
        parity.assert_equal(ga, a, "fill_ " .. dt)
        dp.copy_(a, b); dp.copy_(ga, gb)
        parity.assert_equal(ga, a, "copy_ (broadcast) " .. dt)
      end
    end)

    it("masked_fill matches the CPU", function()
      for _, dt in ipairs(floats) do
        local m = (randn({ 1, 64 }, 13) ):cast("f32")
        local bits = dp.relu(m):cast("u8")   -- 1 where positive (rounded down to 0 below 1)
        check("masked_fill", dt, { randn({ 5, 64 }, 14, dt), bits },
              function(x, mk) return dp.masked_fill(x, mk, -1e4) end, { grad = true, grad_inputs = 1 })
      end
    end)
  end)

  describe("reductions", function()
    it("sum, mean and max over dims, argmax, match the CPU", function()
      for _, dt in ipairs(floats) do
        local x = randn({ 6, 35, 9 }, 15, dt)
        check("sum all", dt, { x }, function(t) return dp.sum(t) end, { grad = true, tol = dt == "f32" and 1e-5 or 2e-2 })
        check("sum dims 1,3", dt, { x }, function(t) return dp.sum(t, { 1, 3 }) end, { grad = true })
        check("mean dim 2", dt, { x }, function(t) return dp.mean(t, { 2 }, true) end, { grad = true })
        check("max dim 2", dt, { x }, function(t) return dp.max(t, 2) end, { grad = true })
        check("argmax dim 3", dt, { x }, function(t) return dp.argmax(t, 3) end)
      end
    end)
  end)

  describe("nn ops", function()
    it("softmax and log_softmax (last and middle dim) match the CPU", function()
      for _, dt in ipairs(floats) do
        local x = randn({ 4, 12, 130 }, 16, dt, { std = 3 })
        check("softmax", dt, { x }, function(t) return dp.softmax(t, 3) end, { grad = true })
        check("log_softmax", dt, { x }, function(t) return dp.log_softmax(t, 3) end, { grad = true })
        check("softmax dim 2", dt, { x }, function(t) return dp.softmax(t, 2) end, { grad = true })
      end
    end)

    it("layer_norm with and without weight and bias matches the CPU", function()
      for _, dt in ipairs(floats) do
        local x = randn({ 6, 10, 768 }, 17, dt, { mean = 2, std = 3 })
        local w, b = randn({ 768 }, 18, dt), randn({ 768 }, 19, dt)
        check("layer_norm", dt, { x, w, b }, function(t, ww, bb) return dp.layer_norm(t, ww, bb, 1e-12) end,
              { grad = true })
        check("layer_norm plain", dt, { x }, function(t) return dp.layer_norm(t, nil, nil, 1e-5) end, { grad = true })
      end
    end)

    it("embedding gathers rows and scatter-adds repeated indices in backward", function()
      for _, dt in ipairs(floats) do
        local ids = dp.tensor({ { 0, 3, 3, 7 }, { 7, 7, 1, 0 } }, { dtype = "i64", device = "cpu" })
        check("embedding", dt, { randn({ 8, 96 }, 20, dt), ids }, dp.embedding, { grad = true, grad_inputs = 1 })
      end
    end)

    it("cross_entropy with ignored rows matches the CPU", function()
      for _, dt in ipairs { "f32" } do
        local labels = dp.tensor({ 0, 2, -100, 1, 4 }, { dtype = "i64", device = "cpu" })
        for _, red in ipairs { "none", "mean", "sum" } do
          check("cross_entropy " .. red, dt, { randn({ 5, 5 }, 21, dt, { std = 2 }), labels },
                function(l, y) return dp.cross_entropy(l, y, { reduction = red, ignore_index = -100 }) end,
                { grad = true, grad_inputs = 1 })
        end
      end
    end)

    it("index_select_rows (batching) is exact for every dtype", function()
      local idx = dp.tensor({ 4, 0, 4, 2 }, { dtype = "i64", device = "cpu" })
      for _, dt in ipairs { "f32", "bf16", "i64", "u8" } do
        local x = randn({ 5, 3, 7 }, 22, "f32", { std = 10 })
        x = (dt == "u8") and dp.abs(x):cast(dt) or x:cast(dt)
        local ref = dp.C.dp_index_select_rows(x.ptr, idx.ptr)
        local got = dp.C.dp_index_select_rows(parity.gpu(x).ptr, parity.gpu(idx).ptr)
        parity.assert_equal(dp.ffi.wrap(got), dp.ffi.wrap(ref), "index_select_rows " .. dt)
      end
    end)
  end)

  describe("matmul", function()
    it("matmul (batched, broadcast, transposed views) and linear match the CPU", function()
      for _, dt in ipairs(floats) do
        local tol = ({ f32 = 1e-5, bf16 = 1e-2, f16 = 2e-3 })[dt]
        check("matmul", dt, { randn({ 3, 33, 65 }, 23, dt), randn({ 65, 17 }, 24, dt) }, dp.matmul,
              { grad = true, tol = tol })
        check("matmul a^T", dt, { randn({ 2, 65, 33 }, 25, dt), randn({ 2, 65, 17 }, 26, dt) },
              function(a, b) return dp.matmul(a:transpose(2, 3), b) end, { grad = true, tol = tol })
        check("linear", dt, { randn({ 4, 9, 768 }, 27, dt), randn({ 96, 768 }, 28, dt, { std = 0.05 }),
                              randn({ 96 }, 29, dt) }, dp.linear, { grad = true, tol = tol })
      end
    end)

    it("fp8 fake quantisation (per tensor and per example) is bit-identical", function()
      for _, q in ipairs { "fp8_e4m3", "fp8_e5m2" } do
        for _, groups in ipairs { 1, 6 } do
          local x = randn({ 6, 200 }, 30, "f32", { std = 40 })
          local s_c = dp.full({ groups }, 1, { device = "cpu" })
          local s_g = parity.gpu(s_c)
          local ref = dp.fake_quant(x, q, s_c, nil, true)
          local got = dp.fake_quant(parity.gpu(x), q, s_g, nil, true)
          parity.assert_equal(got, ref, ("fake_quant %s groups %d"):format(q, groups))
          parity.assert_equal(s_g, s_c, ("fake_quant %s groups %d: scales"):format(q, groups))
        end
      end
    end)
  end)

  describe("optimizers", function()
    it("sgd (momentum, nesterov) and adamw steps match the CPU for f32 and bf16 params", function()
      for _, dt in ipairs { "f32", "bf16" } do
        local function run(dev)
          local p = randn({ 64, 33 }, 31, dt)
          local q = randn({ 64, 33 }, 32, dt)
          if dev ~= "cpu" or parity.selftest then p, q = parity.gpu(p), parity.gpu(q) end
          p:requires_grad(true); q:requires_grad(true)
          local sgd = dp.optim.sgd({ p }, { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01 })
          local adam = dp.optim.adamw({ q }, { lr = 0.01, weight_decay = 0.1 })
          for k = 1, 3 do
            p:set_grad(dp.randn({ 64, 33 }, { seed = 40 + k, device = dev }))
            q:set_grad(dp.randn({ 64, 33 }, { seed = 50 + k, device = dev }))
            sgd:step(); adam:step()
          end
          return p, q
        end
        local pc, qc = run("cpu")
        local pg, qg = run(parity.target)
        parity.assert_close(pg, pc, "sgd " .. dt)
        parity.assert_close(qg, qc, "adamw " .. dt)
      end
    end)
  end)
end)
